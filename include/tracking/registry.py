"""The model registry: one registered model per DAG, a version per trained model, aliases for what is served.

``champion`` is the version the promotion gate compares against and deployment serves;
``previous`` is the champion it replaced (the rollback target). Every move of ``champion`` goes
through :meth:`Registry.set_champion`, which moves ``previous`` with it and appends the move to the
registered model's ``detection.alias_history`` tag (when, which versions, who, why), so the
standing endpoint and the CLI can tell what served when.

MLflow deletes a version's aliases with the version. So that "the champion was deleted" is
reported rather than mistaken for "there never was one", the registered model also carries
``detection.champion_version`` / ``detection.previous_version``: an alias that is gone while that
tag names a version is reported (:class:`AliasLookup.note`), never crashed on.
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
#: The registered model's record of the last version each alias pointed at.
LAST_HOLDER_TAG = "detection.{alias}_version"
#: Version tags the pipeline sets.
MAP_TAG = "validation_map"
COCO_TAG = "coco_map"
APPROVAL_TAG = "detection.approval"
MODEL_DATA_TAG = "detection.model_data_url"
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
    def validation_map(self) -> float | None:
        value = self.tags.get(MAP_TAG)
        return float(value) if value not in (None, "") else None


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

    def aliases(self) -> dict[str, int]:
        """``{alias: version}`` as the registry holds them now."""
        model = self.model() or {}
        return {a["alias"]: int(a["version"]) for a in model.get("aliases", [])}

    def _tags(self) -> dict[str, str]:
        model = self.model() or {}
        return {t["key"]: t.get("value", "") for t in model.get("tags", [])}

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
        number = self.aliases().get(alias)
        if number is not None:
            version = self.version(number)
            if version.status not in ("READY", ""):
                return AliasLookup(
                    alias, None, f"alias {alias!r} points at version {number}, which is {version.status}"
                )
            return AliasLookup(alias, version)
        last = self._tags().get(LAST_HOLDER_TAG.format(alias=alias))
        if last:
            return AliasLookup(
                alias,
                None,
                f"alias {alias!r} of {self.name!r} is gone: version {last}, which held it, "
                "was deleted (or the alias removed by hand)",
            )
        return AliasLookup(alias, None)

    def history(self) -> list[dict[str, Any]]:
        """Every recorded move of ``champion``, oldest first (the most recent ones when the record was trimmed)."""
        try:
            return json.loads(self._tags().get(HISTORY_TAG) or "[]")
        except ValueError:
            return []

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
        created = self.api.call("POST", "model-versions/create", body)["model_version"]
        return self.version(int(created["version"]))

    def tag_version(self, number: int, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            self.api.call(
                "POST",
                "model-versions/set-tag",
                {"name": self.name, "version": str(number), "key": key, "value": str(value)},
            )

    def _set_model_tag(self, key: str, value: str) -> None:
        self.api.call("POST", "registered-models/set-tag", {"name": self.name, "key": key, "value": value})

    def _point(self, alias: str, number: int | None) -> None:
        if number is None:
            self.api.call("DELETE", "registered-models/alias", params={"name": self.name, "alias": alias})
            return
        self.api.call("POST", "registered-models/alias", {"name": self.name, "alias": alias, "version": str(number)})
        self._set_model_tag(LAST_HOLDER_TAG.format(alias=alias), str(number))

    def set_champion(self, number: int, *, action: str, by: str, reason: str) -> dict[str, Any]:
        """Make version ``number`` the champion; the champion it replaces becomes ``previous``.

        Returns the move as recorded in the history: ``{"at", "action", "champion", "replaced", "by", "reason"}``.
        Making the champion champion again changes nothing but the history.
        """
        target = self.version(number)
        current = self.lookup(CHAMPION).version
        replaced = current.version if current is not None and current.version != target.version else None
        if replaced is not None:
            self._point(PREVIOUS, replaced)
        self._point(CHAMPION, target.version)
        move = {
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "action": action,
            "champion": target.version,
            "replaced": replaced,
            "by": by,
            "reason": reason[:200],
        }
        history = [*self.history(), move]
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
