"""What a shared backend tells the memory fallback about itself (``cfgstore.hookspecs.replica``)."""

from __future__ import annotations

from typing import Any

import attrs

from cfgstore.errors import InvalidData


@attrs.frozen
class ReplicaHead:
    """The namespace as a probe sees it: its id (``None`` when none was ever set, i.e.
    the namespace is empty or was emptied), its revision, and whether it holds any data."""

    namespace_id: str | None
    revision: int
    has_data: bool


@attrs.frozen
class HealthTransition:
    provider_type: str
    uuid: str
    healthy: bool


@attrs.frozen
class AppliedBatch:
    """The outcome of one record batch: the namespace revision after it (``None`` when the
    batch was a duplicate, applied before under the same operation id) and the nodes whose
    health it changed."""

    revision: int | None
    transitions: tuple[HealthTransition, ...] = ()

    @property
    def duplicate(self) -> bool:
        return self.revision is None


INSTANCE_FIELDS = (
    "instance_id",
    "host",
    "pid",
    "version",
    "mode",
    "journal_depth",
    "oldest_entry_age_ms",
    "last_error",
    "last_resync",
    "started_at",
    "state_dir",
)


@attrs.frozen
class InstanceInfo:
    """One live instance as its heartbeat describes it (never a secret)."""

    instance_id: str
    host: str
    pid: int
    version: str
    mode: str
    journal_depth: int = 0
    oldest_entry_age_ms: int | None = None
    last_error: str | None = None
    last_resync: str | None = None
    started_at: str | None = None
    state_dir: str | None = None

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, doc: Any, source: str) -> InstanceInfo:
        if not isinstance(doc, dict):
            raise InvalidData(source, "$", "an instance heartbeat must be a JSON object")
        try:
            return cls(**{k: doc[k] for k in INSTANCE_FIELDS if k in doc})
        except TypeError as exc:
            raise InvalidData(source, "$", f"not an instance heartbeat: {exc}") from None
