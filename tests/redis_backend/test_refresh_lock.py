"""SC-004, US2-1/2/3: one token refresh per account, across processes, on the real Redis.

The test code plays the gateway's refresher (:func:`refresh_if_needed`); the store only gives
the primitives: compare-and-set credential writes and the shared refresh lock (taken with a
TTL, released by compare-and-delete). The one stand-in is the upstream OAuth token endpoint,
a local HTTP server (:mod:`tests.support.token_endpoint`).

Worker processes run this module: ``python -m tests.redis_backend.test_refresh_lock MODE SPEC``
(see :func:`_worker_main`); each opens its own Store on the test's Redis namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from cfgstore import hookimpl
from cfgstore.adapters import Store
from cfgstore.errors import VersionConflict
from cfgstore.model.credentials import Credential, TokenFormat, apply_refresh
from cfgstore.model.events import ChangeEvent
from cfgstore.model.jsjson import JSONValue
from cfgstore.model.pools import node_from_json
from cfgstore.model.timefmt import iso_ms, now_ms, parse_time_ms
from tests.redis_backend.namespaces import Spec, settings_of
from tests.support.token_endpoint import TokenEndpoint, post_refresh

SCALE = float(os.environ.get("CFGSTORE_TEST_SCALE", "1"))
REFRESHERS_PER_PROCESS = max(1, int(3 * SCALE))
"""Concurrent refreshers inside each worker process (all on the same account)."""

KIRO = "claude-kiro-oauth"
GEMINI = "gemini-cli-oauth"
LOCK_TTL_MS = 15_000
"""Far longer than any refresh here: only a dead (or deliberately slow) holder lets it lapse."""
REFRESH_MARGIN_MS = 5 * 60_000
"""A token expiring within this margin needs a refresh."""
WAIT_FOR_HOLDER_S = 30.0
LOCK_POLL_S = 0.05
STEP_TIMEOUT_S = 60.0
REPO_ROOT = Path(__file__).resolve().parents[2]


# -- the refresher (what the gateway will do) -------------------------------------------


def needs_refresh(credential: Credential) -> bool:
    expiry = credential.expiry_ms()
    return expiry is None or expiry - now_ms() < REFRESH_MARGIN_MS


class _CredentialWatch:
    """Sets ``changed`` when the credential changes: this process's writes directly, other
    processes' through the Redis change feed."""

    def __init__(self, provider_type: str, uuid: str) -> None:
        self.ident = f"{provider_type}/{uuid}"
        self.changed = asyncio.Event()

    @hookimpl
    def cfgstore_changed(self, event: ChangeEvent) -> None:
        if event.entity == "credentials" and (not event.ids or self.ident in event.ids):
            self.changed.set()


@contextlib.contextmanager
def _watching(store: Store, provider_type: str, uuid: str) -> Iterator[asyncio.Event]:
    watch = _CredentialWatch(provider_type, uuid)
    store.plugins.manager.register(watch)
    try:
        yield watch.changed
    finally:
        store.plugins.manager.unregister(watch)


async def call_token_endpoint(endpoint_url: str, current: Credential) -> dict[str, JSONValue]:
    """The upstream refresh call; returns the fields to write, in the credential's shape
    (aiclient-formats §4.1: Kiro writes accessToken/refreshToken/expiresAt; §4.2: Google
    writes the library's whole credential object, the old refresh_token carried over)."""
    doc = current.document
    if current.token_format is TokenFormat.KIRO:
        answer = await asyncio.to_thread(
            post_refresh, endpoint_url, {"refreshToken": str(doc["refreshToken"])}
        )
        fresh: dict[str, JSONValue] = {
            "accessToken": answer["accessToken"],
            "refreshToken": answer.get("refreshToken", doc["refreshToken"]),
            "expiresAt": iso_ms(now_ms() + int(answer.get("expiresIn", 3600)) * 1000),
        }
        if "profileArn" in answer:
            fresh["profileArn"] = answer["profileArn"]
        return fresh
    if current.token_format is TokenFormat.GOOGLE:
        form = {
            "grant_type": "refresh_token",
            "refresh_token": str(doc["refresh_token"]),
            "client_id": "FAKE-client-id.apps.googleusercontent.com",
        }
        answer = await asyncio.to_thread(post_refresh, endpoint_url, form, form=True)
        library_object: dict[str, JSONValue] = {
            "access_token": answer["access_token"],
            "refresh_token": answer.get("refresh_token", doc["refresh_token"]),
            "scope": answer.get("scope"),
            "token_type": answer.get("token_type"),
            "id_token": answer.get("id_token"),
            "expiry_date": now_ms() + int(answer.get("expires_in", 3600)) * 1000,
        }
        return {k: v for k, v in library_object.items() if v is not None}
    raise NotImplementedError(f"no refresh call for {current.token_format}")


