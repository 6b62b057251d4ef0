"""Health checks of pool nodes: a startup pass and a periodic pass (aiclient-formats §2.2
``SCHEDULED_HEALTH_CHECK``, §3.7).

A check is a tiny, non-streaming chat request (one user message, ``max_tokens: 1``) sent to
the node through the adapter of its type, with the node's credential when the type needs
one (:meth:`~cfgstore_gateway.refresh.Refresher.credential_for`, so an expired token is
refreshed first). A 2xx answer is a success; any other status, no answer, an unusable node
or a failed token refresh is a failure. The model asked for is the node's
``checkModelName``, else the first of the adapter's static models for the type, else
:data:`DEFAULT_CHECK_MODEL`.

Which nodes: every node, not disabled, of the types listed in
``SCHEDULED_HEALTH_CHECK.providerTypes`` (empty or absent: none), except the nodes this
gateway does not serve (:mod:`cfgstore_gateway.serviceability`: no adapter for the type, or
a pass-through type without an upstream) and the types it cannot health-check: those are
left alone, nothing recorded (an imported account the Node service serves is not damaged
by a check this gateway cannot make).

When: the startup pass runs once whenever ``providerTypes`` is non-empty, even with
``enabled: false``; the periodic pass runs when ``enabled`` is true, every ``interval`` ms
when that is at least 60 000, else every ``CRON_NEAR_MINUTES`` minutes. The config is
re-read before each periodic pass, so changes apply at the next one.

Results are recorded through ``store.pools.record_health_check`` (§3.7):

* scheduled pass: success → healthy; failure → unhealthy immediately (``immediate``);
* startup pass: success → healthy with the usage count reset (``reset_usage``); failure →
  the accumulating path (unhealthy once ``MAX_ERROR_COUNT`` is reached). The startup pass
  skips unhealthy nodes whose ``lastErrorTime`` is less than 10 minutes old and nodes still
  before their ``scheduledRecoveryTime``.

A check asked for from the admin UI (:meth:`HealthChecker.check_now`, §3.7 "UI button":
``POST /providers/<type>/health-check`` checks the type's unhealthy nodes,
``POST /providers/<type>/<uuid>/health-check`` one node): success → healthy; failure → the
accumulating path, except an HTTP 401 or 403 answer → unhealthy immediately; a type the
gateway cannot health-check ("not implemented": no adapter serves it or the node, or its
adapter's optional ``supports_health_check(type)`` says no) → the node's counters are reset
(``resetProviderCounters``: ``errorCount=0``, ``usageCount=0``, healthy, error time and
message cleared, ``_lastSelectionSeq=0``). The store has no record for exactly that, so it is
recorded as a successful reset-usage health check, which sets those fields and, besides,
``refreshCount=0``, ``needsRefresh=false``, ``lastRefreshTime``, ``lastUsed`` and
``lastHealthCheckTime`` (no model).

Every record carries the model checked, so ``lastHealthCheckTime``/``lastHealthCheckModel``
are set either way. Messages (results and ``lastErrorMessage``) never hold a secret: the
node's keys and tokens are masked wherever an upstream echoes them.
:meth:`HealthChecker.run_once` runs one pass (tests drive it directly);
:meth:`HealthChecker.start` runs the startup pass and then the periodic loop in the
background, :meth:`HealthChecker.stop` ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid as uuidlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import aiohttp
import attrs

from cfgstore.adapters import Store
from cfgstore.errors import CfgStoreError, CredentialPathOutside
from cfgstore.model.config import MainConfig
from cfgstore.model.pools import ProviderNode
from cfgstore.model.timefmt import now_ms, parse_time_ms
from cfgstore_gateway.adapters import (
    SAME_AS_CLIENT,
    Adapter,
    AdapterRegistry,
    UpstreamCall,
    UpstreamUnavailable,
    upstream_protocol,
)
from cfgstore_gateway.protocols import ConverterRegistry
from cfgstore_gateway.protocols.neutral import ChatRequest, Message, Text
from cfgstore_gateway.refresh import RefreshFailed
from cfgstore_gateway.serviceability import unserved_reason
from cfgstore_gateway.services import RefresherLike, Services

__all__ = [
    "DEFAULT_CHECK_MODEL",
    "CheckResult",
    "HealthCheckSettings",
    "HealthChecker",
    "NodeNotFound",
]

log = logging.getLogger("cfgstore_gateway.health_checks")

DEFAULT_CHECK_MODEL = "gpt-4o-mini"
"""Model asked for when neither the node (``checkModelName``) nor the adapter names one."""
MIN_INTERVAL_MS = 60_000
"""Shortest ``SCHEDULED_HEALTH_CHECK.interval`` honoured (below: ``CRON_NEAR_MINUTES``)."""
RECENT_ERROR_MS = 10 * 60_000
"""The startup pass leaves alone an unhealthy node whose last error is younger than this."""
CHECK_CONCURRENCY = 4
"""Checks in flight at once within one pass."""
CHECK_TIMEOUT_S = 60.0
"""Bound of one check (request, answer and recording)."""
MESSAGE_LIMIT = 200
"""Characters of an upstream error body kept in ``lastErrorMessage``."""

AUTH_STATUSES = frozenset({401, 403})
"""Answers that mark a node unhealthy at once in a UI-asked check (§3.7)."""
SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "COOKIE", "CREDENTIAL")
"""A node or credential field whose name holds one of these is a secret (masked)."""
MASK = "****"

ConfigSource = Callable[[], Awaitable[MainConfig]]


@attrs.frozen
class HealthCheckSettings:
    """``SCHEDULED_HEALTH_CHECK`` (and ``CRON_NEAR_MINUTES``) as the checker reads them."""

    provider_types: tuple[str, ...] = ()
    enabled: bool = False
    interval_ms: int = 600_000
    """The periodic interval in effect (§3.7 rules already applied)."""

    @property
    def startup(self) -> bool:
        """The startup pass runs whenever some type is selected (§3.7)."""
        return bool(self.provider_types)

    @property
    def periodic(self) -> bool:
        return self.enabled and bool(self.provider_types)

    @classmethod
    def of(cls, config: MainConfig) -> HealthCheckSettings:
        """Read the settings from ``config.json`` (malformed values fall back to defaults)."""
        raw = config.get("SCHEDULED_HEALTH_CHECK")
        section: dict[str, Any] = raw if isinstance(raw, dict) else {}
        types = section.get("providerTypes")
        provider_types = (
            tuple(t for t in types if isinstance(t, str) and t) if isinstance(types, list) else ()
        )
        interval = section.get("interval")
        if isinstance(interval, int | float) and not isinstance(interval, bool):
            interval_ms = int(interval)
        else:
            interval_ms = 600_000
        if interval_ms < MIN_INTERVAL_MS:
            interval_ms = max(1, config.int_value("CRON_NEAR_MINUTES")) * 60_000
        return cls(provider_types, section.get("enabled") is True, interval_ms)


@attrs.frozen
class CheckResult:
    """The outcome of one node's check. ``message`` (``None`` on success) is safe to show:
    it names the cause and holds no key or token of the node."""

    provider_type: str
    uuid: str
    ok: bool
    model: str
    message: str | None = None
    status: int | None = None
    """The upstream's HTTP status, when it answered."""
    supported: bool = True
    """False when the gateway cannot health-check the node's type ("not implemented")."""

    @property
    def healthy(self) -> bool:
        """Whether the check leaves the node healthy as far as it is concerned (success,
        or a "not implemented" type whose counters were reset)."""
        return self.ok


