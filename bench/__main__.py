"""Run every benchmark and print one table: ``uv run python -m bench [--scale S] [--only NAME]``.

Benchmarks are the ``bench/bench_*.py`` modules, each exposing ``run(scale) -> list[Row]``.
The size comes from ``--scale``, else ``CFGSTORE_BENCH_SCALE``, else 1.0. Ratios compare a
row with its benchmark's baseline row from the same run, never with numbers from elsewhere.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import platform
import sys
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import cast

import bench
from bench.harness import BenchFailure, Row

SCALE_ENV = "CFGSTORE_BENCH_SCALE"
PREFIX = "bench_"

RunFn = Callable[[float], list[Row]]


def discover() -> dict[str, ModuleType]:
    """Benchmark modules by short name (``bench_file_usage.py`` → ``file_usage``), sorted."""
    names = sorted(
        info.name for info in pkgutil.iter_modules(bench.__path__) if info.name.startswith(PREFIX)
    )
    return {name.removeprefix(PREFIX): importlib.import_module(f"bench.{name}") for name in names}


def _key(name: str) -> str:
    return name.removeprefix(PREFIX).replace("-", "_").lower()


def select(modules: dict[str, ModuleType], only: Sequence[str]) -> dict[str, ModuleType]:
    """Modules matching ``--only`` by file name (``file_usage``) or benchmark name
    (``file-usage``); every module when ``only`` is empty."""
    if not only:
        return modules
    wanted = {_key(name) for name in only}
    chosen: dict[str, ModuleType] = {}
    matched: set[str] = set()
    for short, module in modules.items():
        names = {_key(short), _key(str(getattr(module, "NAME", short)))}
        if names & wanted:
            chosen[short] = module
            matched |= names & wanted
    unknown = ", ".join(sorted(wanted - matched))
    if unknown:
        raise SystemExit(f"unknown benchmark {unknown} (known: {', '.join(modules) or 'none'})")
    return chosen


def ratios(rows: Sequence[Row]) -> list[float | None]:
    """Each row's ops/s divided by its baseline's ops/s from the same run."""
    by_variant = {(row.benchmark, row.variant): row for row in rows}
    out: list[float | None] = []
    for row in rows:
        base = by_variant.get((row.benchmark, row.baseline))
        out.append(row.rate / base.rate if base is not None and base.rate > 0 else None)
    return out


def render(rows: Sequence[Row]) -> str:
    """The table; the latency columns appear only when some row measured latency."""
    latency = any(row.p50_ms is not None or row.p99_ms is not None for row in rows)
    header: tuple[str, ...] = ("benchmark", "variant", "ops", "seconds", "ops/s", "vs baseline")
    if latency:
        header += ("p50 ms", "p99 ms")
    header += ("note",)
    lines = [header]
    for row, ratio in zip(rows, ratios(rows), strict=True):
        if row.variant == row.baseline:
            versus = "1.00× (baseline)"
        elif ratio is None:
            versus = f"– (no {row.baseline})"
        else:
            versus = f"{ratio:,.2f}× {row.baseline}"
        line: tuple[str, ...] = (
            row.benchmark,
            row.variant,
            f"{row.ops:,}",
            f"{row.seconds:.3f}",
            f"{row.rate:,.0f}",
            versus,
        )
        if latency:
            line += (_ms(row.p50_ms), _ms(row.p99_ms))
        lines.append((*line, row.note))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    numeric = {2, 3, 4, 6, 7} if latency else {2, 3, 4}

    def fmt(line: tuple[str, ...]) -> str:
        cells = [
            cell.rjust(width) if i in numeric else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([fmt(lines[0]), rule, *(fmt(line) for line in lines[1:])])


def _ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,.3f}" if value < 10 else f"{value:,.1f}"


def _scale(value: str) -> float:
    scale = float(value)
    if not scale > 0:
        raise argparse.ArgumentTypeError(f"scale must be > 0, got {value}")
    return scale


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--scale",
        type=_scale,
        default=None,
        help=f"size multiplier (default: ${SCALE_ENV} or 1.0)",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="run only this benchmark (repeatable), e.g. file-usage",
    )
    args = parser.parse_args(argv)
    scale: float | None = args.scale
    if scale is None:
        try:
            scale = _scale(os.environ.get(SCALE_ENV, "1"))
        except (ValueError, argparse.ArgumentTypeError) as exc:
            parser.error(f"{SCALE_ENV}: {exc}")
    modules = select(discover(), args.only)

    print(
        f"machine: {os.cpu_count()} cores (nproc {len(os.sched_getaffinity(0))}), "
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.system()} {platform.machine()}"
    )
    print(f"scale: {scale:g}   date: {time.strftime('%Y-%m-%d %H:%M %Z')}")
    print()

    rows: list[Row] = []
    failures: list[str] = []
    started = time.perf_counter()
    for short, module in modules.items():
        run = cast(RunFn, module.run)
        print(f"running {short} …", file=sys.stderr, flush=True)
        try:
            rows.extend(run(scale))
        except BenchFailure as exc:
            failures.append(str(exc))
    if rows:
        print(render(rows))
    print(f"\ntotal {time.perf_counter() - started:.1f} s")
    for failure in failures:
        print(f"\nERROR: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
