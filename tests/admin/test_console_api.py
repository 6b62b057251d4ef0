"""``/api/cfgstore/pools…``: the console's server-side search, health filter, sort and
paging, the summary with its last-hour figures, ``ETag``/``304`` polls, gzip, and one
instance id in ``/health`` and the storage status (issue 15 point 6, issue 16)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from cfgstore.adapters import Store
from cfgstore.model.records import Success
from cfgstore.model.timefmt import now_ms
from tests.admin.conftest import PASSWORD, Admin, admin_gateway
from tests.gateway.conftest import TYPE, api_node, make_deployment
from tests.gateway.redis_instances import Namespace, delete_namespace, seeded_namespace
from tests.support.waiting import until

OTHER = "claude-custom"
SIZE = 130
SECRET = "sk-console-secret-0123456789abcdef"
UNHEALTHY = {f"n{i:03d}" for i in range(0, SIZE, 10)}  # 13 nodes
DISABLED = {f"n{i:03d}" for i in range(5, SIZE, 20)}  # 7 nodes, all healthy


def usage_of(index: int) -> int:
    """The requests each node served (none for the unhealthy: a success heals a node)."""
    return 0 if f"n{index:03d}" in UNHEALTHY else (index * 7) % 50


def pool_nodes() -> list[dict[str, Any]]:
    nodes = []
    for i in range(SIZE):
        uuid = f"n{i:03d}"
        fields: dict[str, Any] = {}
        if i % 4:  # every fourth node has no name
            fields["customName"] = f"Account {i:03d}" + (" Needle" if i == 77 else "")
        if uuid in UNHEALTHY:
            fields["isHealthy"] = False
            fields["lastErrorMessage"] = f"upstream said 429 for {uuid}"
        if uuid in DISABLED:
            fields["isDisabled"] = True
        nodes.append(api_node(uuid, "http://127.0.0.1:9", SECRET, **fields))
    return nodes


@pytest_asyncio.fixture
async def console(tmp_path: Path) -> AsyncIterator[Admin]:
    pools = {TYPE: pool_nodes(), OTHER: [api_node("c1", "http://127.0.0.1:9", SECRET)]}
    async with admin_gateway(make_deployment(tmp_path, pools)) as anonymous:
        # Counters start at zero on load (the Node service's cold start): serve requests.
        served = [
            Success(TYPE, f"n{i:03d}", now_ms()) for i in range(SIZE) for _ in range(usage_of(i))
        ]
        await anonymous.store.pools.apply_records(served)
        yield await anonymous.login()


async def page(admin: Admin, query: str = "", type_: str = TYPE) -> dict[str, Any]:
    status, body = await admin.call("GET", f"/api/cfgstore/pools/{type_}?{query}")
    assert status == 200, body
    assert isinstance(body, dict)
    return body


async def test_the_summary_counts_every_type_and_the_totals(console: Admin) -> None:
    status, body = await console.call("GET", "/api/cfgstore/pools/summary")
    assert status == 200
    by_type = {t["type"]: t for t in body["types"]}
    assert [t["type"] for t in body["types"]] == [TYPE, OTHER]  # pool order
    mine = by_type[TYPE]
    unhealthy_enabled = len(UNHEALTHY - DISABLED)
    assert mine["nodes"] == SIZE
    assert mine["disabled"] == len(DISABLED)
    assert mine["unhealthy"] == unhealthy_enabled
    assert mine["healthy"] == SIZE - len(DISABLED) - unhealthy_enabled
    assert body["totals"]["nodes"] == SIZE + 1
    assert body["totals"]["healthy"] == mine["healthy"] + 1
    assert body["lastHour"]["source"] == "traffic"  # the store's per-minute counts
    assert body["lastHour"]["complete"] is True


async def test_the_last_hour_counts_requests_and_errors_since_the_first_poll(
    console: Admin,
) -> None:
    """From the traffic the store keeps (every instance's requests, as the gateway records
    them); the counter estimate without it is tested in test_last_hour.py."""
    status, before = await console.call("GET", "/api/cfgstore/pools/summary")
    assert status == 200 and before["totals"]["requestsLastHour"] == 0
    traffic = console.store.traffic
    for ok in (True, True, False):
        traffic.record(TYPE, ok=ok, latency_ms=12.0)
    traffic.record(OTHER, ok=True, latency_ms=5.0)
    await traffic.flush()
    _, after = await console.call("GET", "/api/cfgstore/pools/summary")
    by_type = {t["type"]: t for t in after["types"]}
    assert by_type[TYPE]["requestsLastHour"] == 3
    assert by_type[TYPE]["errorsLastHour"] == 1  # the failed one counts as a request too
    assert by_type[OTHER]["requestsLastHour"] == 1
    assert after["totals"]["requestsLastHour"] == 4
    assert after["totals"]["errorsLastHour"] == 1


async def test_search_finds_by_name_uuid_and_error_case_insensitively(console: Admin) -> None:
    body = await page(console, "q=needle")
    assert [n["uuid"] for n in body["nodes"]] == ["n077"]
    assert (body["matched"], body["total"], body["pages"]) == (1, SIZE, 1)
    assert [n["uuid"] for n in (await page(console, "q=N12"))["nodes"]] == [
        f"n12{i}" for i in range(10)
    ]
    errors = await page(console, "q=said%20429&per_page=100")
    assert {n["uuid"] for n in errors["nodes"]} == UNHEALTHY
    assert (await page(console, "q=nothing-like-this"))["nodes"] == []


async def test_the_health_filter_and_the_counts(console: Admin) -> None:
    disabled = await page(console, "health=disabled&per_page=500")
    assert {n["uuid"] for n in disabled["nodes"]} == DISABLED
    assert all(n["isDisabled"] is True for n in disabled["nodes"])
    unhealthy = await page(console, "health=unhealthy&per_page=500")
    assert {n["uuid"] for n in unhealthy["nodes"]} == UNHEALTHY - DISABLED
    healthy = await page(console, "health=healthy&per_page=500")
    assert healthy["matched"] == SIZE - len(DISABLED) - len(UNHEALTHY - DISABLED)
    assert healthy["counts"] == {
        "healthy": healthy["matched"],
        "unhealthy": len(UNHEALTHY - DISABLED),
        "disabled": len(DISABLED),
    }
    both = await page(console, "health=unhealthy&q=n01")
    assert [n["uuid"] for n in both["nodes"]] == ["n010"]


async def test_sort_by_a_column_either_way_ties_in_pool_order(console: Admin) -> None:
    usage = [(usage_of(i), f"n{i:03d}") for i in range(SIZE)]
    body = await page(console, "sort=usageCount&order=desc&per_page=500")
    got = [(n.get("usageCount", 0), n["uuid"]) for n in body["nodes"]]
    assert got == sorted(usage, key=lambda u: -u[0])  # stable: ties keep pool order
    names = await page(console, "sort=name&per_page=500")
    named = [n.get("customName") for n in names["nodes"]]
    assert named[: SIZE // 4 + 1] == [None] * (SIZE // 4 + 1)  # no name first ascending
    assert named[SIZE // 4 + 1 :] == sorted(named[SIZE // 4 + 1 :])
    descending = await page(console, "sort=uuid&order=desc&per_page=3")
    assert [n["uuid"] for n in descending["nodes"]] == ["n129", "n128", "n127"]
    reverse = await page(console, "order=desc&per_page=2")
    assert [n["uuid"] for n in reverse["nodes"]] == ["n129", "n128"]


async def test_paging_and_a_page_past_the_end(console: Admin) -> None:
    second = await page(console, "page=2&per_page=50")
    assert [n["uuid"] for n in second["nodes"]] == [f"n{i:03d}" for i in range(50, 100)]
    assert (second["page"], second["perPage"], second["pages"]) == (2, 50, 3)
    past = await page(console, "page=99&per_page=50")
    assert (past["page"], len(past["nodes"])) == (3, SIZE - 100)
    empty = await page(console, "", "no-such-type")
    assert (empty["nodes"], empty["total"], empty["pages"], empty["page"]) == ([], 0, 1, 1)
    default = await page(console)
    assert len(default["nodes"]) == 50 and default["query"] == {
        "q": "",
        "health": "all",
        "sort": "",
        "order": "asc",
    }


async def test_secrets_are_masked_in_a_page(console: Admin) -> None:
    body = await page(console, "per_page=500")
    text = json.dumps(body)
    assert SECRET not in text
    assert body["nodes"][0]["OPENAI_API_KEY"] == SECRET[:4] + "****" + SECRET[-4:]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("health=sick", "health"),
        ("sort=password", "sort"),
        ("order=up", "order"),
        ("page=0", "page"),
        ("page=-1", "page"),
        ("page=two", "page"),
        ("per_page=501", "per_page"),
        ("per_page=0", "per_page"),
        ("q=" + "x" * 201, "q"),
    ],
)
async def test_a_bad_query_is_a_400_naming_the_parameter(
    console: Admin, query: str, field: str
) -> None:
    status, body = await console.call("GET", f"/api/cfgstore/pools/{TYPE}?{query}")
    assert status == 400
    assert body["error"]["code"] == "invalid" and field in body["error"]["fields"]


async def test_a_bad_type_name_is_a_404_and_a_session_is_required(console: Admin) -> None:
    status, body = await console.call("GET", "/api/cfgstore/pools/..bad")
    assert status == 404 and body["error"]["code"] == "not_found"
    anonymous = Admin(console.client, console.store)
    for path in ("/api/cfgstore/pools/summary", f"/api/cfgstore/pools/{TYPE}"):
        status, _ = await anonymous.call("GET", path)
        assert status == 401


async def conditional_get(admin: Admin, path: str, etag: str | None) -> tuple[int, str, bytes]:
    headers = admin.headers({"If-None-Match": etag} if etag else {})
    async with admin.client.get(path, headers=headers) as response:
        return response.status, response.headers.get("ETag", ""), await response.read()


@pytest.mark.parametrize("path", ["/api/cfgstore/pools/summary", f"/api/cfgstore/pools/{TYPE}"])
async def test_an_unchanged_poll_is_a_304_without_a_body(console: Admin, path: str) -> None:
    status, etag, body = await conditional_get(console, path, None)
    assert status == 200 and etag.startswith('W/"') and body
    await console.call("GET", "/api/cfgstore/pools/summary")  # a minute-sample is taken once
    status, again, body = await conditional_get(console, path, etag)
    assert (status, again, body) == (304, etag, b"")
    status, _, _ = await conditional_get(console, path, f'"other", {etag}')
    assert status == 304  # a list naming it
    await console.store.pools.record_success(TYPE, "n000")  # on page 1 and in the summary
    status, changed, body = await conditional_get(console, path, etag)
    assert status == 200 and changed != etag and body


async def test_a_change_outside_the_page_keeps_the_page_unchanged(console: Admin) -> None:
    path = f"/api/cfgstore/pools/{TYPE}?per_page=10"
    _, etag, _ = await conditional_get(console, path, None)
    await console.store.pools.record_success(TYPE, "n121")  # on page 13, healthy already
    status, _, _ = await conditional_get(console, path, etag)
    assert status == 304


async def test_large_answers_go_gzip_encoded_when_accepted(console: Admin) -> None:
    path = f"/api/cfgstore/pools/{TYPE}?per_page=500"
    raw: dict[str, tuple[int, str | None]] = {}
    for encoding in ("gzip", "identity"):
        async with console.client.get(
            path, headers=console.headers({"Accept-Encoding": encoding}), auto_decompress=False
        ) as response:
            assert response.status == 200
            assert "Accept-Encoding" in response.headers.get("Vary", "")
            raw[encoding] = (len(await response.read()), response.headers.get("Content-Encoding"))
    assert raw["gzip"][1] == "gzip" and raw["identity"][1] is None
    assert raw["gzip"][0] * 4 < raw["identity"][0], raw
    async with console.client.get(
        path, headers=console.headers({"Accept-Encoding": "gzip"})
    ) as response:  # decoded by the client: the same JSON
        assert len((await response.json())["nodes"]) == SIZE
    # A small answer (a 304, an error) is not compressed.
    async with console.client.get(
        f"{path}&health=sick", headers=console.headers({"Accept-Encoding": "gzip"})
    ) as response:
        assert response.status == 400 and "Content-Encoding" not in response.headers


@pytest_asyncio.fixture
async def namespace(redis_url: str, tmp_path: Path) -> AsyncIterator[Namespace]:
    namespace = await seeded_namespace(redis_url, tmp_path, "con-")
    try:
        yield namespace
    finally:
        await asyncio.to_thread(delete_namespace, redis_url, namespace.prefix)


async def test_health_and_the_console_name_one_instance(namespace: Namespace) -> None:
    async with admin_gateway(namespace.instance_settings("one")) as anonymous:
        admin = await anonymous.login(PASSWORD)
        status, health = await admin.call("GET", "/health")
        assert status == 200
        status, storage = await admin.call("GET", "/api/storage/status")
        assert status == 200
        assert health["instance"] == storage["instance"] == admin.store.instance_id

        async def listed() -> bool:
            _, body = await admin.call("GET", "/api/storage/status")
            return health["instance"] in {i["instance_id"] for i in body["instances"]}

        await until(listed, "this instance's heartbeat in the instances list")
    # The id is the persistent one: a restart over the same state directory keeps it.
    async with Store.open(namespace.instance_settings("one")) as store:
        assert store.instance_id == health["instance"]


async def poll(admin: Admin, body: dict[str, Any]) -> tuple[int, Any]:
    return await admin.call("POST", "/api/cfgstore/pools/poll", json=body)


async def test_one_poll_answers_only_what_changed(console: Admin) -> None:
    shown = {"type": TYPE, "q": "", "health": "unhealthy", "per_page": 5, "page": 1}
    other = {"type": OTHER}
    status, first = await poll(console, {"summary": None, "pages": [shown, other]})
    assert status == 200
    summary_tag = first["summary"]["etag"]
    assert first["summary"]["totals"]["nodes"] == SIZE + 1
    tags = {p["type"]: p["etag"] for p in first["pages"]}
    mine = next(p for p in first["pages"] if p["type"] == TYPE)
    assert [n["uuid"] for n in mine["nodes"]] == ["n000", "n010", "n020", "n030", "n040"]
    # The tags are the GET answers' tags: a console may mix both.
    _, get_tag, _ = await conditional_get(
        console, f"/api/cfgstore/pools/{TYPE}?health=unhealthy&per_page=5", None
    )
    assert get_tag == tags[TYPE]

    watched = {
        "summary": summary_tag,
        "pages": [{**shown, "etag": tags[TYPE]}, {**other, "etag": tags[OTHER]}],
    }
    async with console.client.post(
        "/api/cfgstore/pools/poll", json=watched, headers=console.headers()
    ) as response:
        assert response.status == 204 and await response.read() == b""

    # A node of the other type serves a request: its page and the summary come, not mine.
    await console.store.pools.record_success(OTHER, "c1")
    console.store.traffic.record(OTHER, ok=True, latency_ms=3.0)  # as the gateway books it
    await console.store.traffic.flush()
    status, changed = await poll(console, watched)
    assert status == 200
    assert changed["summary"]["etag"] != summary_tag
    assert [p["type"] for p in changed["pages"]] == [OTHER]
    assert changed["pages"][0]["nodes"][0]["usageCount"] == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"summary": 3}, "summary"),
        ({"pages": {}}, "pages"),
        ({"pages": [{"type": TYPE}] * 101}, "pages"),
        ({"pages": ["x"]}, "pages[0]"),
        ({"pages": [{"type": "../x"}]}, "pages[0].type"),
        ({"pages": [{"type": TYPE, "etag": 1}]}, "pages[0].etag"),
        ({"pages": [{"type": TYPE, "health": "sick"}]}, "pages[0].health"),
        ({"pages": [{"type": TYPE, "per_page": 0}]}, "pages[0].per_page"),
    ],
)
async def test_a_bad_poll_is_a_400_naming_the_field(
    console: Admin, body: dict[str, Any], field: str
) -> None:
    status, answer = await poll(console, body)
    assert status == 400 and field in answer["error"]["fields"], answer


async def test_the_storage_mode_is_cheap_and_conditional(console: Admin) -> None:
    status, tag, body = await conditional_get(console, "/api/cfgstore/storage/mode", None)
    assert status == 200 and json.loads(body) == {
        "mode": "file",
        "degraded": False,
        "degradedSince": None,
        "journalDepth": 0,
    }
    status, _, body = await conditional_get(console, "/api/cfgstore/storage/mode", tag)
    assert (status, body) == (304, b"")


async def test_the_storage_status_is_conditional_too(console: Admin) -> None:
    status, tag, body = await conditional_get(console, "/api/storage/status", None)
    assert status == 200 and json.loads(body)["mode"] == "file"
    status, _, body = await conditional_get(console, "/api/storage/status", tag)
    assert (status, body) == (304, b"")