async def refresh_if_needed(
    store: Store,
    provider_type: str,
    uuid: str,
    endpoint_url: str,
    *,
    on_wait: Callable[[], None] | None = None,
    lock_ttl_ms: int = LOCK_TTL_MS,
    wait_s: float = WAIT_FOR_HOLDER_S,
) -> str:
    """Refresh the credential unless it is fresh or someone else refreshes it.

    Returns ``"fresh"`` (nothing to do), ``"refreshed"`` (this call asked the endpoint and
    wrote the result), ``"rechecked"`` (this call got the lock but the double-check found
    it already refreshed) or ``"waited"`` (another refresher held the lock; this call
    waited for its result). Raises ``TimeoutError`` after ``wait_s`` of waiting, and
    :class:`VersionConflict` when its write lost (possible only once its lock lapsed).
    """
    credential = await store.credentials.get(provider_type, uuid)
    if credential is None:
        raise LookupError(f"no credential {provider_type}/{uuid}")
    if not needs_refresh(credential):
        return "fresh"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    waited = False
    with _watching(store, provider_type, uuid) as changed:
        while True:
            token = await store.credentials.lock(provider_type, uuid, lock_ttl_ms)
            if token is not None:
                try:
                    current = await store.credentials.get(provider_type, uuid)  # double-check
                    if current is None:
                        raise LookupError(f"credential {provider_type}/{uuid} vanished")
                    if not needs_refresh(current):
                        return "waited" if waited else "rechecked"
                    fresh = await call_token_endpoint(endpoint_url, current)
                    document = apply_refresh(current.document, fresh, current.token_format)
                    await store.credentials.put(
                        attrs.evolve(current, document=document), expected_version=current.version
                    )
                    return "refreshed"
                finally:
                    await store.credentials.unlock(provider_type, uuid, token)
            if not waited:
                waited = True
                if on_wait is not None:
                    on_wait()
            changed.clear()  # before the read: a write after it still wakes us
            current = await store.credentials.get(provider_type, uuid)
            if current is not None and not needs_refresh(current):
                return "waited"
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"refresh lock of {provider_type}/{uuid} never came free")
            # The holder's write wakes us through the change feed. A holder that died
            # leaves no event (a lock lapsing by its TTL is silent: no keyspace
            # notifications), so the lock is also retried on a short bounded poll.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(LOCK_POLL_S, remaining))


# -- data --------------------------------------------------------------------------------


def kiro_doc(name: str) -> dict[str, JSONValue]:
    """An expired Kiro token with every informational field upstream may carry."""
    return {
        "accessToken": f"old-access-{name}",
        "refreshToken": f"old-refresh-{name}",
        "profileArn": "arn:aws:codewhisperer:us-east-1:000000000000:profile/FAKE",
        "expiresAt": iso_ms(now_ms() - 60_000),
        "authMethod": "IdC",
        "provider": "BuilderId",
        "region": "us-east-1",
        "idcRegion": "eu-west-1",
        "clientId": f"FAKE-client-{name}",
        "clientSecret": "FAKE-secret",
        "startUrl": "https://d-0000000000.awsapps.com/start",
        "clientIdHash": "0123456789abcdef",
    }


def gemini_doc(name: str) -> dict[str, JSONValue]:
    """An expired google-auth-library credential plus a field the refresh drops upstream."""
    return {
        "access_token": f"ya29.old-access-{name}",
        "refresh_token": f"1//old-refresh-{name}",
        "scope": "https://www.googleapis.com/auth/cloud-platform",
        "token_type": "Bearer",
        "id_token": "FAKE.old.id-token",
        "expiry_date": now_ms() - 60_000,
        "x_note": "unknown fields do not survive a Google refresh",
    }


PATH_KEYS = {KIRO: "KIRO_OAUTH_CREDS_FILE_PATH", GEMINI: "GEMINI_OAUTH_CREDS_FILE_PATH"}


