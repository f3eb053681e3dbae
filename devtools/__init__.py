"""Developer tooling: the local Airflow stack, its REST client, browser automation for UI tests and screenshots.

Not part of the installed package (``pyproject.toml`` packages ``include`` only, and the Docker
image copies this folder nowhere): nothing under ``include/`` imports it. ``detection-pipeline
stack`` runs :mod:`devtools.stack` in a child process when the project is a source checkout.
"""
