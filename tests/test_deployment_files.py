"""The Docker deployment files (Dockerfile, docker-compose.yml, deploy/README.md).

No Docker engine runs here: the files are checked statically (plain text, no YAML
parser), and ``docker compose config -q`` parses the compose file when a Docker CLI with
Compose (or ``docker-compose``) is installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"


def _compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, text=True, timeout=30
        )
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy is not None else None


def _instructions(text: str) -> list[tuple[str, str]]:
    """Dockerfile instructions as (KEYWORD, arguments), continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    result = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        result.append((keyword.upper(), args.strip()))
    return result


def _service_block(text: str, name: str) -> str:
    """The lines of one top-level service of the compose file (two-space indentation)."""
    match = re.search(rf"^  {re.escape(name)}:\n((?:^(?:    .*)?\n)*)", text, re.MULTILINE)
    assert match is not None, f"service {name!r} missing from docker-compose.yml"
    return match.group(1)


def test_compose_config_parses() -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("no Docker CLI with Compose (`docker compose` / `docker-compose`) here")
    result = subprocess.run(
        [*command, "-f", str(COMPOSE), "config", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_compose_services() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    services = text.split("\nservices:\n", 1)[1]

    redis = _service_block(services, "redis")
    assert "image: redis:7" in redis
    for flag, value in [
        ("--appendonly", '"yes"'),
        ("--appendfsync", "everysec"),
        ("--maxmemory-policy", "noeviction"),
    ]:
        assert re.search(rf"- {flag}\n\s+- {value}\n", redis), flag
    assert "healthcheck:" in redis and "redis-cli" in redis and "ping" in redis

    init = _service_block(services, "init")
    assert "cfgctl init --redis-url redis://redis:6379/0" in init
    assert 'restart: "no"' in init

    # The gateways share an anchor: the common settings must be in it.
    anchor = text.split("x-gateway: &gateway\n", 1)[1].split("\nservices:\n", 1)[0]
    assert "CFGSTORE_REDIS_URL: redis://redis:6379/0" in anchor
    assert "healthcheck:" in anchor and "/health" in anchor
    assert re.search(r"redis:\n\s+condition: service_healthy", anchor)
    for name, port in [("gateway-1", 3001), ("gateway-2", 3002)]:
        block = _service_block(services, name)
        assert "<<: *gateway" in block
        assert f'"{port}:3000"' in block
        assert f"{name}-state:/app/state" in block
        assert f"\n  {name}-state:" in text.split("\nvolumes:\n")[-1]


def test_dockerfile() -> None:
    instructions = _instructions(DOCKERFILE.read_text(encoding="utf-8"))
    keywords = [keyword for keyword, _ in instructions]
    args = {keyword: value for keyword, value in instructions}  # the last of each

    assert instructions[0] == ("FROM", "python:3.11-slim")
    assert "3000" in args["EXPOSE"].split()
    user = args["USER"]
    assert user not in {"root", "0"} and not user.startswith(("root:", "0:"))
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN")
    assert "/health" in args["HEALTHCHECK"] and "python" in args["HEALTHCHECK"]
    assert args["ENTRYPOINT"] == '["cfgctl"]'
    assert args["CMD"].startswith('["serve"')
    syncs = [value for keyword, value in instructions if keyword == "RUN" and "uv sync" in value]
    assert syncs and all("--all-packages --frozen --no-dev" in value for value in syncs)


def test_dockerfile_copies_existing_paths() -> None:
    instructions = _instructions(DOCKERFILE.read_text(encoding="utf-8"))
    copies = [value for keyword, value in instructions if keyword in {"COPY", "ADD"}]
    assert copies
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    for value in copies:
        parts = [p for p in value.split() if not p.startswith("--")]
        for source in parts[:-1]:
            assert (ROOT / source).exists(), f"Dockerfile copies {source}, which does not exist"
            assert source not in ignored, f".dockerignore excludes {source}"