class NodeNotFound(LookupError):
    """:meth:`HealthChecker.check_now` was asked for a node that does not exist."""


class HealthChecker:
    """Runs health checks of one store's pool nodes (see the module docstring).

    ``config`` returns the current ``config.json`` (the gateway's
    :class:`~cfgstore_gateway.services.ConfigCache` ``get``); ``clock`` is the epoch-ms
    clock of the startup skip rules and of the records."""

    def __init__(
        self,
        store: Store,
        registry: AdapterRegistry,
        session: aiohttp.ClientSession,
        refresher: RefresherLike,
        *,
        config: ConfigSource | None = None,
        clock: Callable[[], int] = now_ms,
        concurrency: int = CHECK_CONCURRENCY,
        timeout_s: float = CHECK_TIMEOUT_S,
        converters: ConverterRegistry | None = None,
    ) -> None:
        self._store = store
        self._converters = converters or ConverterRegistry()
        self._registry = registry
        self._session = session
        self._refresher = refresher
        self._config: ConfigSource = config or store.config.get
        self._clock = clock
        self._concurrency = max(1, concurrency)
        self._timeout_s = timeout_s
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def for_services(cls, services: Services) -> HealthChecker:
        """A checker over a gateway's services (its store, adapters, session, refresher)."""
        return cls(
            services.store,
            services.registry,
            services.session,
            services.refresher,
            config=services.config.get,
            converters=services.converters,
        )

    # -- one pass ------------------------------------------------------------------------

    async def run_once(self, *, startup: bool = False) -> list[CheckResult]:
        """Check every selected node once and record the results; returns them (skipped
        nodes are not in the list). ``startup`` selects the startup rules (§3.7)."""
        config = await self._config()
        settings = HealthCheckSettings.of(config)
        if not settings.provider_types:
            return []
        pools = await self._store.pools.view()
        now = self._clock()
        targets = [
            (provider_type, node)
            for provider_type in settings.provider_types
            for node in pools.get(provider_type, ())
            if not node.state.is_disabled and not (startup and self._skip_at_startup(node, now))
        ]
        left_alone: dict[str, int] = {}
        checkable: list[tuple[str, ProviderNode]] = []
        for provider_type, node in targets:
            if self._checkable(provider_type, node, config):
                checkable.append((provider_type, node))
            else:
                left_alone[provider_type] = left_alone.get(provider_type, 0) + 1
        if left_alone:
            log.info(
                "%s health check: nodes left alone, no adapter installed: %s",
                "startup" if startup else "scheduled",
                ", ".join(f"{t} ({count})" for t, count in sorted(left_alone.items())),
            )
        targets = checkable
        limit = asyncio.Semaphore(self._concurrency)

        async def limited(provider_type: str, node: ProviderNode) -> CheckResult | None:
            async with limit:
                return await self._check_and_record(provider_type, node, config, startup)

        outcomes = await asyncio.gather(*(limited(t, n) for t, n in targets))
        results = [r for r in outcomes if r is not None]
        log.info(
            "%s health check: %d checked, %d failed",
            "startup" if startup else "scheduled",
            len(results),
            sum(not r.ok for r in results),
        )
        return results

    def _checkable(self, provider_type: str, node: ProviderNode, config: MainConfig) -> bool:
        """Whether a pass checks the node: the gateway serves it and can health-check its
        type."""
        adapter = self._registry.for_type(provider_type)
        return (
            adapter is not None
            and _supports_health_check(adapter, provider_type)
            and unserved_reason(self._registry, provider_type, node, config) is None
        )

    @staticmethod
    def _skip_at_startup(node: ProviderNode, now: int) -> bool:
        state = node.state
        if not state.is_healthy:
            last_error = parse_time_ms(state.last_error_time)
            if last_error is not None and now - last_error < RECENT_ERROR_MS:
                return True
        recovery = parse_time_ms(state.scheduled_recovery_time)
        return recovery is not None and now < recovery

    async def _check_and_record(
        self, provider_type: str, node: ProviderNode, config: MainConfig, startup: bool
    ) -> CheckResult | None:
        try:
            async with asyncio.timeout(self._timeout_s):
                result = await self.check_node(provider_type, node, config)
                await self._record(
                    result,
                    config,
                    immediate=not result.ok and not startup,
                    reset_usage=result.ok and startup,
                )
        except (CfgStoreError, TimeoutError) as exc:
            log.warning("health check of %s/%s not recorded: %s", provider_type, node.uuid, exc)
            return None
        return result

    async def check_node(
        self, provider_type: str, node: ProviderNode, config: MainConfig
    ) -> CheckResult:
        """Send the check request to one node (nothing recorded)."""
        adapter = self._registry.for_type(provider_type)
        model = self._model_for(provider_type, node)
        secrets = _secrets_of(node.settings)

        def failed(message: str, status: int | None = None) -> CheckResult:
            return CheckResult(
                provider_type, node.uuid, False, model, _masked(message, secrets), status
            )

        if adapter is None or not _supports_health_check(adapter, provider_type):
            message = f"Health check not implemented for {provider_type}"
            return CheckResult(provider_type, node.uuid, False, model, message, supported=False)
        if (why := unserved_reason(self._registry, provider_type, node, config)) is not None:
            message = f"Health check not implemented: {why}"
            return CheckResult(provider_type, node.uuid, False, model, message, supported=False)
        try:
            adapter.check_node(provider_type, node, config)
            credential = None
            if adapter.needs_credential(provider_type):
                credential = await self._refresher.credential_for(provider_type, node)
                if credential is not None:
                    secrets |= _secrets_of(credential.document)
            body = self._check_body(adapter, model)
            call = UpstreamCall(
                provider_type=provider_type,
                node=node,
                config=config,
                credential=credential,
                body=body,
                raw_body=None,
                stream=False,
                session=self._session,
                request_id=f"health-{uuidlib.uuid4().hex[:12]}",
                model=model,
                pools=self._store.pools,
            )
            reply = await adapter.chat_completions(call)
            try:
                status = reply.status
                answer = await reply.read()
            finally:
                reply.close()
        except (UpstreamUnavailable, RefreshFailed, CredentialPathOutside) as exc:
            return failed(f"Health check failed: {exc}")
        except aiohttp.ClientError as exc:
            return failed(f"Health check failed: {type(exc).__name__}")
        if 200 <= status < 300:
            return CheckResult(provider_type, node.uuid, True, model, status=status)
        text = _masked(answer.decode("utf-8", "replace"), secrets)[:MESSAGE_LIMIT]
        return failed(f"Health check failed: HTTP {status}: {text}", status)

    def _check_body(self, adapter: Adapter, model: str) -> dict[str, object]:
        """ "Hi", one token at most, in the adapter's protocol."""
        protocol = upstream_protocol(adapter)
        converter = self._converters.get("openai" if protocol == SAME_AS_CLIENT else protocol)
        if converter is None:
            raise UpstreamUnavailable(f"no converter installed for the protocol {protocol!r}")
        hello = Message("user", (Text("Hi"),))
        return converter.render_request(ChatRequest(model, (hello,), max_tokens=1))

    # -- asked for by the admin UI (§3.7) --------------------------------------------------

    async def check_now(self, provider_type: str, uuid: str | None = None) -> list[CheckResult]:
        """Check one node (``uuid``) or every unhealthy node of ``provider_type`` now, and
        record the results by the UI rules (see the module docstring). Returns one result
        per node checked, in pool order; a type without unhealthy nodes gives ``[]``.
        Raises :class:`NodeNotFound` for an absent node, :class:`CfgStoreError` when the
        store fails."""
        config = await self._config()
        if uuid is not None:
            node = await self._store.pools.get_node(provider_type, uuid)
            if node is None:
                raise NodeNotFound(f"no node {uuid!r} in {provider_type!r}")
            targets = [node]
        else:
            pools = await self._store.pools.view()
            targets = [n for n in pools.get(provider_type, ()) if not n.state.is_healthy]
        limit = asyncio.Semaphore(self._concurrency)

        async def one(node: ProviderNode) -> CheckResult:
            async with limit, asyncio.timeout(self._timeout_s):
                return await self._check_now_one(provider_type, node, config)

        results = list(await asyncio.gather(*(one(n) for n in targets)))
        log.info(
            "health check of %s asked for: %d checked, %d failed",
            provider_type if uuid is None else f"{provider_type}/{uuid}",
            len(results),
            sum(not r.healthy for r in results),
        )
        return results

    async def _check_now_one(
        self, provider_type: str, node: ProviderNode, config: MainConfig
    ) -> CheckResult:
        try:
            result = await self.check_node(provider_type, node, config)
        except TimeoutError:
            result = CheckResult(
                provider_type,
                node.uuid,
                False,
                self._model_for(provider_type, node),
                "Health check failed: timed out",
            )
        if not result.supported:
            # resetProviderCounters: the closest record is a successful reset-usage check.
            reset = attrs.evolve(result, ok=True, message=f"{result.message}: counters reset")
            await self._record(reset, config, reset_usage=True, with_model=False)
            return reset
        await self._record(
            result, config, immediate=not result.ok and result.status in AUTH_STATUSES
        )
        return result

    async def _record(
        self,
        result: CheckResult,
        config: MainConfig,
        *,
        immediate: bool = False,
        reset_usage: bool = False,
        with_model: bool = True,
    ) -> None:
        await self._store.pools.record_health_check(
            result.provider_type,
            result.uuid,
            ok=result.ok,
            model=result.model if with_model else None,
            message=None if result.ok else result.message,
            max_error_count=config.max_error_count,
            immediate=immediate,
            reset_usage=reset_usage,
            at_ms=self._clock(),
        )

    def _model_for(self, provider_type: str, node: ProviderNode) -> str:
        named = node.settings.get("checkModelName")
        if isinstance(named, str) and named:
            return named
        adapter = self._registry.for_type(provider_type)
        known: Sequence[str] = adapter.static_models(provider_type) if adapter else ()
        return known[0] if known else DEFAULT_CHECK_MODEL

    # -- background ----------------------------------------------------------------------

    def start(self) -> None:
        """Run the startup pass (when some type is selected), then the periodic loop, in a
        background task of the running loop."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="cfgstore-health-checks")

    async def stop(self) -> None:
        """Cancel the background task and wait for it."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        await self._guarded(startup=True)
        while True:
            settings = await self._settings()
            await asyncio.sleep(settings.interval_ms / 1000 if settings else 60.0)
            settings = await self._settings()
            if settings is not None and settings.periodic:
                await self._guarded(startup=False)

    async def _settings(self) -> HealthCheckSettings | None:
        try:
            return HealthCheckSettings.of(await self._config())
        except CfgStoreError as exc:
            log.warning("health checks: config unreadable: %s", exc)
            return None

    async def _guarded(self, *, startup: bool) -> None:
        try:
            await self.run_once(startup=startup)
        except CfgStoreError as exc:
            log.warning("health check pass failed: %s", exc)
        except Exception:
            log.exception("health check pass failed")


def _supports_health_check(adapter: Adapter, provider_type: str) -> bool:
    """An adapter may declare (outside the protocol) that it cannot health-check a type."""
    supports = getattr(adapter, "supports_health_check", None)
    return not callable(supports) or bool(supports(provider_type))


def _secrets_of(fields: Mapping[str, object]) -> set[str]:
    """The string values of ``fields`` whose names look secret (long enough to matter)."""
    return {
        value
        for name, value in fields.items()
        if isinstance(value, str)
        and len(value) >= 6
        and any(word in name.upper() for word in SECRET_WORDS)
    }


def _masked(text: str, secrets: set[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text
