"""What a backend reports about itself (``cfgstore_status``, ``cfgctl status``)."""

from __future__ import annotations

import attrs


@attrs.frozen
class EntityCounts:
    provider_types: int = 0
    nodes: int = 0
    healthy_nodes: int = 0
    credentials: int = 0
    sessions: int = 0
    plugins: int = 0
    custom_models: int = 0


@attrs.frozen
class BackendStatus:
    """``name`` of the backend, a human ``location`` (folder, Redis address without
    credentials), ``mode`` (``file``, ``redis``, ``degraded``…), counts, warnings and
    details."""

    name: str
    location: str
    mode: str
    counts: EntityCounts
    warnings: tuple[str, ...] = ()
    details: dict[str, str] = attrs.field(factory=dict)
    """Backend facts for operators (server version, memory policy, schema, last
    migration…), never a secret."""
