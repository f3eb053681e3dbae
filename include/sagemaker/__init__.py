"""SageMaker side of the pipeline: request builders, metric definitions, log metrics, teardown.

Nothing here imports boto3, botocore or the ``sagemaker`` SDK at module level, so DAG files may
import these modules while staying fast to parse.
"""
