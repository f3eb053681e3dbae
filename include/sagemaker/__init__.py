"""SageMaker side of the pipeline: request builders and their offline validation, names and tags,
metric definitions and CloudWatch metrics, results, and the one client module for AWS access.

Nothing here imports boto3, botocore or the ``sagemaker`` SDK at module level, so DAG files may
import these modules while staying fast to parse.
"""
