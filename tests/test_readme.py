"""The README cannot drift from the CLI: every command in it parses, and its walk-through runs as written."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import readme
from tests.support.shared_data import BCCD

#: A slice of BCCD, each split kept as its lists say (BloodImage_00000 is in val, as the README's invoke uses it).
SLICE = {"train": 12, "val": 6, "test": 6}


def test_every_readme_command_is_one_the_cli_accepts() -> None:
    text = readme.readme_text()
    commands = readme.commands(text)
    assert len(commands) >= 12 and {c.argv[0] for c in commands} >= {"ingest", "validate", "train", "run", "deploy",
                                                                   "models", "promote", "rollback", "tracking"}
    assert readme.rejected(text) == []


def test_a_changed_readme_command_is_caught() -> None:
    text = readme.readme_text().replace("build-recordio --input $OUT/quality", "build-recordio --inptu $OUT/quality")
    (problem,) = readme.rejected(text)
    assert "README.md:" in problem and "build-recordio --inptu" in problem and "required: --input" in problem


def _bccd_slice(root: Path) -> Path:
    data = root / "BCCD"
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (data / folder).mkdir(parents=True)
    for split, count in SLICE.items():
        ids = (BCCD / "ImageSets" / "Main" / f"{split}.txt").read_text().split()[:count]
        (data / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
        for image_id in ids:
            shutil.copy(BCCD / "Annotations" / f"{image_id}.xml", data / "Annotations")
            shutil.copy(BCCD / "JPEGImages" / f"{image_id}.jpg", data / "JPEGImages")
    return data


@pytest.mark.slow
def test_the_walkthrough_runs_as_written(tmp_path: Path) -> None:
    from include.project import PROJECT_ROOT

    block = readme.walkthrough(readme.readme_text())
    data, out = _bccd_slice(tmp_path), tmp_path / "out"
    lines = block.splitlines()
    for name, value in (("DATA", data), ("OUT", out)):  # where the data is and where the outputs go: this test's
        (at,) = [i for i, line in enumerate(lines) if line.startswith(f"{name}=")]
        lines[at] = f"{name}={value}"
    env = {
        **os.environ,
        # tiny settings, through the environment (they rank above the profile, below a flag)
        "DETECTION__TRAINING__HYPERPARAMETERS__EPOCHS": "1",
        "DETECTION__TRAINING__HYPERPARAMETERS__IMAGE_SHAPE": "128",
        "DETECTION__STORAGE__BASE_URI": str(tmp_path / "runs"),
        "DETECTION__LOCAL__ENDPOINT_STATE_DIR": str(tmp_path / "endpoints"),
        "MXNET_HOME": str(tmp_path / "mxnet"),  # the weights import's cache: this test's own
    }
    env.pop("DETECTION_CONFIG_FILE", None)
    try:
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(lines)], cwd=PROJECT_ROOT, env=env,
                              capture_output=True, text=True, timeout=900)
    finally:
        subprocess.run([str(PROJECT_ROOT / ".venv/bin/detection-pipeline"), "teardown"], cwd=PROJECT_ROOT, env=env,
                       capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr[-4000:]
    assert (out / "evaluation" / "report.html").is_file() and (out / "detections.png").is_file()
    assert "images per split: train 12, validation 6, test 6" in done.stderr  # BCCD's own lists
    assert "test mAP@0.5" in done.stderr and "stopped bccd-detector" in done.stderr
    assert f"started from ImageNet weights of mobilenet-1.0: {tmp_path / 'mxnet' / 'models'}" in done.stderr
    assert list((tmp_path / "endpoints").glob("*.json")) == []
