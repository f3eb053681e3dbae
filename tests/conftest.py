"""Test-wide set-up: an isolated Airflow home, the project on sys.path, fake AWS credentials."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
BCCD = SHARED / "datasets" / "bccd" / "BCCD"

# Before Airflow is imported anywhere: its home, dags and plugins are the project's, never ~/airflow.
_home = Path(os.environ.get("DETECTION_TEST_AIRFLOW_HOME", ROOT / ".airflow" / "test-home"))
_home.mkdir(parents=True, exist_ok=True)
os.environ["AIRFLOW_HOME"] = str(_home)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
# AWS: never the network. moto intercepts in-process; these make sure nothing real is signed.
for key, value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}.items():
    os.environ[key] = value
os.environ.pop("AWS_PROFILE", None)
for path in (ROOT, ROOT / "plugins"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
