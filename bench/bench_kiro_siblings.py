"""``cfgctl migrate`` of many Kiro tokens kept in one folder vs one folder per token.

The Node Kiro adapter merges every other ``*.json`` of a token's folder into it
(aiclient-formats §4.1), so every Kiro credential of a shared folder has all the others as
sibling files. cfgstore stores each sibling file once and lets the credentials reference
it (``redis-keys.md``, ``{p}:folder:<folder>``); before, every credential held a copy of each,
and a folder of N tokens cost N² in time and memory.

One private ``redis-server`` serves both variants; the server is flushed before each. The
deployment (``config.json``, ``provider_pools.json`` with ``TOKENS`` ``claude-kiro-oauth``
nodes, one realistic ~400-byte social-login token file per node) is generated in a fresh
temporary folder:

``folders`` (baseline)
    Every token in its own folder, the Node upload convention
    (``configs/kiro/<ts>_kiro-auth-token/<ts>_kiro-auth-token.json``): no siblings.
``one-folder``
    All tokens in ``configs/kiro/tokens/`` (as a batch import into one folder leaves
    them): each token has every other one as a sibling.

What is timed: the whole ``cfgctl migrate --configs … --redis-url …`` subprocess (reading
the folder, writing Redis); then, as rows of their own, the same migrate run again (nothing
to do: both sides read and compared) and ``cfgctl export`` (which must give back every
token file byte for byte, or the benchmark fails). The migrate rows' note gives the
namespace's memory: the sum of ``MEMORY USAGE`` over its keys (walked with ``SCAN``, which
the service itself never uses) and the ``used_memory`` growth of ``INFO memory``; the
``one-folder`` note has the time and memory ratios the issue sets targets for (≤ 1.5×).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid as uuidlib
from pathlib import Path

import attrs
import redis

from bench.harness import BenchFailure, Row, private_redis, scaled
from bench.pools_data import node_uuid

NAME = "kiro-siblings"
BASELINE = "folders"
SHARED = "one-folder"
TOKENS = 1_000
KIRO = "claude-kiro-oauth"
CLI_TIMEOUT_S = 900.0
"""Bound of one cfgctl run (before siblings were stored once, a migrate took ~100 s)."""


def run(scale: float) -> list[Row]:
    tokens = scaled(TOKENS, scale, 10)
    server = private_redis(NAME)
    with server, tempfile.TemporaryDirectory(prefix="cfgstore-bench-") as root:
        client = redis.Redis.from_url(server.url, decode_responses=False, socket_timeout=120)
        try:
            runs = {}
            for variant, one_folder in ((BASELINE, False), (SHARED, True)):
                deployment = Path(root) / variant
                _generate(deployment, tokens, one_folder)
                runs[variant] = _measure(client, server.url, deployment, variant)
        finally:
            client.close()
    base, shared = runs[BASELINE], runs[SHARED]
    ratios = (
        f"{SHARED}/{BASELINE}: time {shared.migrate_s / base.migrate_s:.2f}×, "
        f"Redis memory {shared.key_bytes / base.key_bytes:.2f}×"
    )
    rows = [
        Row(NAME, BASELINE, tokens, base.migrate_s, BASELINE, base.memory_note()),
        Row(NAME, SHARED, tokens, shared.migrate_s, BASELINE, f"{shared.memory_note()}; {ratios}"),
    ]
    for step, note in (
        ("again", "migrate run again: nothing to do (reads and compares both sides)"),
        ("export", "cfgctl export, every token file checked byte for byte"),
    ):
        for variant, measured in runs.items():
            seconds = measured.again_s if step == "again" else measured.export_s
            rows.append(Row(NAME, f"{variant} {step}", tokens, seconds, f"{BASELINE} {step}", note))
    return rows


@attrs.frozen
class Measured:
    migrate_s: float
    again_s: float
    export_s: float
    key_bytes: int
    """Sum of ``MEMORY USAGE`` over the namespace's keys after the migration."""
    used_memory_growth: int

    def memory_note(self) -> str:
        return f"keys {self.key_bytes:,} B; used_memory +{self.used_memory_growth:,} B"


