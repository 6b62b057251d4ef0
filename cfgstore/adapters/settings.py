"""Settings, highest precedence first: explicit values (command-line flags), ``CFGSTORE_*``
environment variables, then ``REDIS_URL`` (DESIGN §4). Tests use their own variables and
never read an operator's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import attrs

from cfgstore.credential_paths import parse_roots
from cfgstore.errors import InvalidData

DEFAULT_FILE_CHAIN = ("memory", "file")
DEFAULT_REDIS_CHAIN = ("memory", "redis")


@attrs.frozen
class Settings:
    """Everything a Store needs to build its backend chain.

    ``configs_dir`` is the AIClient-2-API ``configs/`` folder; ``cwd`` the working directory
    that relative paths inside the data resolve against (default: the parent of
    ``configs_dir``, ``/app`` in the Node Docker image) — FR-011.
    """

    configs_dir: Path = Path("configs")
    cwd: Path | None = None
    redis_url: str | None = None
    redis_prefix: str = "aiclient"
    # Discrete Redis settings (FR-009); each overrides the same part of ``redis_url``.
    redis_host: str | None = None
    redis_port: int | None = None
    redis_username: str | None = None
    redis_password: str | None = attrs.field(default=None, repr=False)
    redis_db: int | None = None
    redis_tls_ca_certs: str | None = None
    redis_tls_certfile: str | None = None
    redis_tls_keyfile: str | None = None
    redis_socket_timeout_ms: int = 2000
    redis_connect_timeout_ms: int = 2000
    redis_max_connections: int = 32
    backends: tuple[str, ...] | None = None
    state_dir: Path | None = None
    """This instance's own directory (instance id, confirmed-state snapshot, outage
    journal); default ``<cwd>/.cfgstore-state``. One per instance (per worker process)."""
    # Memory fallback (Redis mode)
    journal_max_bytes: int = 256 * 1024 * 1024
    degrade_after_ms: int = 1000
    probe_max_delay_ms: int = 5000
    snapshot_interval_ms: int = 30_000
    heartbeat_interval_ms: int = 5000
    remote_refresh_ms: int = 20
    confirmed_tail_ms: int = 5000
    # File backend
    write_debounce_ms: int = 1000
    write_max_wait_ms: int = 5000
    watch_interval_ms: int = 1000
    reset_counters_on_start: bool = True
    credential_roots: tuple[Path, ...] = ()
    """Folders besides the working directory and the configs folder where credential files
    may live (``CFGSTORE_CREDENTIAL_ROOTS``, ``os.pathsep``-separated); see
    :mod:`cfgstore.credential_paths`."""
    extra: Mapping[str, str] = attrs.field(factory=dict)
    """Unrecognised ``CFGSTORE_*`` values, for third-party backends (key without prefix,
    lower-case)."""

    @property
    def working_dir(self) -> Path:
        return self.cwd if self.cwd is not None else self.configs_dir.absolute().parent

    @property
    def resolved_state_dir(self) -> Path:
        return (
            self.state_dir if self.state_dir is not None else self.working_dir / ".cfgstore-state"
        )

    @property
    def redis_configured(self) -> bool:
        return bool(self.redis_url or self.redis_host)

    @property
    def chain(self) -> tuple[str, ...]:
        """Backend names, top of the chain first."""
        if self.backends:
            return self.backends
        return DEFAULT_REDIS_CHAIN if self.redis_configured else DEFAULT_FILE_CHAIN

    @classmethod
    def load(
        cls, overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> Settings:
        """Merge ``overrides`` (flags; ``None`` values ignored) over the environment."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        extra: dict[str, str] = {}
        if env.get("REDIS_URL"):
            values["redis_url"] = env["REDIS_URL"]
        fields = attrs.fields_dict(cls)
        for key, raw in env.items():
            if not key.startswith("CFGSTORE_") or key.startswith("CFGSTORE_TEST_"):
                continue
            name = key.removeprefix("CFGSTORE_").lower()
            if name in fields and name != "extra":
                values[name] = _parse(name, raw, fields[name].type, key)
            else:
                extra[name] = raw
        for name, value in (overrides or {}).items():
            if value is None:
                continue
            if name not in fields:
                raise InvalidData("settings", name, "unknown setting")
            values[name] = (
                _parse(name, value, fields[name].type, f"--{name}")
                if isinstance(value, str)
                else value
            )
        for name in ("configs_dir", "cwd", "state_dir"):
            if isinstance(values.get(name), str):
                values[name] = Path(values[name])
        return cls(extra=extra, **values)


def _parse(name: str, raw: str, kind: object, source: str) -> Any:
    text = str(kind)
    if name == "credential_roots":
        return parse_roots(raw)
    if "tuple" in text:
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if "bool" in text:
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise InvalidData(source, name, f"expected a boolean, got {raw!r}")
    if text in ("int", "int | None"):
        try:
            return int(raw)
        except ValueError:
            raise InvalidData(source, name, f"expected an integer, got {raw!r}") from None
    return raw


def redact_url(url: str) -> str:
    """A connection URL safe to log or print: any password is replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