async def seed(store: Store, provider_type: str, uuid: str, document: dict[str, JSONValue]) -> str:
    path = f"./configs/{provider_type}/{uuid}/token.json"
    node = node_from_json({"customName": None, "uuid": uuid, PATH_KEYS[provider_type]: path}, "t")
    await store.pools.add_node(provider_type, node)
    return await store.credentials.put(Credential(provider_type, uuid, document, path), None)


# -- worker processes ----------------------------------------------------------------------


async def _refresh_worker(spec: Spec) -> None:
    async with Store.open(settings_of(spec)) as store:
        print("ready", flush=True)
        await asyncio.wait_for(asyncio.to_thread(sys.stdin.readline), STEP_TIMEOUT_S)

        def on_wait() -> None:
            print("waiting", flush=True)

        outcomes = await asyncio.wait_for(
            asyncio.gather(
                *(
                    refresh_if_needed(
                        store, spec["type"], spec["uuid"], spec["endpoint"], on_wait=on_wait
                    )
                    for _ in range(spec["refreshers"])
                )
            ),
            STEP_TIMEOUT_S,
        )
        credential = await store.credentials.get(spec["type"], spec["uuid"])
        assert credential is not None
    result = {"outcomes": outcomes, "document": credential.document}
    print("result " + json.dumps(result), flush=True)


async def _lock_and_die_worker(spec: Spec) -> None:
    async with Store.open(settings_of(spec)) as store:
        token = await store.credentials.lock(spec["type"], spec["uuid"], spec["ttl_ms"])
        print(f"locked {token}", flush=True)
        # Hold it until killed (the test sends SIGKILL: no unlock, no clean close).
        await asyncio.wait_for(asyncio.to_thread(sys.stdin.readline), STEP_TIMEOUT_S)


def _worker_main(argv: list[str]) -> None:
    mode, spec = argv[0], json.loads(argv[1])
    worker = {"refresh": _refresh_worker, "lock-and-die": _lock_and_die_worker}[mode]
    asyncio.run(worker(spec))


