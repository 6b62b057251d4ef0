"""The request flow of ``POST /v1/chat/completions`` (aiclient-formats §3.5).

Before the first target, the request is prepared once: a model naming a custom model
(``custom_models.json``) redirects the route
(:func:`~cfgstore_gateway.routing.with_custom_model`), and the operator's system prompt and
``SYSTEM_PROMPT_REPLACEMENTS`` are applied to the body (:mod:`cfgstore_gateway.prompting`).

For each target of the route (the effective type, then its fallbacks), until one answers:

1. **Select** a node from the live pools (``store.pools.view()``, re-read for every pick)
   with the services' selector (the
   :class:`~cfgstore_gateway.selection_index.IndexedSelector`, following the view's change
   feed), excluding the nodes this request already tried. The pick is recorded at once, in
   one batch: ``Recovered`` for every node whose cooldown has passed (also when nothing is
   picked), then ``Selected(seq)``.
   No node left → next target.
2. **Slot**: hold one of the node's slots (``concurrencyLimit`` / ``queueLimit``, per
   process) for the whole upstream call, stream included. A full node
   (:class:`~cfgstore_gateway.selection.SlotsFull`, queue timeout included) is skipped:
   the next pick excludes it; no failure is recorded and no switch counted.
3. **Credential**: for OAuth types, ``refresher.credential_for`` (refreshed first when near
   expiry); none, or a failed refresh of an expired one, is a failure of the node.
4. **Upstream** through the type's adapter. A 401 on an OAuth type records
   ``NeedRefresh``, forces a refresh (``refresher.refresh(force=True)``) and retries on the
   same node once; a refresh that fails is recorded as a failure (``Refresh failed: …``).
   A 429 or 5xx answer is retried on the same node, before anything is recorded, up to
   ``REQUEST_MAX_RETRIES`` times (0..100), waiting ``REQUEST_BASE_DELAY · 2^n`` ms before
   retry ``n`` (0-based); the Node service's defaults (3 retries, 1000 ms) apply when
   ``config.json`` does not set them. Only the last answer is bookkept.
5. **Bookkeeping**: ``Success`` once the answer was delivered (a stream: after its last
   chunk); ``Cooldown`` for a 429 when ``RATE_LIMIT_COOLDOWN_ENABLED`` (recovery at now +
   ``min(Retry-After or RATE_LIMIT_COOLDOWN_MS, max(RATE_LIMIT_COOLDOWN_MS,
   RATE_LIMIT_COOLDOWN_MAX_MS)) + random(0..RATE_LIMIT_COOLDOWN_JITTER_MS)``); a cooldown
   until the moment the upstream named for an answer that says the account's quota is spent
   (:func:`~cfgstore_gateway.adapters.quota_reset_of`: never retried on the same node, always
   switched, whatever the cooldown settings); ``Failure``
   (with the config's ``MAX_ERROR_COUNT``) for every other error answer or missing answer,
   **except 400** (the client's request was bad: passed through, nothing recorded).
6. **Switch**: a failure before any byte reached the client, with status 401, 402, 403,
   408, 429, ≥ 500 or no answer at all, is retried on another node (then on the next
   target), at most ``CREDENTIAL_SWITCH_MAX_RETRIES`` times per request. Other error
   answers (400, 404, 422…) go back to the client as the upstream gave them.

A stream is committed with its first upstream chunk: the client's response starts only
once the upstream produced one, so an upstream that fails before that is still switched.
A stream that breaks later ends with an SSE error event and a recorded failure; a client
that goes away mid-stream records nothing (the node did nothing wrong).

Nodes this gateway does not serve (:mod:`cfgstore_gateway.serviceability`: no adapter for
the type, or a pass-through type with no upstream) are never picked: a pick that lands on
one leaves out every such node of the type, and nothing is recorded for them (no pick, no
recovery, no failure).

When nothing answered: the last upstream error as the upstream gave it (or ``502`` when
no answer came); with no upstream tried, ``429`` when every candidate was at its
concurrency limit, else ``503`` — both ``No healthy provider found in pool``, the ``503``
naming the type, what chose it and why each target was skipped
(:mod:`cfgstore_gateway.route_report`).

Secrets: failure messages (stored as ``lastErrorMessage``, logged) and upstream error
bodies handed back to the client have the node's secrets (settings named like a key,
token, secret, password or cookie; the credential's values) replaced by ``***``: an
upstream may echo the key it refused. A store that refuses a record (journal full,
storage error) is logged; the client's answer stands.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Iterator, Mapping, Sequence
from typing import Any

import attrs
from aiohttp import web

from cfgstore.adapters.facades import Pools
from cfgstore.errors import CfgStoreError, CredentialPathOutside, NotFound
from cfgstore.model import records as rec
from cfgstore.model.config import MainConfig
from cfgstore.model.credentials import Credential
from cfgstore.model.node_changes import changes_of
from cfgstore.model.pools import ProviderNode
from cfgstore.model.timefmt import iso_ms, now_ms
from cfgstore_gateway.adapters import (
    SAME_AS_CLIENT,
    Adapter,
    NotServed,
    UpstreamCall,
    UpstreamReply,
    UpstreamUnavailable,
    quota_reset_of,
    upstream_protocol,
)
from cfgstore_gateway.adapters.quota_reset import retry_after_ms
from cfgstore_gateway.errors import NO_HEALTHY_PROVIDER, error_body, error_response
from cfgstore_gateway.plugin_runtime import ExchangeRecorder
from cfgstore_gateway.prompting import apply_system_prompt, apply_to_system
from cfgstore_gateway.protocols import Converter, StreamFailed, StreamTranslator
from cfgstore_gateway.protocols import neutral as n
from cfgstore_gateway.protocols.client import OPENAI_CLIENT, ClientProtocol
from cfgstore_gateway.protocols.usage_sniffer import UsageSniffer
from cfgstore_gateway.refresh import RefreshFailed
from cfgstore_gateway.route_report import Skip, no_provider_message, pool_skip_reason, types_listing
from cfgstore_gateway.routing import Route, Target, with_custom_model
from cfgstore_gateway.selection import Choice, SlotsFull
from cfgstore_gateway.serviceability import NO_ADAPTER, unserved_nodes, unserved_reason
from cfgstore_gateway.services import Services

log = logging.getLogger("cfgstore_gateway.proxy")

COOLDOWN_MESSAGE = "429 Too Many Requests - short cooldown"
QUOTA_MESSAGE = "Quota exhausted"
MAX_ERROR_DETAIL = 200
MAX_SAME_NODE_RETRIES = 100


def same_node_retries(config: MainConfig) -> tuple[int, float]:
    """``(REQUEST_MAX_RETRIES, REQUEST_BASE_DELAY in s)``, the Node service's defaults
    (3, 1000 ms) when ``config.json`` does not set them."""
    retries = min(MAX_SAME_NODE_RETRIES, max(0, config.int_value("REQUEST_MAX_RETRIES")))
    return retries, max(0, config.int_value("REQUEST_BASE_DELAY")) / 1000


def retried_on_same_node(status: int) -> bool:
    """Whether an answer with this status is retried on the same node first."""
    return status == 429 or 500 <= status < 600


def switches_node(status: int | None) -> bool:
    """Whether a failure with this status (``None``: no answer) is retried elsewhere."""
    return status is None or status in (401, 402, 403, 408, 429) or status >= 500


@attrs.define
class RequestInfo:
    """What the access log line tells about one request (no secrets)."""

    request_id: str
    provider_type: str | None = None
    uuid: str | None = None
    attempts: int = 0
    usage: n.Usage | None = None
    """The upstream's token usage, when its answer said it."""
    model: str | None = None
    """The model routed to (the last target tried)."""
    upstream_protocol: str | None = None
    stream: bool = False
    admitted: bool = False
    """Let in as a client request (its outcome goes to the gateway plugins)."""
    admitted_by: str | None = None
    admission: Mapping[str, Any] = attrs.Factory(dict)
    exchange: ExchangeRecorder | None = None
    """The bodies, kept only while a gateway plugin wants them."""


