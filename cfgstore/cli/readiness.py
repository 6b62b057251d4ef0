"""Is a namespace complete? What ``export`` checks before it writes and ``status`` shows.

A namespace is *initialised* once ``cfgctl init``, ``migrate`` or ``restore`` gave it a
namespace id; it is *mid-migration* while the ``migrating`` marker of a ``cfgctl migrate``
that has not finished is set. ``migrate`` records, with that marker, the command that
finishes the run (``migrating_command``).
"""

from __future__ import annotations

import attrs

from cfgstore.adapters import Store

MIGRATING = "migrating"
"""Meta field: when an unfinished ``cfgctl migrate`` started (empty once it finished)."""
MIGRATING_COMMAND = "migrating_command"
"""Meta field: the command that finishes that migration."""


@attrs.frozen
class Readiness:
    initialised: bool
    migrating_since: str | None = None
    finish_command: str | None = None

    @classmethod
    def of(cls, meta: dict[str, str]) -> Readiness:
        return cls(
            initialised=bool(meta.get("namespace")),
            migrating_since=meta.get(MIGRATING) or None,
            finish_command=meta.get(MIGRATING_COMMAND) or None,
        )

    @classmethod
    async def read(cls, store: Store) -> Readiness:
        return cls.of(await store.meta.get())

    def interrupted(self) -> str | None:
        """One line about an interrupted migration and how to finish it, or ``None``."""
        if self.migrating_since is None:
            return None
        finish = self.finish_command or "cfgctl migrate --configs <the same folder>"
        return (
            f"a `cfgctl migrate` started {self.migrating_since} did not finish; "
            f"finish it with: {finish} (same Redis settings)"
        )

    def incomplete(self) -> str | None:
        """Why this namespace is no complete copy of a deployment, or ``None``."""
        interrupted = self.interrupted()
        if interrupted is not None:
            return f"the namespace is mid-migration: {interrupted}"
        if not self.initialised:
            return (
                "the namespace was never initialised (no `cfgctl init`, `migrate` or "
                "`restore` ran on it): check --redis-url and CFGSTORE_REDIS_PREFIX"
            )
        return None
