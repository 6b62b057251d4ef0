"""What every benchmark module shares: the result row, the failure type, fresh folders,
a private redis-server.

A benchmark module is ``bench/bench_<name>.py`` exposing ``run(scale: float) -> list[Row]``.
Every row names the benchmark, its variant and the variant it is compared against; the
runner (``python -m bench``) computes the ratios, so the baseline and the contenders are
always measured in the same run on the same machine.
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import attrs

from cfgstore.adapters import Settings, Store
from tests.support.redis_server import (
    RedisServerProcess,
    RedisServerUnavailable,
    RedisStartError,
)


@attrs.frozen
class Row:
    """One measurement: ``ops`` operations took ``seconds`` of wall-clock time."""

    benchmark: str
    variant: str
    ops: int
    seconds: float
    baseline: str
    """The variant of the same benchmark this row's ratio is taken against."""
    note: str = ""
    p50_ms: float | None = None
    """Median caller latency in ms (what exactly is timed: see the benchmark's README
    section and the note); None when the benchmark does not measure it."""
    p99_ms: float | None = None

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else float("inf")


def percentile_ms(seconds: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank) of latencies given in seconds, in ms."""
    if not seconds:
        raise ValueError("no latencies")
    ordered = sorted(seconds)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1] * 1000


class BenchFailure(Exception):
    """A benchmark produced a wrong result (a lost count is a bug, not a slow run)."""


def scaled(base: int, scale: float, minimum: int = 1) -> int:
    """``base × scale`` rounded, never below ``minimum``."""
    return max(minimum, round(base * scale))


@contextmanager
def fresh_configs_dir() -> Iterator[Path]:
    """A new, empty ``configs/`` folder inside a temporary directory, removed afterwards.

    The folder sits under ``$TMPDIR`` (default ``/tmp``): point that at the disk you want
    to measure, since fsync cost is the point of the file benchmarks."""
    with tempfile.TemporaryDirectory(prefix="cfgstore-bench-") as root:
        configs = Path(root) / "configs"
        configs.mkdir()
        yield configs


def private_redis(benchmark: str, extra_args: tuple[str, ...] = ()) -> RedisServerProcess:
    """A started private redis-server for ``benchmark`` (started with ``extra_args``);
    :class:`BenchFailure` (saying what to install, or why it did not start) otherwise.
    Use it as a context manager."""
    try:
        return RedisServerProcess(extra_args=extra_args).start()
    except RedisServerUnavailable as exc:
        raise BenchFailure(
            f"{benchmark} starts a private redis-server and needs the binary on PATH "
            "(Debian/Ubuntu: apt-get install redis-server)"
        ) from exc
    except RedisStartError as exc:
        raise BenchFailure(f"{benchmark}: the private redis-server did not start: {exc}") from exc


def redis_only(url: str, prefix: str) -> Settings:
    """A Redis-only store (admin work: seeding, reading back, replay operations)."""
    return Settings(backends=("redis",), redis_url=url, redis_prefix=prefix)


async def usage_in_redis(url: str, prefix: str) -> tuple[dict[tuple[str, str], int], list[str]]:
    """Every account's ``usageCount`` in Redis by ``(type, uuid)``, and the accounts that
    are not healthy with ``errorCount`` 0 (a benchmark's run must leave none)."""
    async with Store.open(redis_only(url, prefix)) as admin:
        pools = await admin.pools.list()
    counts = {(t, node.uuid): node.state.usage_count for t, node in pools}
    unhealthy = [
        f"{t}/{node.uuid}"
        for t, node in pools
        if not node.state.is_healthy or node.state.error_count != 0
    ]
    return counts, unhealthy


@contextmanager
def quiet_logs() -> Iterator[None]:
    """Keep cfgstore's warnings (a deliberate outage: degraded, feed lost, resubscribing)
    off a benchmark's output; errors still show."""
    logger = logging.getLogger("cfgstore")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