@attrs.frozen
class Failed:
    """An attempt that delivered nothing to the client (bookkeeping already done)."""

    status: int | None
    body: bytes | None
    content_type: str | None
    message: str
    client_shaped: bool = True
    """Whether ``body`` is in the client's protocol (the upstream speaks it): then it goes
    back as it came; otherwise the client gets its own error shape with the message."""

    @property
    def switch(self) -> bool:
        return switches_node(self.status)


@attrs.frozen
class ClientRequest:
    """The parsed client request: the body as sent (in the client's protocol) and as an
    object, and, for a client whose request is converted, the neutral request."""

    raw: bytes
    body: Mapping[str, Any]
    model: str
    stream: bool
    pristine: bool = True
    """Whether ``body`` is still what ``raw`` holds (no system prompt applied)."""
    protocol: ClientProtocol = OPENAI_CLIENT
    neutral: n.ChatRequest | None = None
    """The request in the neutral model (read from ``body`` when ``None`` and needed)."""
    body_stale: bool = False
    """Whether ``neutral`` holds a change ``body`` lacks (the system prompt of a converted
    client): then even an upstream of the client's protocol gets a body rendered anew."""
    path: str = "/v1/chat/completions"
    """The client's path after any ``/{provider}`` prefix."""

    def for_target(
        self, target: Target, upstream: Converter
    ) -> tuple[Mapping[str, Any], bytes | None]:
        """The body for ``target`` in the ``upstream``'s protocol, and the raw bytes when
        it is the client's own, unchanged: one conversion at most."""
        if self.protocol.speaks(upstream) and not self.body_stale:
            if target.model == self.model or "model" not in self.body:
                return self.body, self.raw if self.pristine else None
            return {**self.body, "model": target.model}, None
        request = attrs.evolve(self.as_neutral(), model=target.model, stream=self.stream)
        return upstream.render_request(request), None

    def as_neutral(self) -> n.ChatRequest:
        if self.neutral is not None:
            return self.neutral
        return self.protocol.converter.parse_request(self.body, self.model)

    def with_body(self, body: Mapping[str, Any]) -> ClientRequest:
        """This request with a rewritten body (itself when ``body`` is its body)."""
        if body is self.body:
            return self
        return attrs.evolve(self, body=body, pristine=False)

    def with_system_prompt(self, prompt: str | None, config: MainConfig) -> ClientRequest:
        """The operator's system prompt and replacements applied
        (:mod:`cfgstore_gateway.prompting`): to an OpenAI chat body as such, to the neutral
        request of any other protocol."""
        if self.protocol.is_openai_chat:
            return self.with_body(apply_system_prompt(self.body, prompt, config))
        request = self.as_neutral()
        system = apply_to_system(request.system, prompt, config)
        if system == request.system:
            return self
        return attrs.evolve(
            self, neutral=attrs.evolve(request, system=system), body_stale=True, pristine=False
        )


