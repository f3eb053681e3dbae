"""Local inference endpoints that honour the SageMaker object-detection container contract."""
