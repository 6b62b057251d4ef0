"""``ai-monitor`` (aiclient-protocols §5.4): every client request and its answer, before and
after conversion, in the log — with its secrets masked. Off unless enabled in
``plugins.json``.

For each request let in, once its answer is complete, lines at INFO under the logger
``cfgstore_gateway.ai_monitor``, each starting ``[AI Monitor][<request id>]``: the route
(client protocol → upstream protocol, model, status, type/node, tokens, latency), the
request headers, the client's request body and the body sent upstream (one line when
they are the same), the upstream's answer and the client's (a stream aggregated: the JSON
of its events as one array). The last ``keep`` exchanges stay in memory for the console
tab (``GET /api/ai-monitor/recent``, admin session).

With ``"keepInStore": N`` (N > 0, at most 1000) in its ``plugins.json`` entry (read live,
like ``enabled``), each exchange, masked and cut as below, is also appended to the store's
plugin log ``ai-monitor`` (:mod:`cfgstore.hookspecs.plugin_logs`, trimmed to the N
newest, each entry at most 64 KiB), and the console tab reads that log: every instance's
exchanges, newest first, each naming its ``instance``. Nothing unmasked reaches the store.
Without it (or 0, the default) the exchanges stay in this process's memory only.

Masked (``***``): header values named like a key, token, secret, password, cookie,
auth or signature; every string under a JSON field named like a key, token, secret,
password, passphrase, cookie or credential, however deep (token counts are numbers,
kept), the last one of a cut body included; and wherever they appear, the keys
the request offered (its outcome's :attr:`~cfgstore_gateway.plugin_api.Outcome.keys`),
anything shaped like a potluck key (``maki_`` and 32 hex digits), the configured client
key and the secrets of the pools' nodes (settings named as above). Every body shown is
cut at ``max_chars`` characters (the gateway keeps at most 64 KiB of each). Full prompts
and answers still go to the log (each on one line: characters that are not printable are
written as their escapes): that is what the plugin is for; keep it off where logs must
not hold them.
"""

from __future__ import annotations

import collections
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from aiohttp import web

from cfgstore.errors import CfgStoreError
from cfgstore.model.plugin_logs import MAX_KEEP
from cfgstore_gateway.hookspecs import plugins_hookimpl
from cfgstore_gateway.plugin_api import (
    ConsoleTab,
    Exchange,
    GatewayPlugin,
    Outcome,
    PluginContext,
    PluginRoute,
)
from cfgstore_gateway.protocols.sse import SseParser

log = logging.getLogger("cfgstore_gateway.ai_monitor")

NAME = "ai-monitor"
MASK = "***"
SECRET_NAME = re.compile(
    r"key|token|secret|password|passwd|passphrase|authorization|cookie|credential|session",
    re.IGNORECASE,
)
_SECRET_HEADER = re.compile(rf"{SECRET_NAME.pattern}|auth|signature", re.IGNORECASE)
"""A header named so is masked whole (``X-Auth``, ``X-Amz-Signature`` too: a body field
named ``author`` is no secret, a header named ``auth`` is)."""
_SECRET_FIELD = re.compile(
    r'("[^"\\]*(?:key|token|secret|password|passwd|passphrase|authorization|cookie|credential)'
    r'[^"\\]*"'
    r'\s*:\s*)"(?:[^"\\]|\\.)*(?:"|\\?$)',
    re.IGNORECASE,
)
"""A JSON string field named like a secret, in text that does not parse (a cut body: its
last value may lack its closing quote)."""
_HEADERS_KEPT = 64
_SECRETS_MAX_AGE_S = 5.0
_MIN_SECRET = 6
_POTLUCK_KEY = re.compile(r"maki_[0-9a-f]{32}")
"""Potluck keys are masked by their shape too, whichever request offered them."""