async def prepare(
    services: Services, client: ClientRequest, route: Route, config: MainConfig
) -> tuple[ClientRequest, Route]:
    """Apply the custom models and the system prompt (see the module docstring). A store
    that cannot give them is logged; the request goes on without them."""
    store = services.store
    try:
        models = await store.custom_models.list()
    except CfgStoreError as exc:
        log.error("custom models unavailable: %s", exc)
        models = []
    if models:
        route = with_custom_model(
            route,
            route.targets[0].model,
            models,
            config,
            lambda t: _static_models(services, t),
        )
    try:
        prompt = await store.system_prompt.get()
    except CfgStoreError as exc:
        log.error("system prompt unavailable: %s", exc)
        prompt = None
    return client.with_system_prompt(prompt, config), route


def _static_models(services: Services, provider_type: str) -> tuple[str, ...]:
    adapter = services.registry.for_type(provider_type)
    return tuple(adapter.static_models(provider_type)) if adapter is not None else ()


async def proxy_chat(
    services: Services,
    request: web.Request,
    client: ClientRequest,
    route: Route,
    config: MainConfig,
    info: RequestInfo,
) -> web.StreamResponse:
    """Serve one chat completion (see the module docstring)."""
    client, route = await prepare(services, client, route, config)
    info.stream, info.model = client.stream, route.targets[0].model if route.targets else None
    if info.exchange is not None:
        info.exchange.set_client_request(client.raw)
    max_switches = max(0, config.int_value("CREDENTIAL_SWITCH_MAX_RETRIES"))
    switches = 0
    busy = False
    skips: list[Skip] = []
    last: Failed | None = None
    store = services.store
    for target in route.targets:
        adapter = services.registry.for_type(target.provider_type)
        if adapter is None:
            skips.append(Skip(target, f"{NO_ADAPTER} for {target.provider_type}", True))
            continue
        tried: set[str] = set()
        attempted: set[str] = set()
        busy_nodes: set[str] = set()
        unserved: dict[str, str] = {}
        while True:
            view = await store.pools.view()
            nodes = view.get(target.provider_type, ())
            now = now_ms()
            choice = services.selector.select(
                target.provider_type,
                nodes,
                target.model,
                now_ms=now,
                exclude=tried,
                changes=changes_of(view),
            )
            if (
                choice is not None
                and not unserved
                and unserved_reason(services.registry, target.provider_type, choice.node, config)
            ):
                # Found lazily (one check per pick): leave out every such node of the type.
                unserved = unserved_nodes(services.registry, target.provider_type, nodes, config)
                tried |= unserved.keys()
                continue
            await _record_pick(services, target, choice, info, nodes, config)
            if choice is None:
                if not attempted:
                    skips.append(
                        pool_skip_reason(
                            target,
                            nodes,
                            now_ms=now,
                            unserved=unserved,
                            attempted=attempted,
                            busy=busy_nodes,
                        )
                    )
                break
            services.metrics.selected(target.provider_type)
            node = choice.node
            tried.add(node.uuid)
            info.provider_type, info.uuid = target.provider_type, node.uuid
            info.model = target.model
            try:
                async with services.slots.acquire(
                    target.provider_type, node, timeout_s=services.options.queue_timeout_s
                ):
                    info.attempts += 1
                    outcome = await _attempt(
                        services, request, client, target, node, adapter, config, info
                    )
            except SlotsFull:
                busy = True
                busy_nodes.add(node.uuid)
                continue
            attempted.add(node.uuid)
            if not isinstance(outcome, Failed):
                return outcome
            last = outcome
            if not outcome.switch or switches >= max_switches:
                return _failure_response(outcome, client.protocol)
            switches += 1
            log.info(
                "req=%s type=%s node=%s failed (%s); switching (%d/%d)",
                info.request_id,
                target.provider_type,
                node.uuid,
                outcome.message,
                switches,
                max_switches,
            )
    protocol = client.protocol
    if last is not None:
        return _failure_response(last, protocol)
    if busy:
        return protocol.error_response(
            429,
            f"{NO_HEALTHY_PROVIDER}: every candidate is at its concurrency limit",
            "provider_busy",
        )
    return await _no_provider(services, route, skips, config, protocol)


