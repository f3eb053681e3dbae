"""What the pipeline runs: the stages, the requests they send, the local backend that executes them.

Airflow-free (the DAG files and ``plugins/`` wire it into Airflow) and the only package the wheel
and the Docker image ship; docs/architecture.md maps its folders.
"""
