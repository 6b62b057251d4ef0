"""Gateways as real OS processes (``cfgctl serve``), for the many-instance tests.

:func:`start_gateway` runs ``cfgctl serve --host 127.0.0.1 --port 0`` in Redis mode with its
own ``--state-dir`` (stderr, its log, goes to a file; stdout is read for the ``listening on``
line, which names the port the kernel picked), then polls ``GET /health`` until the
gateway answers with the expected storage mode: readiness is what the service says, within
a bounded deadline. :func:`gateway_fleet` starts several at once and kills whatever is left
when the test ends. :meth:`GatewayProcess.terminate` is the graceful stop (SIGTERM: finish
in-flight requests, flush the store, exit 0); :meth:`GatewayProcess.kill` a crash (SIGKILL).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import attrs

START_S = 90.0
"""Bound of a start: interpreter start, imports, store open, first healthy answer (a busy
2-core box starting four at once needs a few seconds; the bound is generous)."""
STOP_S = 60.0
"""Bound of a graceful stop (in-flight requests finish, the store flushes)."""
HEALTH_POLL_S = 0.05
LISTENING = re.compile(r"listening on http://([^:\s]+):(\d+) \(storage: ([\w-]+)")


def cfgctl() -> list[str]:
    """The ``cfgctl`` console script of this environment (the interpreter as a fallback)."""
    script = Path(sys.executable).parent / "cfgctl"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from cfgstore.cli.app import main; main()"]


def gateway_env(redis_prefix: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a gateway process: the test's own, without any operator setting
    (``CFGSTORE_*`` but the suite's ``CFGSTORE_TEST_*``, ``REDIS_URL``), on namespace
    ``{redis_prefix}``, plus ``extra``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not (key.startswith("CFGSTORE_") and not key.startswith("CFGSTORE_TEST_"))
        and key != "REDIS_URL"
    }
    env.update(CFGSTORE_REDIS_PREFIX=redis_prefix, PYTHONUNBUFFERED="1")
    env.update(extra or {})
    return env


@attrs.define
class GatewayProcess:
    """One running ``cfgctl serve``."""

    name: str
    process: asyncio.subprocess.Process
    url: str
    state_dir: Path
    log_path: Path
    stdout: list[str]

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError as exc:
            return f"<cannot read {self.log_path}: {exc}>"
        return "\n".join(text[-lines:])

    def log_lines(self, pattern: str) -> list[str]:
        """The lines of its log that match ``pattern`` (a regular expression)."""
        found = re.compile(pattern)
        return [line for line in self.log_path.read_text().splitlines() if found.search(line)]

    async def health(self, client: aiohttp.ClientSession) -> dict[str, Any]:
        async with client.get(f"{self.url}/health") as response:
            assert response.status == 200, f"{self.name}: /health answered {response.status}"
            body: dict[str, Any] = await response.json()
            return body

    async def wait_storage(
        self, client: aiohttp.ClientSession, storage: str, *, within: float
    ) -> float:
        """Poll ``/health`` until it reports ``storage``; the seconds it took. Fails after
        ``within`` seconds or when the process exits."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        seen: str | None = None
        while loop.time() - started < within:
            if not self.running:
                raise AssertionError(
                    f"{self.name} exited ({self.process.returncode}) while waiting for "
                    f"storage {storage!r}:\n{self.log_tail()}"
                )
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                seen = (await self.health(client))["storage"]
                if seen == storage:
                    return loop.time() - started
            await asyncio.sleep(HEALTH_POLL_S)
        raise AssertionError(
            f"{self.name}: /health did not report storage {storage!r} within {within}s "
            f"(last: {seen!r})\n{self.log_tail()}"
        )

    async def terminate(self, *, within: float = STOP_S) -> int:
        """SIGTERM and wait for the exit; its status (the stdout left is kept)."""
        if self.running:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(self.process.wait(), within)
        except TimeoutError:
            raise AssertionError(
                f"{self.name} did not stop within {within}s of SIGTERM\n{self.log_tail()}"
            ) from None
        await self._drain_stdout()
        return code

    async def kill(self) -> None:
        """SIGKILL (no flush, no goodbye) and reap."""
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGKILL)
        await self.process.wait()
        await self._drain_stdout()

    async def _drain_stdout(self) -> None:
        if self.process.stdout is not None:
            rest = await asyncio.wait_for(self.process.stdout.read(), STOP_S)
            self.stdout.extend(rest.decode(errors="replace").splitlines())


async def start_gateway(
    workdir: Path,
    *,
    name: str,
    redis_url: str,
    redis_prefix: str,
    client: aiohttp.ClientSession,
    storage: str = "redis",
    extra_args: tuple[str, ...] = (),
    env: Mapping[str, str] | None = None,
) -> GatewayProcess:
    """Start ``cfgctl serve`` (Redis mode, state in ``workdir/state``, log in
    ``workdir/serve.log``) and return once ``/health`` reports ``storage``."""
    workdir.mkdir(parents=True, exist_ok=True)
    state_dir = workdir / "state"
    log_path = workdir / "serve.log"
    with log_path.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            *cfgctl(),
            "serve",
            "--host", "127.0.0.1",
            "--port", "0",
            "--redis-url", redis_url,
            "--state-dir", str(state_dir),
            *extra_args,
            cwd=workdir,
            env=gateway_env(redis_prefix, env),
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )  # fmt: skip
    lines: list[str] = []
    try:
        assert process.stdout is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_S
        found: re.Match[str] | None = None
        try:
            async with asyncio.timeout(START_S):
                while found is None:
                    raw = await process.stdout.readline()
                    if not raw:
                        raise AssertionError(
                            f"{name}: cfgctl serve exited ({await process.wait()}) before "
                            f"listening:\n" + "\n".join(lines) + "\n" + log_path.read_text()
                        )
                    lines.append(raw.decode(errors="replace").rstrip())
                    found = LISTENING.search(lines[-1])
        except TimeoutError:
            raise AssertionError(
                f"{name}: no 'listening on' line within {START_S}s:\n{log_path.read_text()}"
            ) from None
        host, port, _ = found.groups()
        gateway = GatewayProcess(name, process, f"http://{host}:{port}", state_dir, log_path, lines)
        await gateway.wait_storage(client, storage, within=max(1.0, deadline - loop.time()))
        return gateway
    except BaseException:
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise


@contextlib.asynccontextmanager
async def gateway_fleet(
    root: Path,
    count: int,
    *,
    redis_url: str,
    redis_prefix: str,
    client: aiohttp.ClientSession,
    extra_args: tuple[str, ...] = (),
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[list[GatewayProcess]]:
    """``count`` gateways (``root/gw-<i>``) started concurrently on one namespace; any still
    running when the block exits is killed (a test stops them itself to check the exit)."""
    starts = [
        asyncio.ensure_future(
            start_gateway(
                root / f"gw-{index}",
                name=f"gw-{index}",
                redis_url=redis_url,
                redis_prefix=redis_prefix,
                client=client,
                extra_args=extra_args,
                env=env,
            )
        )
        for index in range(count)
    ]
    try:
        gateways = await asyncio.gather(*starts)
    except BaseException:
        for start in starts:
            start.cancel()
        for start in starts:
            with contextlib.suppress(BaseException):
                await (await start).kill()
        raise
    try:
        yield list(gateways)
    finally:
        for gateway in gateways:
            if gateway.running:
                await gateway.kill()
