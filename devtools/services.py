"""PostgreSQL and Redis for the local Celery stack: Debian's packages, started by hand on loopback ports.

No systemd and no Docker here, so the servers run from the packages' binaries with their data
under the stack's home (``.airflow/celery/``): PostgreSQL through ``initdb`` + ``pg_ctl``, Redis
daemonized by ``redis-server`` itself. Both listen on 127.0.0.1 only, on ports the caller picks
(free ones: other stacks on the machine use the default 5432 and 6379). PostgreSQL trusts its
``airflow`` role without a password: only local processes can reach a loopback port.

PostgreSQL refuses to run as root. As root, its commands run as the ``postgres`` account the
package creates (``runuser -u postgres``), and its folder is owned by that account; when the
stack's home is in a folder ``postgres`` cannot enter (a 700 home), the data folder goes under the
system temporary folder instead (the stack's state records where).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

#: Debian package -> a command it installs (checked before installing).
PACKAGES = {"postgresql": "initdb", "redis-server": "redis-server"}
POSTGRES_ACCOUNT = "postgres"
DATABASE = "airflow"
ROLE = "airflow"


class ServiceError(RuntimeError):
    """A server could not be installed, started or stopped; the message says which and why."""


def _run(cmd: list[str], what: str, timeout_s: float = 120) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceError(f"{what}: {' '.join(cmd)}: {exc}") from None
    if done.returncode != 0:
        raise ServiceError(f"{what} failed (exit {done.returncode}): {' '.join(cmd)}\n{done.stderr or done.stdout}")
    return done.stdout


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL server's ``bin`` folder (Debian keeps it off ``PATH``), or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    return found[-1].parent if found else None


def missing_packages() -> list[str]:
    """The Debian packages of :data:`PACKAGES` that are not installed."""
    missing = []
    if postgres_bin() is None:
        missing.append("postgresql")
    if shutil.which("redis-server") is None:
        missing.append("redis-server")
    return missing


def ensure_packages() -> list[str]:
    """Install PostgreSQL and Redis from Debian's packages when missing (as root); returns what was installed.

    The packages' maintainer scripts do not start the system services where ``policy-rc.d``
    forbids it (containers, CI images); the stack starts its own servers either way.
    """
    missing = missing_packages()
    if not missing:
        return []
    command = f"apt-get update && apt-get install -y {' '.join(missing)}"
    if os.geteuid() != 0:
        raise ServiceError(f"the Celery stack needs {', '.join(missing)}; install it as root: {command}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *missing]):
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            raise ServiceError(f"{' '.join(cmd)} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    if still := missing_packages():
        raise ServiceError(f"{command} ran but {', '.join(still)} is still missing")
    return missing


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", POSTGRES_ACCOUNT, "--", *cmd] if os.geteuid() == 0 else cmd


def _postgres_can_enter(folder: Path) -> bool:
    if os.geteuid() != 0:
        return True
    return subprocess.run(_as_postgres(["test", "-w", str(folder)]), capture_output=True, check=False).returncode == 0


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists (also when another account owns it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by the postgres account
        return True
    return True


@dataclass(frozen=True)
class Postgres:
    """A PostgreSQL server with its data in ``folder``, listening on 127.0.0.1:``port``."""

    folder: Path
    port: int

    @classmethod
    def prepare(cls, home: Path, port: int) -> Postgres:
        """A server folder under ``home`` (or under the temporary folder when ``postgres`` cannot reach ``home``)."""
        folder = home / "postgres"
        folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(folder, POSTGRES_ACCOUNT, POSTGRES_ACCOUNT)
            if not _postgres_can_enter(folder):
                folder = Path(tempfile.mkdtemp(prefix="detection-postgres-"))
                folder.chmod(0o755)
                shutil.chown(folder, POSTGRES_ACCOUNT, POSTGRES_ACCOUNT)
        return cls(folder, port)

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def log(self) -> Path:
        return self.folder / "server.log"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the metadata database (psycopg2)."""
        return f"postgresql+psycopg2://{ROLE}@127.0.0.1:{self.port}/{DATABASE}"

    def _tool(self, name: str) -> str:
        folder = postgres_bin()
        if folder is None:
            raise ServiceError("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb)")
        return str(folder / name)

    def start(self) -> int:
        """Initialise the cluster on first use, start the server, create the database; its PID."""
        if not (self.data / "PG_VERSION").exists():
            _run(
                _as_postgres([self._tool("initdb"), "-D", str(self.data), "-U", ROLE, "--auth=trust", "-E", "UTF8",
                              "--no-locale"]),
                "initdb",
            )  # fmt: skip
        # -k: the Unix socket in the server's own folder, not /var/run/postgresql (root's, or absent)
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder}"
        if self.pid() is None:
            _run(_as_postgres([self._tool("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w",
                               "start"]), f"PostgreSQL start (log: {self.log})")  # fmt: skip
        exists = _run(
            [self._tool("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", ROLE, "-d", "postgres", "-tAc",
             f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"],
            "PostgreSQL query",
        )  # fmt: skip
        if exists.strip() != "1":
            _run([self._tool("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", ROLE, DATABASE], "createdb")
        return self.pid() or 0

    def pid(self) -> int | None:
        """The running server's PID (from ``postmaster.pid``), or None."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if alive(pid) else None

    def stop(self) -> bool:
        """Fast shutdown (ends sessions, no crash recovery next time); True if a server ran."""
        if self.pid() is None:
            return False
        _run(_as_postgres([self._tool("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"]), "PostgreSQL stop")
        return True


@dataclass(frozen=True)
class Redis:
    """A Redis server (the Celery broker) with its files in ``folder``, on 127.0.0.1:``port``, nothing persisted."""

    folder: Path
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid_file(self) -> Path:
        return self.folder / "redis.pid"

    def start(self, timeout_s: float = 30) -> int:
        """Start the server daemonized; its PID once it answers."""
        self.folder.mkdir(parents=True, exist_ok=True)
        _run(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.folder),
             "--daemonize", "yes", "--pidfile", str(self.pid_file), "--logfile", str(self.folder / "redis.log"),
             "--save", "", "--appendonly", "no"],
            "redis-server",
        )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ping = subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True)
            if ping.stdout.strip() == "PONG" and (pid := self.pid()):
                return pid
            time.sleep(0.1)
        raise ServiceError(f"Redis on 127.0.0.1:{self.port} did not answer in {timeout_s:.0f} s; see {self.folder}")

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if alive(pid) else None

    def stop(self, timeout_s: float = 10) -> bool:
        """``SHUTDOWN NOSAVE`` (a SIGTERM if it does not answer); True if a server ran."""
        pid = self.pid()
        if pid is None:
            return False
        subprocess.run(["redis-cli", "-p", str(self.port), "shutdown", "nosave"], capture_output=True, check=False)
        deadline = time.monotonic() + timeout_s
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True
