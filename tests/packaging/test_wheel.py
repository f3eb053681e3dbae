"""The wheel built from pyproject.toml: what the pipeline runs, nothing else, and it imports without the dev tools.

The wheel is built with the project's build backend (hatchling). Its modules are then imported
one by one in a child interpreter whose path holds the unpacked wheel and the locked
dependencies only: the project folder is off the path, and every package that only the ``dev``
group of ``uv.lock`` brings in (pytest, moto, selenium, ruff and what they alone need) refuses
to import, as it would be absent from a production install.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from include.project import PROJECT_ROOT

pytestmark = pytest.mark.slow

#: Imports every module named on stdin with the dev-only top-level names blocked; prints the failures.
IMPORTER = r"""
import importlib, importlib.abc, json, sys

blocked, modules = json.loads(sys.stdin.read())

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"{name} is a development dependency", name=name)
        return None

sys.meta_path.insert(0, Blocker())
failures = {}
for module in modules:
    try:
        importlib.import_module(module)
    except Exception as exc:
        failures[module] = f"{type(exc).__name__}: {exc}"
print(json.dumps(failures))
"""


def _locked_packages() -> dict[str, dict]:
    lock = tomllib.loads((PROJECT_ROOT / "uv.lock").read_text())
    return {package["name"]: package for package in lock["package"]}


def _reachable(packages: dict[str, dict], roots: list[dict]) -> set[str]:
    """Locked package names that ``roots`` (lock dependency entries) need, extras followed."""
    visited: set[tuple[str, str | None]] = set()
    todo = [(entry["name"], extra) for entry in roots for extra in [None, *entry.get("extra", [])]]
    while todo:
        name, extra = todo.pop()
        if (name, extra) in visited or name not in packages:
            continue
        visited.add((name, extra))
        package = packages[name]
        entries = package.get("dependencies", []) if extra is None else package.get("optional-dependencies", {})[extra]
        todo += [(e["name"], x) for e in entries for x in [None, *e.get("extra", [])]]
    return {name for name, _ in visited}


def _dev_only_import_names() -> set[str]:
    """Top-level import names of the distributions only the lock's ``dev`` group installs."""
    from importlib.metadata import packages_distributions

    packages = _locked_packages()
    project = packages["detection-pipeline"]
    runtime = _reachable(packages, project["dependencies"])
    dev = _reachable(packages, project["dev-dependencies"]["dev"]) - runtime
    normalized = {name.lower().replace("_", "-") for name in dev}
    return {
        top
        for top, distributions in packages_distributions().items()
        if all(d.lower().replace("_", "-") in normalized for d in distributions)
    }


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "--target", "wheel", "--directory", str(out)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (path,) = out.glob("*.whl")
    return path


def test_the_wheel_holds_the_pipeline_only(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    packaged = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert packaged == {"include"}
    assert "include/configs/defaults.yaml" in names  # the configuration ships with the code
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "detection-pipeline = include.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_every_module_of_the_wheel_imports_without_dev_dependencies(wheel: Path, tmp_path: Path) -> None:
    blocked = _dev_only_import_names()
    assert {"selenium", "pytest", "moto"} <= blocked
    blocked |= {"devtools", "tests", "detection_airflow"}  # the checkout's folders the wheel leaves out
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    modules = sorted(
        ".".join(path.relative_to(unpacked).with_suffix("").parts).removesuffix(".__init__")
        for path in (unpacked / "include").rglob("*.py")
    )
    assert "include.cli" in modules and "include.training.algorithm" in modules
    # -I: no user site, no PYTHONPATH, no current folder; the editable install's path entry for the
    # checkout is dropped, so every `include` module comes from the wheel.
    code = f"import sys; sys.path[:] = [{str(unpacked)!r}] + [p for p in sys.path if p != {str(PROJECT_ROOT)!r}]\n"
    done = subprocess.run(
        [sys.executable, "-I", "-c", code + IMPORTER],
        input=json.dumps([sorted(blocked), modules]),
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {}
