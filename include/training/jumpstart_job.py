"""A JumpStart SSD fine-tuning request, executed by the local algorithm.

On AWS, ``training.algorithm: jumpstart`` sends JumpStart's own training job
(:mod:`include.sagemaker.jumpstart`): the MXNet training image runs ``transfer_learning.py`` from
JumpStart's script tarball, starting from the COCO-trained SSD MobileNet 1.0 of the ``model``
channel, on the ``training`` channel (``images/`` + ``annotations.json``). The local backend has
neither that script nor that artifact (both live in JumpStart's S3 buckets), so it runs the same
request as the nearest thing it can do honestly, and says so in the log and in ``training.json``:

* the same network, GluonCV's SSD with a MobileNet 1.0 base at the model's 512 px, fine-tuned
  from ImageNet weights of the base (the weights cache), not from the COCO detector;
* JumpStart's hyperparameters mapped onto the local algorithm's (:data:`HYPERPARAMETERS`), Adam
  as JumpStart's ``adam-learning-rate`` says; others are listed as ignored;
* the ``training`` channel read with the JumpStart reader, a seeded 20 % of its images held out
  for validation (the channel has no validation split; JumpStart's script also holds out its own).
"""

from __future__ import annotations

import json
from typing import Any

from include.sagemaker.jumpstart import MODEL_ID_TAG, MODEL_VERSION_TAG, PROGRAM
from include.training.channel_conversion import VALIDATION_FRACTION
from include.training.training_request import JUMPSTART_CHANNEL, TrainingRequest, TrainingRequestError

#: JumpStart's hyperparameter -> the local algorithm's.
HYPERPARAMETERS = {"epochs": "epochs", "adam-learning-rate": "learning_rate", "batch-size": "mini_batch_size"}
#: What the JumpStart model is, in the local algorithm's terms.
FIXED = {"base_network": "mobilenet-1.0", "use_pretrained_model": "1", "optimizer": "adam", "image_shape": "512"}
CONTAINER_PREFIX = "sagemaker_"  # the SDK's container hyperparameters (JSON-encoded)


def _tag(request: TrainingRequest, key: str) -> str | None:
    return next((t.get("Value") for t in request.raw.get("Tags") or [] if t.get("Key") == key), None)


def check_program(request: TrainingRequest) -> None:
    """A JumpStart request must run JumpStart's transfer-learning script (the only one executed here)."""
    raw = request.hyperparameters.get(f"{CONTAINER_PREFIX}program")
    try:
        program = json.loads(raw) if raw is not None else PROGRAM
    except json.JSONDecodeError:
        program = raw
    if program != PROGRAM:
        raise TrainingRequestError(
            f"training request: sagemaker_program {raw!r}: the local backend executes JumpStart's {PROGRAM} only"
        )


def algorithm_hyperparameters(
    request: TrainingRequest, num_classes: int | None = None, num_training_samples: int | None = None
) -> dict[str, str]:
    """The local algorithm's hyperparameters for the request (counts from the data; 1 until it is read)."""
    check_program(request)
    mapped = {ours: request.hyperparameters[theirs] for theirs, ours in HYPERPARAMETERS.items()
              if theirs in request.hyperparameters}
    counts = {"num_classes": str(num_classes or 1), "num_training_samples": str(num_training_samples or 1)}
    return {**FIXED, **mapped, **counts}


def ignored_hyperparameters(request: TrainingRequest) -> list[str]:
    """The request's JumpStart hyperparameters the local algorithm has no equivalent for."""
    return sorted(k for k in request.hyperparameters
                  if k not in HYPERPARAMETERS and not k.startswith(CONTAINER_PREFIX))


def substitute(request: TrainingRequest, weights: dict[str, Any]) -> dict[str, Any]:
    """What ran instead of JumpStart's script (``training.json`` keeps it as ``LocalSubstitute``)."""
    return {
        "Algorithm": "jumpstart",
        "JumpStartModelId": _tag(request, MODEL_ID_TAG),
        "JumpStartModelVersion": _tag(request, MODEL_VERSION_TAG),
        "LocalSubstitute": (
            f"GluonCV SSD {FIXED['base_network']} at {FIXED['image_shape']} px fine-tuned from the ImageNet weights "
            f"{weights.get('file')} (sha256 {weights.get('sha256')}) instead of {PROGRAM} from the model channel's "
            f"COCO detector; {int(VALIDATION_FRACTION * 100)} % of the {JUMPSTART_CHANNEL} channel's images held out "
            f"for validation; ignored hyperparameters: {', '.join(ignored_hyperparameters(request)) or 'none'}"
        ),
    }