class Workers:
    """Worker processes running this module; their stdout lines arrive in one queue."""

    def __init__(self) -> None:
        self.procs: list[asyncio.subprocess.Process] = []
        self.lines: asyncio.Queue[tuple[int, str | None]] = asyncio.Queue()
        self._readers: list[asyncio.Task[None]] = []

    async def start(self, mode: str, spec: Spec) -> int:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.redis_backend.test_refresh_lock",
            mode,
            json.dumps(spec),
            cwd=REPO_ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        index = len(self.procs)
        self.procs.append(proc)
        self._readers.append(asyncio.create_task(self._read(index, proc)))
        return index

    async def _read(self, index: int, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            await self.lines.put((index, line.decode().rstrip("\n")))
        await self.lines.put((index, None))  # end of output

    async def next_line(self, finished: Collection[int] = ()) -> tuple[int, str]:
        """The next line any worker printed. The end of a worker's output fails, unless the
        worker is one of ``finished`` (it said all it had to say: its end is expected, and
        may come before another worker's last line)."""
        while True:
            index, line = await asyncio.wait_for(self.lines.get(), STEP_TIMEOUT_S)
            if line is not None:
                return index, line
            if index not in finished:
                code = await asyncio.wait_for(self.procs[index].wait(), STEP_TIMEOUT_S)
                raise AssertionError(f"worker {index} ended early (exit code {code})")

    async def send_all(self, text: str) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(text.encode() + b"\n")
            await proc.stdin.drain()

    async def wait_all(self) -> None:
        for proc in self.procs:
            assert await asyncio.wait_for(proc.wait(), STEP_TIMEOUT_S) == 0

    async def close(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.kill()
            await asyncio.wait_for(proc.wait(), STEP_TIMEOUT_S)
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)


@contextlib.asynccontextmanager
async def workers() -> AsyncIterator[Workers]:
    running = Workers()
    try:
        yield running
    finally:
        await running.close()


async def contend(
    spec: Spec,
    endpoint: TokenEndpoint,
    targets: list[tuple[str, str]],
    *,
    refreshers: int,
    release_after_requests: int,
) -> tuple[list[dict[str, Any]], int]:
    """Run one refresh worker per target, started together (ready/go).

    The endpoint holds its answers until ``release_after_requests`` requests arrived and
    every other refresher reported that it waits for a lock holder: the holders are then
    provably in flight together with the waiters. Returns each worker's result and the
    number of refreshers that waited.
    """
    expected_waiting = len(targets) * refreshers - release_after_requests
    async with workers() as running:
        for provider_type, uuid in targets:
            await running.start(
                "refresh",
                {
                    **spec,
                    "type": provider_type,
                    "uuid": uuid,
                    "endpoint": endpoint.url,
                    "refreshers": refreshers,
                },
            )
        for _ in targets:
            assert (await running.next_line())[1] == "ready"
        endpoint.hold()
        await running.send_all("go")
        results: dict[int, dict[str, Any]] = {}
        waiting = 0

        def take(index: int, line: str) -> None:
            nonlocal waiting
            if line == "waiting":
                waiting += 1
            elif line.startswith("result "):
                results[index] = json.loads(line.removeprefix("result "))
            else:
                raise AssertionError(f"worker {index} said {line!r}")

        # While answers are held, one request too many means the lock let two holders in:
        # fail at once instead of waiting for the hold to time out.
        excess = asyncio.ensure_future(
            endpoint.wait_for_requests(release_after_requests + 1, STEP_TIMEOUT_S * 2)
        )
        try:
            while waiting < expected_waiting and len(results) < len(targets):
                reading = asyncio.ensure_future(running.next_line(finished=results.keys()))
                await asyncio.wait({reading, excess}, return_when=asyncio.FIRST_COMPLETED)
                if excess.done() and not excess.cancelled() and excess.exception() is None:
                    reading.cancel()
                    raise AssertionError(
                        f"{endpoint.total} refresh requests in flight at once "
                        f"(expected {release_after_requests}): {dict(endpoint.requests)}"
                    )
                take(*reading.result())
            await endpoint.wait_for_requests(release_after_requests, STEP_TIMEOUT_S)
            assert endpoint.total == release_after_requests, dict(endpoint.requests)
        finally:
            excess.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await excess
            endpoint.release()
        while len(results) < len(targets):
            take(*await running.next_line(finished=results.keys()))
        await running.wait_all()
    return [results[i] for i in range(len(targets))], waiting


# -- tests ---------------------------------------------------------------------------------


async def test_two_processes_refresh_one_kiro_account_once(spec: Spec) -> None:
    """US2-1/SC-004: concurrent refreshers in two processes → one upstream request; every
    refresher ends with the new token; the Kiro refresh merges (every other field kept)."""
    original = kiro_doc("k1")
    async with Store.open(settings_of(spec)) as store:
        await seed(store, KIRO, "k1", original)
    async with TokenEndpoint(delay_s=0.2) as endpoint:
        results, waiting = await asyncio.wait_for(
            contend(
                spec,
                endpoint,
                [(KIRO, "k1"), (KIRO, "k1")],
                refreshers=REFRESHERS_PER_PROCESS,
                release_after_requests=1,
            ),
            STEP_TIMEOUT_S * 2,
        )
    assert endpoint.requests == Counter({"old-refresh-k1": 1})
    total = 2 * REFRESHERS_PER_PROCESS
    assert waiting == total - 1
    outcomes = sorted(o for r in results for o in r["outcomes"])
    assert outcomes == ["refreshed"] + ["waited"] * (total - 1)

    async with Store.open(settings_of(spec)) as store:
        stored = await store.credentials.get(KIRO, "k1")
    assert stored is not None
    for result in results:  # both processes read the new token
        assert result["document"] == stored.document
    doc = stored.document
    assert doc["accessToken"] == "new-1"
    assert doc["refreshToken"] == "old-refresh-k1-rotated-1"
    expires = parse_time_ms(doc["expiresAt"])
    assert expires is not None and expires > now_ms() + 50 * 60_000
    assert list(doc) == list(original)  # merged in place: same keys, same order
    changed = {"accessToken", "refreshToken", "expiresAt"}
    assert {k: v for k, v in doc.items() if k not in changed} == {
        k: v for k, v in original.items() if k not in changed
    }


async def test_two_processes_refresh_one_gemini_account_once(spec: Spec) -> None:
    """US2-1 for a replacing format: one request; the document is the library's new
    credential object, refresh_token carried over, unknown fields gone (as upstream)."""
    original = gemini_doc("g1")
    async with Store.open(settings_of(spec)) as store:
        await seed(store, GEMINI, "g1", original)
    async with TokenEndpoint(delay_s=0.2) as endpoint:
        results, waiting = await asyncio.wait_for(
            contend(
                spec,
                endpoint,
                [(GEMINI, "g1"), (GEMINI, "g1")],
                refreshers=REFRESHERS_PER_PROCESS,
                release_after_requests=1,
            ),
            STEP_TIMEOUT_S * 2,
        )
    assert endpoint.requests == Counter({"1//old-refresh-g1": 1})
    total = 2 * REFRESHERS_PER_PROCESS
    assert waiting == total - 1
    outcomes = sorted(o for r in results for o in r["outcomes"])
    assert outcomes == ["refreshed"] + ["waited"] * (total - 1)

    async with Store.open(settings_of(spec)) as store:
        stored = await store.credentials.get(GEMINI, "g1")
    assert stored is not None and stored.token_format is TokenFormat.GOOGLE
    for result in results:
        assert result["document"] == stored.document
    doc = stored.document
    assert doc["access_token"] == "new-1"
    assert doc["refresh_token"] == original["refresh_token"]  # carried over
    assert doc["id_token"] == "FAKE.id-token.1"
    assert isinstance(doc["expiry_date"], int) and doc["expiry_date"] > now_ms() + 50 * 60_000
    assert set(doc) == {
        "access_token",
        "refresh_token",
        "scope",
        "token_type",
        "id_token",
        "expiry_date",
    }  # replaced: x_note is gone


async def test_different_accounts_refresh_concurrently_without_clobbering(spec: Spec) -> None:
    """US2-3: two accounts refreshed at once by two processes: two requests in flight
    together (neither lock blocks the other), each account gets its own token, and a third
    account nobody refreshed is untouched."""
    originals = {"k1": kiro_doc("k1"), "k2": kiro_doc("k2"), "k3": kiro_doc("k3")}
    async with Store.open(settings_of(spec)) as store:
        versions = {uuid: await seed(store, KIRO, uuid, doc) for uuid, doc in originals.items()}
    async with TokenEndpoint(delay_s=0.2) as endpoint:
        results, waiting = await asyncio.wait_for(
            contend(
                spec,
                endpoint,
                [(KIRO, "k1"), (KIRO, "k2")],
                refreshers=1,
                release_after_requests=2,  # both requests held at once: no lock in common
            ),
            STEP_TIMEOUT_S * 2,
        )
    assert waiting == 0
    assert endpoint.requests == Counter({"old-refresh-k1": 1, "old-refresh-k2": 1})
    assert [r["outcomes"] for r in results] == [["refreshed"], ["refreshed"]]

    async with Store.open(settings_of(spec)) as store:
        stored = {uuid: await store.credentials.get(KIRO, uuid) for uuid in originals}
    tokens = set()
    for uuid, result in zip(("k1", "k2"), results, strict=True):
        cred = stored[uuid]
        assert cred is not None and result["document"] == cred.document
        (issued,) = endpoint.issued[f"old-refresh-{uuid}"]
        assert cred.document["accessToken"] == issued
        tokens.add(issued)
        for key in ("profileArn", "clientId", "clientSecret", "region", "idcRegion"):
            assert cred.document[key] == originals[uuid][key]
    assert tokens == {"new-1", "new-2"}
    k3 = stored["k3"]
    assert k3 is not None and k3.document == originals["k3"] and k3.version == versions["k3"]


async def test_stale_writer_gets_a_conflict_and_changes_nothing(spec: Spec) -> None:
    """A writer that read before a refresh cannot overwrite the refreshed token."""
    async with TokenEndpoint() as endpoint, Store.open(settings_of(spec)) as store:
        await seed(store, KIRO, "k1", kiro_doc("k1"))
        stale = await store.credentials.get(KIRO, "k1")
        assert stale is not None
        outcome = await asyncio.wait_for(
            refresh_if_needed(store, KIRO, "k1", endpoint.url), STEP_TIMEOUT_S
        )
        assert outcome == "refreshed"
        after = await store.credentials.get(KIRO, "k1")
        assert after is not None and after.version != stale.version

        late = apply_refresh(stale.document, {"accessToken": "stale-writer"}, stale.token_format)
        with pytest.raises(VersionConflict) as info:
            await store.credentials.put(attrs.evolve(stale, document=late), stale.version)
        assert info.value.expected == stale.version
        assert info.value.actual == after.version

        again = await store.credentials.get(KIRO, "k1")
        assert again is not None
        assert again.document == after.document and again.version == after.version
        assert again.document["accessToken"] == "new-1"
        # A second refresher arriving now finds it fresh: still one request in all.
        assert await refresh_if_needed(store, KIRO, "k1", endpoint.url) == "fresh"
    assert endpoint.total == 1


async def test_dead_lock_holder_does_not_block_refreshes(spec: Spec) -> None:
    """A process that takes the lock and is killed (no unlock): once the TTL lapses the
    next refresher proceeds; the dead holder's token no longer releases anything."""
    ttl_ms = 1500
    async with Store.open(settings_of(spec)) as store:
        await seed(store, KIRO, "k1", kiro_doc("k1"))
        async with workers() as running:
            await running.start(
                "lock-and-die", {**spec, "type": KIRO, "uuid": "k1", "ttl_ms": ttl_ms}
            )
            _, line = await running.next_line()
            assert line.startswith("locked ") and line != "locked None"
            dead_token = line.removeprefix("locked ")
            running.procs[0].kill()  # SIGKILL: no unlock, no clean close
            assert await asyncio.wait_for(running.procs[0].wait(), STEP_TIMEOUT_S) != 0

        waits: list[float] = []
        started = time.monotonic()
        async with TokenEndpoint() as endpoint:
            outcome = await asyncio.wait_for(
                refresh_if_needed(
                    store, KIRO, "k1", endpoint.url, on_wait=lambda: waits.append(time.monotonic())
                ),
                ttl_ms / 1000 + 10,
            )
        elapsed = time.monotonic() - started
        assert outcome == "refreshed"
        assert waits, "the dead holder's lock had already lapsed: the test proved nothing"
        assert elapsed < ttl_ms / 1000 + 5
        assert endpoint.total == 1
        cred = await store.credentials.get(KIRO, "k1")
        assert cred is not None and cred.document["accessToken"] == "new-1"
        assert await store.credentials.unlock(KIRO, "k1", dead_token) is False
        free = await store.credentials.lock(KIRO, "k1", 1000)  # the refresher released it
        assert free is not None
        assert await store.credentials.unlock(KIRO, "k1", free) is True


async def test_slow_holder_whose_lock_lapsed_loses_at_compare_and_set(spec: Spec) -> None:
    """The lock is a TTL lease; compare-and-set is what keeps a slow holder from clobbering:
    a holder still waiting on the endpoint after its lease lapsed writes second and gets a
    VersionConflict, so exactly one refresh result is stored."""
    async with TokenEndpoint() as endpoint, Store.open(settings_of(spec)) as store:
        await seed(store, KIRO, "k1", kiro_doc("k1"))
        endpoint.hold()
        slow = asyncio.create_task(
            refresh_if_needed(store, KIRO, "k1", endpoint.url, lock_ttl_ms=300)
        )
        await endpoint.wait_for_requests(1, STEP_TIMEOUT_S)
        second = asyncio.create_task(refresh_if_needed(store, KIRO, "k1", endpoint.url))
        await endpoint.wait_for_requests(2, STEP_TIMEOUT_S)  # got the lapsed lock
        endpoint.release()
        outcomes = await asyncio.wait_for(
            asyncio.gather(slow, second, return_exceptions=True), STEP_TIMEOUT_S
        )
        kinds = sorted(o if isinstance(o, str) else type(o).__name__ for o in outcomes)
        assert kinds == ["VersionConflict", "refreshed"]
        cred = await store.credentials.get(KIRO, "k1")
        assert cred is not None
        winner = str(cred.document["accessToken"])
        assert winner in ("new-1", "new-2")
        number = winner.removeprefix("new-")
        assert cred.document["refreshToken"] == f"old-refresh-k1-rotated-{number}"
        # Both are done and the lease is free again (the slow holder's late unlock could
        # not release the second holder's lease: compare-and-delete).
        free = await store.credentials.lock(KIRO, "k1", 1000)
        assert free is not None
        assert await store.credentials.unlock(KIRO, "k1", free) is True
    assert endpoint.total == 2


if __name__ == "__main__":
    _worker_main(sys.argv[1:])