def _token(index: int) -> dict[str, object]:
    """A social-login Kiro token file as the Node service writes it (§4.1), ~400 bytes."""
    seed = uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"kiro-bench/{index}").hex
    return {
        "accessToken": "aoaAAAAAG" + (seed * 6)[:180],
        "refreshToken": "aorAAAAAG" + (seed[::-1] * 4)[:110],
        "profileArn": "arn:aws:codewhisperer:us-east-1:699475941385:profile/EHGA3GRVQMUK",
        "expiresAt": f"2026-12-{1 + index % 28:02d}T10:{index % 60:02d}:00.000Z",
        "authMethod": "social",
        "provider": "Google",
        "region": "us-east-1",
    }


def _token_path(index: int, one_folder: bool) -> str:
    ts = 1779990000000 + index * 1_000
    if one_folder:
        return f"./configs/kiro/tokens/{ts}_kiro-auth-token.json"
    return f"./configs/kiro/{ts}_kiro-auth-token/{ts}_kiro-auth-token.json"


def _generate(deployment: Path, tokens: int, one_folder: bool) -> None:
    """A Node working directory with ``configs/`` holding ``tokens`` Kiro nodes."""
    configs = deployment / "configs"
    configs.mkdir(parents=True)
    nodes = []
    for index in range(tokens):
        path = _token_path(index, one_folder)
        target = deployment / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(_token(index), indent=2), encoding="utf-8")
        nodes.append(
            {
                "KIRO_OAUTH_CREDS_FILE_PATH": path,
                "uuid": node_uuid(KIRO, index),
                "checkModelName": "claude-haiku-4-5",
                "checkHealth": False,
                "isHealthy": True,
                "isDisabled": False,
                "lastUsed": None,
                "usageCount": 0,
                "errorCount": 0,
                "lastErrorTime": None,
            }
        )
    (configs / "config.json").write_text(
        json.dumps({"REQUIRED_API_KEY": "bench-key", "SERVER_PORT": 3000}, indent=2),
        encoding="utf-8",
    )
    (configs / "provider_pools.json").write_text(
        json.dumps({KIRO: nodes}, indent=2, ensure_ascii=False), encoding="utf-8"
    )


def _cfgctl(*args: str, prefix: str) -> None:
    cfgctl = Path(sys.executable).parent / "cfgctl"
    env = {**os.environ, "CFGSTORE_REDIS_PREFIX": prefix}
    done = subprocess.run(
        [str(cfgctl), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise BenchFailure(f"cfgctl {args[0]} failed ({done.returncode}): {done.stderr[-2000:]}")


def _measure(client: redis.Redis, url: str, deployment: Path, variant: str) -> Measured:
    client.flushall()
    prefix = f"bench-{variant}"
    before = int(client.info("memory")["used_memory"])
    configs = str(deployment / "configs")
    migrate = ("migrate", "--configs", configs, "--redis-url", url)
    migrate_s = _timed(*migrate, prefix=prefix)
    grown = int(client.info("memory")["used_memory"]) - before
    usage = sum(
        int(client.memory_usage(key, samples=0) or 0)
        for key in client.scan_iter(match=f"{{{prefix}}}:*", count=1000)
    )
    again_s = _timed(*migrate, prefix=prefix)
    target = deployment.parent / f"{deployment.name}-export"
    export_s = _timed("export", "--to", str(target), "--redis-url", url, prefix=prefix)
    _check_export(deployment, target)
    return Measured(migrate_s, again_s, export_s, usage, grown)


def _timed(*args: str, prefix: str) -> float:
    start = time.perf_counter()
    _cfgctl(*args, prefix=prefix)
    return time.perf_counter() - start


def _check_export(deployment: Path, target: Path) -> None:
    """The export in ``target`` holds every token file of ``deployment`` byte for byte."""
    for source in (deployment / "configs" / "kiro").rglob("*.json"):
        exported = target / source.relative_to(deployment)
        if not exported.is_file() or exported.read_bytes() != source.read_bytes():
            raise BenchFailure(f"export did not give back {source.relative_to(deployment)}")
