"""The model registry: one registered model per DAG, a version per trained model, aliases for what is served.

``champion`` is the version the promotion gate compares against and deployment serves;
``previous`` is the champion it replaced (the rollback target). Every move of ``champion`` goes
through :meth:`Registry.set_champion`, which moves ``previous`` with it and appends the move to the
registered model's ``detection.alias_history`` tag (when, which versions, who, why), so the
standing endpoint and the CLI can tell what served when.

MLflow deletes a version's aliases with the version. So that "the champion was deleted" is
reported rather than mistaken for "there never was one", an alias that is gone while the history
says which version last held it is reported (:class:`AliasLookup.note`), never crashed on.

Calls are few (a move: one read, two alias writes, one tag write): every one is a request to the
tracking server from a task process (``bench/bench_tracking.py``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from include.tracking.rest import ALREADY_EXISTS, INVALID, NOT_FOUND, TrackingError
from include.tracking.runs import client

CHAMPION = "champion"
PREVIOUS = "previous"
HISTORY_TAG = "detection.alias_history"
#: Version tags the pipeline sets: the mAP the gate decides on (evaluation's, on the split named by ``SPLIT_TAG``:
#: the held-out ``test`` split, or ``validation`` when the data set has none).
MAP_TAG = "map"
SPLIT_TAG = "map_split"
COCO_TAG = "coco_map"
APPROVAL_TAG = "detection.approval"
MODEL_DATA_TAG = "detection.model_data_url"
#: The model's monitoring baseline (Model Monitor's statistics.json / constraints.json, beside the model).
BASELINE_TAG = "detection.monitoring.baseline_uri"
#: Room the history may take in one tag (managed MLflow servers of older versions keep 5,000 characters).
HISTORY_MAX_CHARS = 4500


class RegistryError(ValueError):
    """A version or alias the request needs is not in the registry (the message says which and what there is)."""


@dataclass(frozen=True)
class ModelVersion:
    """One version of the registered model."""

    name: str
    version: int
    run_id: str
    source: str
    status: str
    created_ms: int
    tags: dict[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()

    @classmethod
    def from_answer(cls, answer: Mapping[str, Any], aliases: tuple[str, ...] = ()) -> ModelVersion:
        return cls(
            name=answer["name"],
            version=int(answer["version"]),
            run_id=answer.get("run_id", ""),
            source=answer.get("source", ""),
            status=answer.get("status", ""),
            created_ms=int(answer.get("creation_timestamp", 0)),
            tags={t["key"]: t.get("value", "") for t in answer.get("tags", [])},
            aliases=tuple(answer.get("aliases") or aliases),
        )

    @property
    def model_data_url(self) -> str:
        """The model archive a deployment serves (the version's source when no other is recorded)."""
        return self.tags.get(MODEL_DATA_TAG) or self.source

    @property
    def baseline_uri(self) -> str:
        """The model's monitoring baseline: the recorded one, else ``monitoring/`` beside the model archive."""
        from include.monitoring.monitor import baseline_location

        return self.tags.get(BASELINE_TAG) or baseline_location(self.model_data_url)

    @property
    def score(self) -> float | None:
        """The mAP the promotion gate compared (None for a version registered without one, e.g. by hand)."""
        value = self.tags.get(MAP_TAG)
        return float(value) if value not in (None, "") else None

    @property
    def score_split(self) -> str:
        """The split :attr:`score` was measured on (``test``, or ``validation`` when there was no test split)."""
        return self.tags.get(SPLIT_TAG, "")


@dataclass(frozen=True)
class AliasLookup:
    """What an alias points at: a version, or None with a note when it used to point somewhere."""

    alias: str
    version: ModelVersion | None
    note: str | None = None


class Registry:
    """The registered model ``name`` on the tracking server ``uri``."""

    def __init__(self, uri: str, name: str) -> None:
        self.api = client(uri)
        self.name = name

    # --- reading ----------------------------------------------------------------------------

    def model(self) -> dict[str, Any] | None:
        """The registered model (with ``aliases`` and ``tags``), or None before its first version."""
        try:
            return self.api.call("GET", "registered-models/get", params={"name": self.name})["registered_model"]
        except TrackingError as exc:
            if exc.code == NOT_FOUND:
                return None
            raise

    def _state(self) -> tuple[dict[str, int], list[dict[str, Any]]]:
        """``({alias: version}, history of champion moves)`` from one read of the registered model."""
        model = self.model() or {}
        tags = {t["key"]: t.get("value", "") for t in model.get("tags", [])}
        try:
            history = json.loads(tags.get(HISTORY_TAG) or "[]")
        except ValueError:
            history = []
        return {a["alias"]: int(a["version"]) for a in model.get("aliases", [])}, history

    def aliases(self) -> dict[str, int]:
        """``{alias: version}`` as the registry holds them now."""
        return self._state()[0]

    def version(self, number: int) -> ModelVersion:
        """Version ``number``; :class:`RegistryError` when there is no such version (or it was deleted)."""
        try:
            answer = self.api.call("GET", "model-versions/get", params={"name": self.name, "version": str(number)})
        except TrackingError as exc:
            if exc.code in (NOT_FOUND, INVALID):
                have = ", ".join(str(v.version) for v in self.versions()) or "none"
                raise RegistryError(
                    f"registered model {self.name!r} has no version {number} (versions: {have})"
                ) from None
            raise
        return ModelVersion.from_answer(answer["model_version"])

    def versions(self) -> list[ModelVersion]:
        """Every version, newest first, each with the aliases it holds."""
        holders: dict[int, list[str]] = {}
        for alias, number in self.aliases().items():
            holders.setdefault(number, []).append(alias)
        out, token = [], None
        while True:
            params = {"filter": f"name = '{self.name}'", "max_results": 200, "order_by": ["version_number DESC"]}
            if token:
                params["page_token"] = token
            answer = self.api.call("GET", "model-versions/search", params=params)
            out += [
                ModelVersion.from_answer(v, tuple(sorted(holders.get(int(v["version"]), []))))
                for v in answer.get("model_versions", [])
            ]
            token = answer.get("next_page_token")
            if not token:
                return sorted(out, key=lambda v: -v.version)

    def lookup(self, alias: str) -> AliasLookup:
        """What ``alias`` points at; a note, not an error, when it points nowhere it used to."""
        aliases, history = self._state()
        number = aliases.get(alias)
        if number is not None:
            version = self.version(number)
            if version.status not in ("READY", ""):
                return AliasLookup(
                    alias, None, f"alias {alias!r} points at version {number}, which is {version.status}"
                )
            return AliasLookup(alias, version)
        holders = [move["champion"] if alias == CHAMPION else move.get("replaced") for move in history]
        last = next((h for h in reversed(holders) if h is not None), None) if alias in (CHAMPION, PREVIOUS) else None
        if last is not None:
            return AliasLookup(
                alias,
                None,
                f"alias {alias!r} of {self.name!r} is gone: version {last}, which held it, "
                "was deleted (or the alias removed by hand)",
            )
        return AliasLookup(alias, None)

    def history(self) -> list[dict[str, Any]]:
        """Every recorded move of ``champion``, oldest first (the most recent ones when the record was trimmed)."""
        return self._state()[1]

    # --- writing ----------------------------------------------------------------------------

    def ensure_model(self, description: str = "") -> None:
        if self.model() is not None:
            return
        try:
            self.api.call("POST", "registered-models/create", {"name": self.name, "description": description})
        except TrackingError as exc:
            if exc.code != ALREADY_EXISTS:
                raise

    def register(self, source: str, run_id: str, tags: Mapping[str, Any], description: str = "") -> ModelVersion:
        """The version of the model trained in ``run_id`` (created once: a retried gate finds it)."""
        self.ensure_model()
        answer = self.api.call(
            "GET",
            "model-versions/search",
            params={"filter": f"name = '{self.name}' and run_id = '{run_id}'", "max_results": 10},
        )
        existing = [v for v in answer.get("model_versions", []) if v.get("source") == source]
        if existing:
            version = ModelVersion.from_answer(existing[0])
            self.tag_version(version.version, tags)
            return self.version(version.version)
        body = {
            "name": self.name,
            "source": source,
            "run_id": run_id,
            "description": description,
            "tags": [{"key": k, "value": str(v)} for k, v in tags.items()],
        }
        return ModelVersion.from_answer(self.api.call("POST", "model-versions/create", body)["model_version"])

    def tag_version(self, number: int, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            self.api.call(
                "POST",
                "model-versions/set-tag",
                {"name": self.name, "version": str(number), "key": key, "value": str(value)},
            )

    def _set_model_tag(self, key: str, value: str) -> None:
        self.api.call("POST", "registered-models/set-tag", {"name": self.name, "key": key, "value": value})

    def _point(self, alias: str, number: int) -> None:
        try:
            self.api.call(
                "POST", "registered-models/alias", {"name": self.name, "alias": alias, "version": str(number)}
            )
        except TrackingError as exc:
            if exc.code == NOT_FOUND:
                self.version(number)  # raises RegistryError listing the versions there are
            raise

    def set_champion(self, number: int, *, action: str, by: str, reason: str) -> dict[str, Any]:
        """Make version ``number`` the champion; the champion it replaces becomes ``previous``.

        Returns the move as recorded in the history: ``{"at", "action", "champion", "replaced", "by", "reason"}``.
        Making the champion champion again changes nothing but the history.
        """
        aliases, history = self._state()
        current = aliases.get(CHAMPION)
        replaced = current if current is not None and current != number else None
        self._point(CHAMPION, number)  # first: a version that is not there moves nothing
        if replaced is not None:
            self._point(PREVIOUS, replaced)
        move = {
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "action": action,
            "champion": number,
            "replaced": replaced,
            "by": by,
            "reason": reason[:200],
        }
        history = [*history, move]
        while len(json.dumps(history)) > HISTORY_MAX_CHARS and len(history) > 1:
            history.pop(0)
        self._set_model_tag(HISTORY_TAG, json.dumps(history))
        return move

    def rollback(self, number: int | None, *, by: str, reason: str) -> dict[str, Any]:
        """Make ``previous`` (or version ``number``, which must have been champion before) the champion again."""
        if number is None:
            previous = self.lookup(PREVIOUS)
            if previous.version is None:
                raise RegistryError(
                    previous.note
                    or f"registered model {self.name!r} has no {PREVIOUS!r} version "
                    "to roll back to (no champion has been replaced yet)"
                )
            number = previous.version.version
        served = {move["champion"] for move in self.history()}
        if number not in served:
            raise RegistryError(
                f"version {number} of {self.name!r} has never been champion "
                f"(champions so far: {sorted(served) or 'none'}); promote it instead"
            )
        return self.set_champion(number, action="rollback", by=by, reason=reason)