async def _no_provider(
    services: Services,
    route: Route,
    skips: list[Skip],
    config: MainConfig,
    protocol: ClientProtocol,
) -> web.Response:
    """``503``: no target gave a node; the message says why (see the module docstring)."""
    view = await services.store.pools.view()
    model = route.targets[0].model
    routed = {t.provider_type for t in route.targets}
    listing = types_listing(model, view, services.models_cache, routed)
    elsewhere = [t for t in listing if services.registry.for_type(t) is not None]
    message = no_provider_message(route, skips, config, view.keys(), elsewhere)
    log.warning("no provider: %s", message)
    code = "provider_unsupported" if all(s.no_adapter for s in skips) else "no_healthy_provider"
    return protocol.error_response(503, message, code)


async def _record_pick(
    services: Services,
    target: Target,
    choice: Choice | None,
    info: RequestInfo,
    nodes: Sequence[ProviderNode],
    config: MainConfig,
) -> None:
    """Record the pick: ``Recovered`` for every node due (but a node this gateway cannot
    serve, left as it is), then ``Selected``."""
    provider_type = target.provider_type
    at = now_ms()
    records: list[rec.NodeRecord] = []
    if due := set(services.selector.last_recovered):
        records = [
            rec.Recovered(provider_type, node.uuid, at)
            for node in nodes
            if node.uuid in due
            and unserved_reason(services.registry, provider_type, node, config) is None
        ]
    if choice is not None:
        records.append(rec.Selected(provider_type, choice.node.uuid, at, choice.seq))
    if records:
        await _book(info, "the pick", services.store.pools.apply_records(records))


