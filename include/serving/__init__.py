"""The inference server and the SageMaker object-detection container contract it honours.

Starting, reusing and stopping endpoints (locally and on SageMaker) is :mod:`include.endpoints`.
"""