class AiMonitor:
    """The plugin (see the module docstring)."""

    name = NAME
    description = "Logs every request and answer, before and after conversion (secrets masked)"
    priority = 100
    enabled_by_default = False
    wants_exchange = True

    def __init__(self, keep: int = 50, max_chars: int = 16 * 1024) -> None:
        self.max_chars = max_chars
        self.recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=keep)
        self._context: PluginContext | None = None
        self._secrets: tuple[str, ...] = ()
        self._secrets_at = -_SECRETS_MAX_AGE_S
        self.routes = (PluginRoute("GET", "/api/ai-monitor/recent", self._recent, "admin"),)
        self.console = ConsoleTab("AI Monitor", CONSOLE_SCRIPT)

    async def start(self, context: PluginContext) -> None:
        self._context = context

    async def stop(self) -> None:
        """Nothing to release (the exchanges kept stay readable until the process ends)."""

    async def finished(self, outcome: Outcome) -> None:
        # The request's own headers and keys travel with its outcome: nothing is kept
        # between admission and the end (a client choosing X-Request-Id, or a flood of
        # refused requests, cannot mix or evict them).
        headers = {
            name: MASK if _SECRET_HEADER.search(name) else value
            for name, value in list(outcome.headers.items())[:_HEADERS_KEPT]
        }
        offered = outcome.keys
        secrets = sorted({*await self._known_secrets(), *offered}, key=len, reverse=True)
        masker = _Masker([s for s in secrets if len(s) >= _MIN_SECRET], self.max_chars)
        tag = f"[AI Monitor][{outcome.request_id}]"
        usage = outcome.usage
        tokens = f"{usage.input_tokens}/{usage.output_tokens}" if usage is not None else "-"
        summary = (
            f"{outcome.protocol} -> {outcome.upstream_protocol or '-'} | "
            f"{outcome.model or '-'} | {outcome.status} | "
            f"{outcome.provider_type or '-'}/{outcome.node or '-'} | tokens {tokens}"
        )
        log.info(
            "%s %s | %.0f ms%s",
            tag,
            one_line(summary),
            outcome.latency_ms,
            " | stream" * outcome.stream,
        )
        shown_headers = masker.text(json.dumps(headers, ensure_ascii=False))
        log.info("%s request headers: %s", tag, one_line(shown_headers))
        entry: dict[str, Any] = {
            "requestId": outcome.request_id,
            "instance": self._context.instance_id if self._context is not None else None,
            "at": time.time(),
            "summary": summary,
            "status": outcome.status,
            "stream": outcome.stream,
            "headers": shown_headers,
        }
        exchange = outcome.exchange
        if exchange is not None:
            for label, key, text in _parts(exchange, masker):
                log.info("%s %s: %s", tag, label, one_line(text))
                entry[key] = text
            if exchange.truncated:
                log.info("%s (bodies cut at the gateway's capture limit)", tag)
        self.recent.append(entry)
        keep = self.keep_in_store()
        if keep and self._context is not None:
            try:
                await self._context.store.plugin_logs.append(NAME, entry, keep)
            except CfgStoreError as exc:
                log.warning("ai-monitor: exchange %s not kept in the store (%s)", tag, exc)

    def keep_in_store(self) -> int:
        """``keepInStore`` of the plugin's live ``plugins.json`` entry (0: memory only)."""
        if self._context is None:
            return 0
        value = self._context.entry().get("keepInStore")
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 1:
            return 0
        return min(int(value), MAX_KEEP)

    async def _known_secrets(self) -> tuple[str, ...]:
        """The configured client key and the nodes' secrets (re-read every few seconds)."""
        context = self._context
        if context is None or time.monotonic() - self._secrets_at < _SECRETS_MAX_AGE_S:
            return self._secrets
        found: set[str] = set()
        try:
            config = await context.store.config.get()
            found.update(_secret_values(config.document))
            required = config.document.get("REQUIRED_API_KEY")
            if isinstance(required, str):
                found.add(required)
            view = await context.store.pools.view()
            for nodes in view.values():
                for node in nodes:
                    found.update(_secret_values(node.settings))
        except CfgStoreError as exc:
            log.warning("ai-monitor: secrets to mask not re-read (%s); the last ones kept", exc)
            return self._secrets
        self._secrets = tuple(found)
        self._secrets_at = time.monotonic()
        return self._secrets

    async def _recent(self, request: web.Request) -> web.StreamResponse:
        """The store's log with ``keepInStore`` (every instance's exchanges), else this
        process's; newest first. A store that cannot answer: this process's, said so."""
        keep = self.keep_in_store()
        if keep and self._context is not None:
            try:
                stored = await self._context.store.plugin_logs.recent(NAME, keep)
            except CfgStoreError as exc:
                log.warning("ai-monitor: the stored exchanges unreadable (%s)", exc)
            else:
                return web.json_response({"success": True, "source": "store", "data": stored})
        data = list(reversed(self.recent))
        return web.json_response({"success": True, "source": "memory", "data": data})


