"""Under Airflow, every AWS client of the pipeline uses the ``aws_default`` connection's credentials.

:mod:`include.sagemaker.client` makes every boto3 client the pipeline creates outside the
provider's operators; importing this plugin package installs :func:`aws_default_session` there,
so the teardown task, the smoke test, CloudWatch reads and the sweeper act as the same identity
as the provider's operators. It applies inside a running task only (Airflow exports
``AIRFLOW_CTX_DAG_ID`` there); anywhere else the default chain stays. A connection without keys,
or none at all, is the default chain too (the provider's own fallback).
"""

from __future__ import annotations

import functools
import os
from typing import Any

AWS_CONN_ID = "aws_default"
#: Set by Airflow's task runner in the environment of a running task.
TASK_MARKER = "AIRFLOW_CTX_DAG_ID"


@functools.cache
def _hook(region: str | None) -> Any:
    from airflow.providers.amazon.aws.hooks.base_aws import AwsGenericHook

    return AwsGenericHook(aws_conn_id=AWS_CONN_ID, region_name=region)


def aws_default_session(region: str | None) -> Any:
    """A boto3 session: the ``aws_default`` connection's inside a task, the default chain elsewhere."""
    if os.environ.get(TASK_MARKER):
        return _hook(region).get_session(region_name=region)
    import boto3

    return boto3.Session(region_name=region)
