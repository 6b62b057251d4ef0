"""Reproducible benchmarks: ``uv run python -m bench`` runs every ``bench_*.py`` module and
prints one table of ratios measured side by side in the same run (see ``bench/README.md``)."""