async def _book(info: RequestInfo, what: str, operation: Awaitable[None]) -> None:
    """Await a record operation; a store that refuses it (journal full, storage error) is
    logged, never turned into an error for a client whose request was served."""
    try:
        await operation
    except CfgStoreError as exc:
        log.error("req=%s: %s was not recorded: %s", info.request_id, what, exc)


@attrs.define
class _Attempt:
    """One node's try at a request: its bookkeeping, and what its messages must not show."""

    services: Services
    provider_type: str
    node: ProviderNode
    config: MainConfig
    info: RequestInfo
    credential: Credential | None = None

    @property
    def _pools(self) -> Pools:
        return self.services.store.pools

    async def success(self) -> None:
        await _book(
            self.info, "a success", self._pools.record_success(self.provider_type, self.node.uuid)
        )

    async def failure(self, message: str, status: int | None = None) -> Failed:
        """Record a failure (``Failure`` with the config's ``MAX_ERROR_COUNT``)."""
        message = self.scrub(message)
        await _book(
            self.info,
            "a failure",
            self._pools.record_failure(
                self.provider_type,
                self.node.uuid,
                message,
                max_error_count=self.config.max_error_count,
            ),
        )
        return Failed(status, None, None, message)

    async def cooldown(self, retry_after: str | None) -> None:
        recovery = cooldown_until(self.config, retry_after, now_ms())
        await _book(
            self.info,
            "a cooldown",
            self._pools.record_cooldown(
                self.provider_type,
                self.node.uuid,
                COOLDOWN_MESSAGE,
                max_error_count=self.config.max_error_count,
                recovery_at_ms=recovery,
            ),
        )

    async def quota_spent(self, reset_at_ms: int) -> None:
        """Cooldown until the moment the upstream said the account's quota comes back."""
        await _book(
            self.info,
            "a quota cooldown",
            self._pools.record_cooldown(
                self.provider_type,
                self.node.uuid,
                f"{QUOTA_MESSAGE} until {iso_ms(reset_at_ms)}",
                max_error_count=self.config.max_error_count,
                recovery_at_ms=reset_at_ms,
            ),
        )

    async def need_refresh(self) -> None:
        await _book(
            self.info,
            "a need-refresh",
            self._pools.record_need_refresh(self.provider_type, self.node.uuid),
        )

    def scrub(self, text: str) -> str:
        """``text`` without the node's secrets (an upstream may echo a key it refused)."""
        for secret in self._secrets():
            text = text.replace(secret, "***")
        return text

    def scrub_bytes(self, data: bytes) -> bytes:
        for secret in self._secrets():
            data = data.replace(secret.encode(), b"***")
        return data

    def _secrets(self) -> Iterator[str]:
        for key, value in self.node.settings.items():
            if isinstance(value, str) and len(value) >= 8 and _SECRET_KEY.search(key):
                yield value
        if self.credential is not None:
            for value in self.credential.effective().values():
                if isinstance(value, str) and len(value) >= 8:
                    yield value


_SECRET_KEY = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|COOKIE", re.IGNORECASE)


