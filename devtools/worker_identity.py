"""The hostname a Celery worker of the local stack records on its task instances (``[core] hostname_callable``).

Every worker of the local stack runs on one machine, so Airflow's default (the FQDN) would be the
same for all of them; ``<fqdn>:<worker name>`` (``DETECTION_WORKER_NAME``) tells them apart in the
UI and in ``task_instance.hostname``. The workers skip serving logs: tasks' logs are files under the
stack's shared ``logs/`` folder, which the API server reads.
"""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    """``<fqdn>:<worker name>``, or the FQDN alone outside a named worker."""
    name = os.environ.get("DETECTION_WORKER_NAME")
    return f"{socket.getfqdn()}:{name}" if name else socket.getfqdn()
