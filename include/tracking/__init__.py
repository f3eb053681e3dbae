"""Tracking and model registry: MLflow as the pipeline's memory, on both backends.

Every pipeline run is an MLflow run (its stages nested under it), every trained model a version
of the DAG's registered model, and the aliases ``champion`` / ``previous`` say what is served and
what to roll back to. The tracking server is given by ``tracking.uri``: the local one
(:mod:`include.tracking.server`), any MLflow server URL, or a SageMaker managed MLflow ARN.

* :mod:`~include.tracking.uri`: what a tracking URI may be, and the reachability check ``resolve_config`` runs;
* :mod:`~include.tracking.rest`: the REST client every call goes through (why not ``mlflow``: see there);
* :mod:`~include.tracking.runs`: the run tree (find-or-create, so a retried task reuses its run);
* :mod:`~include.tracking.records`: what each stage records (quality, data set, training, tuning,
  evaluation, deployment events);
* :mod:`~include.tracking.registry`: registered model, versions, aliases with their history;
* :mod:`~include.tracking.server`: the local tracking server process.

Nothing here imports ``mlflow``: DAG files, operators and tasks pay no import cost for it.
"""