async def _attempt(
    services: Services,
    request: web.Request,
    client: ClientRequest,
    target: Target,
    node: ProviderNode,
    adapter: Adapter,
    config: MainConfig,
    info: RequestInfo,
) -> web.StreamResponse | Failed:
    provider_type = target.provider_type
    attempt = _Attempt(services, provider_type, node, config, info)
    try:
        adapter.check_node(provider_type, node, config)
    except NotServed as exc:  # not the node's fault: nothing recorded
        return Failed(None, None, None, str(exc))
    except UpstreamUnavailable as exc:
        return await attempt.failure(str(exc))
    if adapter.needs_credential(provider_type):
        try:
            attempt.credential = await services.refresher.credential_for(provider_type, node)
        except RefreshFailed as exc:
            return await attempt.failure(f"Refresh failed: {exc}")
        except CredentialPathOutside as exc:
            log.error("req=%s type=%s node=%s: %s", info.request_id, provider_type, node.uuid, exc)
            return await attempt.failure(
                "credential refused: its file lies outside the allowed folders (see the log)"
            )
        if attempt.credential is None:
            return await attempt.failure("no credential stored for the node")
    protocol = upstream_protocol(adapter)
    if protocol == SAME_AS_CLIENT:
        upstream: Converter | None = client.protocol.converter
    else:
        upstream = services.converters.get(protocol)
    if upstream is None:
        return await attempt.failure(f"no converter installed for the protocol {protocol!r}")
    body, raw = client.for_target(target, upstream)
    info.upstream_protocol = upstream.name
    if info.exchange is not None:
        info.exchange.set_upstream_request(raw if raw is not None else json.dumps(body).encode())
        info.exchange.start_reply()
    refreshed = False
    retries, base_delay_s = same_node_retries(config)
    retried = 0
    while True:
        call = UpstreamCall(
            provider_type=provider_type,
            node=node,
            config=config,
            credential=attempt.credential,
            body=body,
            raw_body=raw,
            stream=client.stream,
            session=services.session,
            request_id=info.request_id,
            model=target.model,
            path=client.path,
            pools=services.store.pools,
        )
        started = time.perf_counter()
        try:
            reply = await adapter.chat_completions(call)
        except UpstreamUnavailable as exc:
            return await attempt.failure(str(exc))
        services.metrics.upstream_latency(provider_type, time.perf_counter() - started)
        spent = quota_reset_of(reply) is not None
        if retried_on_same_node(reply.status) and retried < retries and not spent:
            reply.close()
            delay = base_delay_s * 2**retried
            retried += 1
            log.info(
                "req=%s type=%s node=%s: upstream %d; retry %d/%d on the same node in %.3fs",
                info.request_id,
                provider_type,
                node.uuid,
                reply.status,
                retried,
                retries,
                delay,
            )
            await asyncio.sleep(delay)
            continue
        if reply.status != 401 or attempt.credential is None or refreshed:
            break
        reply.close()
        refreshed = True
        await attempt.need_refresh()
        try:
            attempt.credential = await services.refresher.refresh(
                provider_type, node, force=True, seen_version=attempt.credential.version
            )
        except (RefreshFailed, NotFound) as exc:
            return await attempt.failure(f"Refresh failed: {exc}", 401)
        log.info(
            "req=%s type=%s node=%s: upstream 401, credential refreshed; retrying once",
            info.request_id,
            provider_type,
            node.uuid,
        )
    if 200 <= reply.status < 300:
        if client.stream:
            return await _deliver_stream(attempt, request, reply, client, upstream)
        return await _deliver_whole(attempt, reply, client.protocol, upstream)
    return await _upstream_error(attempt, reply, client.protocol.speaks(upstream))


async def _deliver_whole(
    attempt: _Attempt, reply: UpstreamReply, protocol: ClientProtocol, upstream: Converter
) -> web.StreamResponse | Failed:
    try:
        data = await reply.read()
    except UpstreamUnavailable as exc:
        return await attempt.failure(str(exc))
    finally:
        reply.close()
    content_type = reply.headers.get("Content-Type", "application/json")
    exchange = attempt.info.exchange
    if exchange is not None:
        exchange.add_upstream_reply(data)
    try:
        data, attempt.info.usage = protocol.client_body(data, upstream)
        content_type = "application/json"
    except ValueError as exc:
        if not protocol.speaks(upstream):  # nothing to convert: the upstream misbehaved
            return await attempt.failure(f"unreadable answer: {exc}", 502)
    if exchange is not None:
        exchange.add_client_reply(data)
    await attempt.success()
    return web.Response(body=data, status=reply.status, headers={"Content-Type": content_type})