def one_line(text: str) -> str:
    """``text`` with every character that is not printable as its escape (``\\n``,
    ``\\x1b``): a client's model name or a body that is not JSON cannot start a log line
    of its own (backslashes are kept: a JSON body reads as it was)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def _secret_values(document: Mapping[str, Any]) -> Iterator[str]:
    for key, value in document.items():
        if isinstance(value, str) and SECRET_NAME.search(key) and len(value) >= _MIN_SECRET:
            yield value


def _parts(exchange: Exchange, masker: _Masker) -> Iterator[tuple[str, str, str]]:
    """``(label, entry key, masked text)`` of each body of the exchange."""
    client = masker.body(exchange.client_request)
    yield "client request", "clientRequest", client
    if exchange.upstream_request is not None:
        upstream = masker.body(exchange.upstream_request)
        if upstream != client:
            yield "upstream request", "upstreamRequest", upstream
        else:
            yield "upstream request", "upstreamRequest", "(the client request, unchanged)"
    if exchange.upstream_reply is not None:
        reply = masker.body(exchange.upstream_reply)
        yield "upstream reply", "upstreamReply", reply
        if exchange.client_reply is not None:
            answer = masker.body(exchange.client_reply)
            if answer == reply:
                answer = "(the upstream reply, unchanged)"
            yield "client reply", "clientReply", answer


class _Masker:
    def __init__(self, secrets: Iterable[str], max_chars: int) -> None:
        self._secrets = tuple(secrets)
        self._max_chars = max_chars

    def body(self, data: bytes) -> str:
        text = data.decode("utf-8", "replace")
        value = _as_json(text)
        if value is not None:
            text = json.dumps(_masked(value), ensure_ascii=False)
        else:
            text = _SECRET_FIELD.sub(lambda m: f'{m.group(1)}"{MASK}"', text)
        return self.text(text)

    def text(self, text: str) -> str:
        text = _POTLUCK_KEY.sub(MASK, text)
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
            escaped = json.dumps(secret)[1:-1]
            if escaped != secret and escaped in text:
                text = text.replace(escaped, MASK)
        if len(text) > self._max_chars:
            text = f"{text[: self._max_chars]}…({len(text) - self._max_chars} more characters)"
        return text


def _as_json(text: str) -> Any:
    """A JSON body, or a stream's events as one array of their JSON (``None``: neither)."""
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            return json.loads(stripped)
        except ValueError:
            return None
    if stripped.startswith(("data:", "event:", ":")):
        parser = SseParser()
        events = parser.feed(text.encode()) + parser.close()
        out: list[Any] = []
        for event in events:
            try:
                out.append(json.loads(event.data))
            except ValueError:
                out.append(event.data)
        return out
    return None


def _masked(value: Any, secret: bool = False) -> Any:
    """``value`` with every string under a field named like a secret masked, however deep
    (``{"api_keys": ["sk-…"]}``, ``{"credentials": [{"value": "…"}]}``); numbers kept."""
    if isinstance(value, dict):
        return {
            key: _masked(item, secret or bool(SECRET_NAME.search(key)))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_masked(item, secret) for item in value]
    return MASK if secret and isinstance(value, str) else value


CONSOLE_SCRIPT = b"""// The AI Monitor tab: the last exchanges the ai-monitor plugin kept (masked).
export async function render(element, api) {
  const answer = await api("/api/ai-monitor/recent");
  const entries = (answer && answer.data) || [];
  element.replaceChildren();
  const title = document.createElement("h2");
  title.textContent = "AI Monitor: last " + entries.length + " requests";
  element.append(title);
  for (const entry of entries) {
    const box = document.createElement("details");
    const head = document.createElement("summary");
    head.textContent = entry.requestId + " | " +
      (entry.instance ? entry.instance + " | " : "") + entry.summary;
    box.append(head);
    for (const key of ["headers", "clientRequest", "upstreamRequest", "upstreamReply",
                       "clientReply"]) {
      if (entry[key] === undefined) continue;
      const label = document.createElement("h4");
      label.textContent = key;
      const body = document.createElement("pre");
      body.textContent = entry[key];
      box.append(label, body);
    }
    element.append(box);
  }
}
"""


@plugins_hookimpl
def cfgstore_gateway_plugins(register: Callable[[GatewayPlugin], None]) -> None:
    """One monitor per gateway application (its recent exchanges are its own)."""
    register(AiMonitor())
