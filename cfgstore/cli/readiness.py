"""Is a namespace complete? What ``export`` checks before it writes and ``status`` shows.

A namespace is what one store holds: a Redis key prefix, a file backend's configs folder,
a third-party backend's database. It is *initialised* once ``cfgctl init``, ``migrate``
or ``restore`` gave it a namespace id; it is *mid-migration* while the ``migrating``
marker of a ``cfgctl migrate`` that has not finished is set. ``migrate`` records, with
that marker, the command that finishes the run (``migrating_command``). All of it lives
in the store's metadata (``store.meta``), so it works the same on every backend.
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
    on_redis: bool = True
    """Whether the namespace is a Redis one (the hints then name the Redis settings)."""

    @classmethod
    def of(cls, meta: dict[str, str], *, on_redis: bool = True) -> Readiness:
        return cls(
            initialised=bool(meta.get("namespace")),
            migrating_since=meta.get(MIGRATING) or None,
            finish_command=meta.get(MIGRATING_COMMAND) or None,
            on_redis=on_redis,
        )

    @classmethod
    async def read(cls, store: Store) -> Readiness:
        return cls.of(await store.meta.get(), on_redis="redis" in store.backend_names)

    def interrupted(self) -> str | None:
        """One line about an interrupted migration and how to finish it, or ``None``."""
        if self.migrating_since is None:
            return None
        finish = self.finish_command or "cfgctl migrate --configs <the same folder>"
        return (
            f"a `cfgctl migrate` started {self.migrating_since} did not finish; "
            f"finish it with: {finish} (same {'Redis' if self.on_redis else 'backend'} settings)"
        )

    def incomplete(self) -> str | None:
        """Why this namespace is no complete copy of a deployment, or ``None``."""
        interrupted = self.interrupted()
        if interrupted is not None:
            return f"the namespace is mid-migration: {interrupted}"
        if not self.initialised:
            check = (
                "--redis-url and CFGSTORE_REDIS_PREFIX"
                if self.on_redis
                else "--backends and the backend's settings (the file backend: --configs)"
            )
            return (
                "the namespace was never initialised (no `cfgctl init`, `migrate` or "
                f"`restore` ran on it): check {check}"
            )
        return None
