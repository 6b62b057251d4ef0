"""Upstream protocol adapters: the contract, the call and reply values, the registry.

An :class:`Adapter` turns one proxied request (the body in the adapter's protocol, the chosen
pool node, its credential) into an upstream call and hands back an :class:`UpstreamReply`
whose body the gateway streams to the client as it arrives. Adapters do no bookkeeping and
no retries: selection, slots, credentials refresh, health records and switching to another
node are the gateway's (:mod:`cfgstore_gateway.proxy`). An adapter raises
:class:`UpstreamUnavailable` when no HTTP answer arrived (connection refused or reset,
timeout); any HTTP answer, error statuses included, is a reply.

Contract of a reply: ``status`` and ``headers`` are known when the call returns; the body
is read once, either whole (:meth:`UpstreamReply.read`) or chunk by chunk
(:meth:`UpstreamReply.chunks`), and :meth:`UpstreamReply.close` is always called (it
returns the pooled connection). For a successful reply the body is in the adapter's
protocol (JSON, or ``text/event-stream`` when the request asked for ``stream``).

:class:`AdapterRegistry` resolves which adapter serves a provider type once per type and
caches the answer (no pluggy call and no scan per request). An adapter may declare itself
*generic* (a true ``generic`` attribute, outside the protocol: a fallback that serves types
other adapters speak natively, as the OpenAI-compatible pass-through does): it serves a type
only when no other adapter does, whatever the registration order. An adapter may also list
the provider types it serves (a ``provider_types`` collection of strings, outside the
protocol too): the web UI offers them (``GET /api/providers/supported``) before any pool of
that type exists, since ``serves`` alone cannot be enumerated.

The wire protocol of an adapter's bodies is OpenAI chat completions unless it names another
in an optional ``protocol`` attribute (``claude``, ``gemini``, ``openaiResponses``, or a
protocol a converter plugin adds: :mod:`cfgstore_gateway.protocols`): the gateway converts a
client's request into that protocol before the call (or passes it through when the client
speaks it) and the answer back, so the call's ``body`` and a successful reply's body are in
the adapter's protocol. An adapter whose ``protocol`` is :data:`SAME_AS_CLIENT` gets the
client's body in the client's protocol, and its reply goes back as it came.

Two optional members, outside the protocol, carry what only an account's upstream knows:

* a reply's ``quota_reset_ms`` (epoch ms, :func:`quota_reset_of`): set on an error reply
  when the upstream said the account's quota is spent until then (Kiro's monthly limit,
  Gemini's ``quotaResetDelay``, Codex's ``resets_at``). The gateway then puts the node in
  cooldown until that moment (whatever ``RATE_LIMIT_COOLDOWN_*`` say: the upstream named
  the time), does not retry it on the same node, and switches to another.
* an adapter's ``async usage(call: ModelsCall) -> dict``: the account's limits as the
  upstream reports them, in the shape of a usage-cache instance's ``usage`` (aiclient-formats
  §6.3: ``{"summary": {"usedPercent", "status", "resetAt", "plan", "unit", …}, "user",
  "items", "raw"}``); raises :class:`UpstreamUnavailable` when it cannot say, and its
  subclass :class:`CredentialRejected` when the upstream refused the credential (HTTP 401):
  the gateway then refreshes the credential once (forced) and asks again. The gateway
  calls it for the usage cache (:mod:`cfgstore_gateway.usage_quotas`: the admin usage
  routes and the scheduled refresh), with the credential a request would get.

Adapters reading when a spent quota comes back from an error answer (``Retry-After``,
``retryDelay``, ``quotaResetDelay``, ``resets_at``…) may use
:func:`cfgstore_gateway.adapters.quota_reset.quota_reset_ms`.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import aiohttp
import attrs

from cfgstore.adapters.facades import Pools
from cfgstore.model.config import MainConfig
from cfgstore.model.credentials import Credential
from cfgstore.model.pools import ProviderNode

log = logging.getLogger("cfgstore_gateway.adapters")


class UpstreamUnavailable(Exception):
    """No HTTP answer from the upstream (refused, reset, timed out, bad base URL). The
    message names the cause, never a credential."""


class CredentialRejected(UpstreamUnavailable):
    """The upstream refused the call's credential (HTTP 401): raised by an adapter's
    optional ``usage`` so that the gateway refreshes the credential and asks once more."""


class NotServed(UpstreamUnavailable):
    """This gateway has no way to call the node at all: no adapter speaks its type's own
    protocol, and the pass-through that could stand in has no upstream configured (raised
    by :meth:`Adapter.check_node`). The node is not at fault: the gateway records nothing
    against it (no failure, no health check, no refresh, no pick) and the console shows
    its type as "no adapter installed" (:mod:`cfgstore_gateway.serviceability`)."""


@attrs.frozen
class UpstreamCall:
    """One call to an upstream on behalf of a client request.

    ``body`` is the client's request object with ``model`` already resolved (a
    ``type:model`` prefix removed); ``raw_body`` the bytes to send as they are when the
    adapter needs no change (``None`` when the body was rewritten). ``credential`` is the
    node's OAuth credential (``None`` for API-key types). ``node`` and ``config`` are live,
    shared objects: read them, never mutate them.
    """

    provider_type: str
    node: ProviderNode
    config: MainConfig
    credential: Credential | None
    body: Mapping[str, Any]
    raw_body: bytes | None
    stream: bool
    session: aiohttp.ClientSession
    request_id: str
    model: str = ""
    """The model asked for (also in ``body`` for protocols that carry it there; Gemini's
    carries it in the URL)."""
    path: str = "/v1/chat/completions"
    """The client's path after any ``/{provider}`` prefix (``/v1/messages``, …): where an
    adapter of :data:`SAME_AS_CLIENT` sends the body."""
    pools: Pools | None = None
    """The store's pools, for an adapter that keeps what it learns of an account on its
    node (Code Assist's discovered ``PROJECT_ID``); ``None`` outside a gateway."""


@attrs.frozen
class ModelsCall:
    """A model listing on behalf of ``GET /v1/models`` (same fields as :class:`UpstreamCall`
    minus the request body)."""

    provider_type: str
    node: ProviderNode
    config: MainConfig
    credential: Credential | None
    session: aiohttp.ClientSession
    request_id: str
    pools: Pools | None = None
    """As :attr:`UpstreamCall.pools`."""


class UpstreamReply(Protocol):
    """An upstream's HTTP answer (see the module docstring for the reading contract)."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    async def read(self) -> bytes: ...

    def chunks(self) -> AsyncIterator[bytes]: ...

    def close(self) -> None: ...


@runtime_checkable
class Adapter(Protocol):
    """An upstream protocol, for the provider types it serves."""

    @property
    def name(self) -> str: ...

    def serves(self, provider_type: str) -> bool:
        """Whether this adapter speaks the upstream protocol of ``provider_type``."""
        ...

    def needs_credential(self, provider_type: str) -> bool:
        """Whether calls of this type carry an OAuth credential (the gateway then gets one
        from the refresher and handles a 401 by a forced refresh)."""
        ...

    def check_node(self, provider_type: str, node: ProviderNode, config: MainConfig) -> None:
        """Raise :class:`UpstreamUnavailable` when ``node`` cannot be called as configured
        (e.g. no upstream URL), :class:`NotServed` when the gateway cannot serve it at all
        (a pass-through type with no upstream). Checked before any credential work, so an
        unusable node never refreshes a token. Cheap and free of I/O: it runs per pick."""
        ...

    def static_models(self, provider_type: str) -> Sequence[str]:
        """Models the type is known to serve without asking the upstream (may be empty:
        then ``list_models`` asks)."""
        ...

    async def chat_completions(self, call: UpstreamCall) -> UpstreamReply:
        """Send a chat completion; raise :class:`UpstreamUnavailable` when no answer."""
        ...

    async def list_models(self, call: ModelsCall) -> list[str]:
        """Model ids the upstream offers; raise :class:`UpstreamUnavailable` (or return
        ``[]``) when it cannot say."""
        ...


class AdapterRegistry:
    """Adapters by provider type. Register at start-up; look up per request (cached).

    Precedence, for a type: a dedicated adapter (not ``generic``) that serves the type or
    one of its bases wins over every generic one; among the same kind, the one serving the
    type itself wins over one serving a shorter base, and among those the one registered
    last."""

    def __init__(self) -> None:
        self._adapters: list[Adapter] = []
        self._by_type: dict[str, Adapter | None] = {}

    def register(self, adapter: Adapter) -> None:
        """Add an adapter; it wins over earlier ones of its kind (generic or dedicated)
        for the types it serves."""
        missing = missing_members(adapter)
        if missing:
            kind = type(adapter)
            name = getattr(adapter, "name", None)
            called = f"adapter {name!r} " if isinstance(name, str) else "adapter "
            raise TypeError(
                f"{called}({kind.__module__}.{kind.__qualname__}) does not implement the "
                f"gateway Adapter protocol: missing {', '.join(missing)}"
            )
        for other in self._adapters:
            if other.name == adapter.name:
                log.warning("adapter %s registered twice; the later one wins", adapter.name)
        self._adapters.append(adapter)
        self._by_type.clear()

    @property
    def adapters(self) -> tuple[Adapter, ...]:
        return tuple(self._adapters)

    def declared_types(self) -> list[str]:
        """The provider types the adapters list (:func:`declared_types`), each once, in
        registration order."""
        return list(dict.fromkeys(t for a in self._adapters for t in declared_types(a)))

    def for_type(self, provider_type: str) -> Adapter | None:
        """The adapter serving ``provider_type``: the last registered one that serves the
        type itself, else (for ``<base>-<suffix>`` types) the one serving the longest base,
        generic adapters only when no dedicated one serves it at all; ``None`` when no
        adapter speaks its protocol."""
        try:
            return self._by_type[provider_type]
        except KeyError:
            pass
        found = self._resolve(provider_type)
        self._by_type[provider_type] = found
        return found

    def _resolve(self, provider_type: str) -> Adapter | None:
        dedicated = [a for a in self._adapters if not is_generic(a)]
        generic = [a for a in self._adapters if is_generic(a)]
        found = self._walk(provider_type, dedicated)
        return found if found is not None else self._walk(provider_type, generic)

    @staticmethod
    def _walk(provider_type: str, adapters: Sequence[Adapter]) -> Adapter | None:
        if not adapters:
            return None
        candidate = provider_type
        while True:
            serving = [a for a in adapters if a.serves(candidate)]
            if serving:
                if len(serving) > 1:
                    log.warning(
                        "provider type %s is served by adapters %s; using %s",
                        provider_type,
                        ", ".join(a.name for a in serving),
                        serving[-1].name,
                    )
                return serving[-1]
            if "-" not in candidate:
                return None
            candidate = candidate.rsplit("-", 1)[0]


ADAPTER_MEMBERS: tuple[str, ...] = tuple(name for name in vars(Adapter) if not name.startswith("_"))
"""What the :class:`Adapter` protocol requires, by name."""


def missing_members(adapter: object) -> list[str]:
    """The members of :class:`Adapter` that ``adapter`` lacks (a member that is not
    callable where the protocol has a method counts as missing)."""
    missing: list[str] = []
    for name in ADAPTER_MEMBERS:
        member = getattr(adapter, name, None)
        wanted = inspect.getattr_static(Adapter, name)
        if member is None or (inspect.isfunction(wanted) and not callable(member)):
            missing.append(name)
    return missing


def declared_types(adapter: Adapter) -> tuple[str, ...]:
    """The provider types ``adapter`` lists in its optional ``provider_types`` (empty when
    it lists none, or lists something other than strings)."""
    listed = getattr(adapter, "provider_types", ())
    if isinstance(listed, str) or not isinstance(listed, Collection):
        return ()
    return tuple(t for t in listed if isinstance(t, str) and t)


SAME_AS_CLIENT = "*"
"""The ``protocol`` of an adapter that forwards whatever the client speaks, unchanged, to
the client's own path (``forward-api``)."""


def upstream_protocol(adapter: Adapter) -> str:
    """The protocol ``adapter``'s bodies are in (its optional ``protocol``; ``openai``;
    :data:`SAME_AS_CLIENT` for a forwarder)."""
    protocol = getattr(adapter, "protocol", None)
    return protocol if isinstance(protocol, str) and protocol else "openai"


def quota_reset_of(reply: UpstreamReply) -> int | None:
    """The epoch ms until which ``reply`` says the account's quota is spent (its optional
    ``quota_reset_ms``), ``None`` when it says nothing of the kind."""
    reset = getattr(reply, "quota_reset_ms", None)
    return reset if isinstance(reset, int) and not isinstance(reset, bool) else None


def is_generic(adapter: Adapter) -> bool:
    """Whether ``adapter`` declares itself a generic fallback (see :class:`AdapterRegistry`)."""
    return getattr(adapter, "generic", False) is True
