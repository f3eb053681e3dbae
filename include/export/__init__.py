"""Exports of a trained model for other runtimes: ONNX with proven parity, and SageMaker Neo compilation."""
