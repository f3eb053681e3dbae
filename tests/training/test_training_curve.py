"""The training curve: nothing between epochs changes training, the step keeps the optimizer's state, epoch losses.

Regression tests of issue 17's investigation: a train cross-entropy that rose exactly at the
learning-rate step. Neither the evaluation between epochs (which rebuilds the inference graph)
nor the step loses trainer state; the epoch figure was the mean of a few heavy-tailed batches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from include.training import ssd_trainer
from include.training.hyperparameters import validate_hyperparameters
from include.training.metric_log import parse_metrics
from include.training.recordio_data import Batchify, RecordChannel, loader
from include.training.ssd_network import build_ssd
from include.training.ssd_trainer import TrainingStep, seed_everything, train_ssd

CLASSES = ["circle", "square", "triangle"]


def _hp(**extra: str) -> dict[str, Any]:
    return validate_hyperparameters({
        "num_classes": "3", "num_training_samples": "24", "base_network": "mobilenet-1.0", "image_shape": "96",
        "mini_batch_size": "8", "optimizer": "adam", "learning_rate": "0.002", "epochs": "3",
        "lr_scheduler_step": "2", **extra,
    })


def _train(tiny_data: Path, tmp_path: Path, **extra: str) -> tuple[list[str], Any, list[TrainingStep]]:
    """Train on the tiny set from seed 0; the emitted lines, the outcome and the TrainingStep used."""
    hp = _hp(**extra)
    seed_everything(0)
    net = build_ssd("mobilenet-1.0", 96, CLASSES)
    train = loader(RecordChannel(tiny_data / "train", tmp_path / "i"), 8, Batchify(96, 0.5), shuffle=True, workers=0)
    validation = loader(RecordChannel(tiny_data / "validation", tmp_path / "v"), 8, Batchify(96), shuffle=False,
                        workers=0)
    lines: list[str] = []
    steps: list[TrainingStep] = []
    create = TrainingStep.create

    def keep(*args: Any) -> TrainingStep:
        steps.append(create(*args))
        return steps[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TrainingStep, "create", keep)
        outcome, _ = train_ssd(net, train, validation, hp, CLASSES, lines.append)
    return lines, outcome, steps


def _batch_losses(lines: list[str]) -> dict[int, list[float]]:
    """Per-batch cross-entropy per epoch, from the running means logged after every batch."""
    means: dict[int, list[float]] = {}
    for epoch, mean in parse_metrics("\n".join(lines))["train:cross_entropy"]:
        means.setdefault(epoch, []).append(mean)
    return {epoch: [k * m - (k - 1) * (ms[k - 2] if k > 1 else 0.0) for k, m in enumerate(ms, start=1)]
            for epoch, ms in means.items()}


@pytest.fixture(scope="module")
def reference(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], Any, list[TrainingStep]]:
    """Three epochs, the rate stepping down at the third, every batch's running loss logged."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ssd_trainer, "LOG_INTERVAL", 1)
        return _train(tiny_data, tmp_path_factory.mktemp("reference"))


def test_evaluation_between_epochs_does_not_change_training(reference, tiny_data: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Clearing the cached graph and running validation (inference graph, NMS) leave training as it was."""
    from gluoncv.model_zoo.ssd.ssd import SSD

    monkeypatch.setattr(ssd_trainer, "LOG_INTERVAL", 1)
    monkeypatch.setattr(ssd_trainer, "evaluate_map", lambda *args: (0.0, {}))
    monkeypatch.setattr(SSD, "set_nms", lambda self, **kwargs: None)
    with_evaluation, without = _batch_losses(reference[0]), _batch_losses(_train(tiny_data, tmp_path)[0])
    assert sorted(with_evaluation) == sorted(without) == [0, 1, 2]  # the step (epoch 2) is included
    for epoch in with_evaluation:
        np.testing.assert_allclose(with_evaluation[epoch], without[epoch], rtol=1e-5)


def test_the_learning_rate_step_keeps_the_optimizer_state(reference) -> None:
    _, outcome, (step,) = reference
    batches = sum(e.batches for e in outcome.epochs)
    assert [e.learning_rate for e in outcome.epochs] == [0.002, 0.002, pytest.approx(0.0002)]
    assert step.trainer.learning_rate == pytest.approx(0.0002)
    assert step.updates == batches and step.trainer._optimizer.num_update == batches  # Adam's count never restarted
    states = step.trainer._updaters[0].states
    assert len(states) == len(step.trainer._params) and all(s is not None for s in states.values())


def test_the_epoch_loss_is_the_mean_of_all_its_batches(reference) -> None:
    lines, outcome, _ = reference
    losses = _batch_losses(lines)
    for epoch in outcome.epochs:
        values = losses[epoch.epoch]
        assert epoch.batches == len(values) == 3  # 24 records, batch 8
        assert epoch.cross_entropy == pytest.approx(np.mean(values), rel=1e-5)
        assert epoch.cross_entropy_median == pytest.approx(np.median(values), rel=1e-5)
        assert epoch.cross_entropy_max == pytest.approx(max(values), rel=1e-5)
    summary = next(line for line in lines if line.startswith("Epoch 0:"))
    assert f"median {outcome.epochs[0].cross_entropy_median:.4f}" in summary and "of 3 batches" in summary


def test_warm_up_raises_the_rate_linearly_over_its_batches() -> None:
    step = TrainingStep(net=None, trainer=None, targets=None, loss_fn=None, warmup_batches=4)
    rates = []
    for _ in range(6):
        rates.append(step.learning_rate(0.01))
        step.updates += 1
    assert rates == pytest.approx([0.0025, 0.005, 0.0075, 0.01, 0.01, 0.01])
    assert TrainingStep(None, None, None, None).learning_rate(0.01) == 0.01  # no warm-up by default


def test_base_network_learns_at_base_lr_factor() -> None:
    """The local-only base_lr_factor scales the base network's rate (Gluon's lr_mult), nothing else's."""
    from include.training.ssd_network import base_parameters

    net = build_ssd("mobilenet-1.0", 96, CLASSES)
    for param in base_parameters(net, "mobilenet-1.0"):
        param.lr_mult = 0.25
    trainer = ssd_trainer.make_trainer(net, _hp())
    optimizer = trainer._optimizer
    rates = {p.name: optimizer._get_lrs([i])[0] for i, p in enumerate(trainer._params)}
    base = [v for k, v in rates.items() if k.startswith("mobilenet")]
    head = [v for k, v in rates.items() if not k.startswith("mobilenet")]
    assert len(base) == 81 and base == pytest.approx([0.0005] * 81)  # 27 convolutions, 27 BatchNorm gamma/beta
    assert head and head == pytest.approx([0.002] * len(head))