async def _deliver_stream(
    attempt: _Attempt,
    request: web.Request,
    reply: UpstreamReply,
    client: ClientRequest,
    upstream: Converter,
) -> web.StreamResponse | Failed:
    """The upstream's stream to the client, converted event by event for a client of
    another protocol (see :class:`~cfgstore_gateway.protocols.client.ClientProtocol`)."""
    info = attempt.info
    translator = client.protocol.translator(client.model, upstream)
    sniffer = UsageSniffer(upstream)  # a pass-through's usage, read once the client has all
    chunks = reply.chunks()
    try:
        first = await _first_chunk(chunks)
    except UpstreamUnavailable as exc:
        reply.close()
        return await attempt.failure(str(exc))
    content_type = reply.headers.get("Content-Type", "text/event-stream")
    response = web.StreamResponse(
        status=reply.status,
        headers={
            "Content-Type": content_type if translator is None else "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Request-Id": info.request_id,
        },
    )
    try:
        await response.prepare(request)
        if info.exchange is not None:
            await _write_recorded(response, translator, sniffer, first, chunks, info.exchange)
            if translator is not None:
                info.usage = translator.usage
        elif translator is None:
            if first:
                sniffer.feed(first)
                await response.write(first)
            async for chunk in chunks:
                sniffer.feed(chunk)
                await response.write(chunk)
        else:
            await _write_translated(response, translator, first, chunks)
            info.usage = translator.usage
    except StreamFailed as exc:
        failed = await attempt.failure(attempt.scrub(f"stream error: {exc}"), exc.status)
        await _end_quietly(
            response, client.protocol.stream_error(exc.status, failed.message, client.model)
        )
        return response
    except UpstreamUnavailable as exc:
        failed = await attempt.failure(f"stream broke: {exc}")
        log.warning(
            "req=%s type=%s node=%s: upstream stream broke after the first chunk: %s",
            info.request_id,
            attempt.provider_type,
            attempt.node.uuid,
            failed.message,
        )
        if client.protocol.is_openai_chat:
            payload = error_body(
                "upstream stream interrupted", "upstream_error", "stream_interrupted"
            )
            last = b"data: " + json.dumps(payload).encode() + b"\n\n"
        else:
            last = client.protocol.stream_error(502, "upstream stream interrupted", client.model)
        await _end_quietly(response, last)
        return response
    except ConnectionError:
        log.info("req=%s: client went away during the stream", info.request_id)
        return response
    finally:
        reply.close()
    await attempt.success()
    await _end_quietly(response)
    if translator is None:
        info.usage = sniffer.usage()
    return response


async def _write_translated(
    response: web.StreamResponse,
    translator: StreamTranslator,
    first: bytes,
    chunks: AsyncIterator[bytes],
) -> None:
    """Each upstream chunk's events as soon as they are complete, then the end."""
    out = translator.feed(first)
    if out:
        await response.write(out)
    async for chunk in chunks:
        out = translator.feed(chunk)
        if out:
            await response.write(out)
    out = translator.close()
    if out:
        await response.write(out)


async def _write_recorded(
    response: web.StreamResponse,
    translator: StreamTranslator | None,
    sniffer: UsageSniffer,
    first: bytes,
    chunks: AsyncIterator[bytes],
    exchange: ExchangeRecorder,
) -> None:
    """The stream, converted or passed through, with its bytes kept both ways for the
    plugins that want the exchange (only while one is enabled)."""

    async def all_chunks() -> AsyncIterator[bytes]:
        if first:
            yield first
        async for chunk in chunks:
            yield chunk

    async for chunk in all_chunks():
        exchange.add_upstream_reply(chunk)
        if translator is None:
            sniffer.feed(chunk)
        out = chunk if translator is None else translator.feed(chunk)
        if out:
            exchange.add_client_reply(out)
            await response.write(out)
    if translator is not None:
        out = translator.close()
        if out:
            exchange.add_client_reply(out)
            await response.write(out)


async def _first_chunk(chunks: AsyncIterator[bytes]) -> bytes:
    """The first non-empty chunk, or ``b""`` for an empty body."""
    async for chunk in chunks:
        if chunk:
            return chunk
    return b""


async def _end_quietly(response: web.StreamResponse, last: bytes = b"") -> None:
    """Finish a stream whose client may be gone already."""
    with contextlib.suppress(ConnectionError, RuntimeError):
        if last:
            await response.write(last)
        await response.write_eof()


async def _upstream_error(attempt: _Attempt, reply: UpstreamReply, client_shaped: bool) -> Failed:
    status = reply.status
    content_type = reply.headers.get("Content-Type")
    retry_after = reply.headers.get("Retry-After")
    try:
        body: bytes | None = await reply.read()
    except UpstreamUnavailable:
        body = None
    finally:
        reply.close()
    if body is not None:
        body = attempt.scrub_bytes(body)  # it goes back to the client
    detail = _error_detail(body)
    message = attempt.scrub(f"HTTP {status}" + (f": {detail}" if detail else ""))
    quota_reset = quota_reset_of(reply)
    if quota_reset is not None:
        await attempt.quota_spent(quota_reset)
    elif status == 400:
        pass  # the client's request was bad: nothing to hold against the node
    elif status == 429 and attempt.config.get("RATE_LIMIT_COOLDOWN_ENABLED") is True:
        await attempt.cooldown(retry_after)
    else:
        await attempt.failure(message, status)
    return Failed(status, body, content_type, message, client_shaped)


def _failure_response(failed: Failed, protocol: ClientProtocol) -> web.Response:
    """The last failure for the client: the upstream's error body as it came (scrubbed)
    when the upstream speaks the client's protocol, else the client's own error shape with
    the upstream's message."""
    if failed.status is not None and failed.body is not None and failed.client_shaped:
        return web.Response(
            body=failed.body,
            status=failed.status,
            headers={"Content-Type": failed.content_type or "application/json"},
        )
    if failed.status is not None and failed.body is not None:
        detail = _error_detail(failed.body) or failed.message
        return protocol.error_response(failed.status, detail)
    if failed.status is not None:
        if protocol.is_openai_chat:
            return error_response(
                failed.status, f"Upstream error: {failed.message}", "upstream_error"
            )
        return protocol.error_response(failed.status, f"Upstream error: {failed.message}")
    if protocol.is_openai_chat:
        return error_response(
            502, f"Upstream unavailable: {failed.message}", "upstream_error", "upstream_unavailable"
        )
    return protocol.error_response(502, f"Upstream unavailable: {failed.message}")


def _error_detail(body: bytes | None) -> str:
    """A short human detail of an upstream error body (its ``error.message`` when JSON)."""
    if not body:
        return ""
    text = body[:4096].decode("utf-8", "replace")
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if isinstance(document, dict):
        error = document.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            text = error["message"]
        elif isinstance(error, str):
            text = error
        elif isinstance(document.get("message"), str):
            text = document["message"]
    text = " ".join(text.split())
    return text[:MAX_ERROR_DETAIL]


def cooldown_until(config: MainConfig, retry_after: str | None, now: int) -> int:
    """``scheduledRecoveryTime`` of a 429 cooldown (see the module docstring)."""
    base = max(0, config.int_value("RATE_LIMIT_COOLDOWN_MS"))
    cap = max(base, config.int_value("RATE_LIMIT_COOLDOWN_MAX_MS"))
    jitter = max(0, config.int_value("RATE_LIMIT_COOLDOWN_JITTER_MS"))
    wait = retry_after_ms(retry_after, now)
    return now + min(wait if wait is not None else base, cap) + random.randint(0, jitter)
