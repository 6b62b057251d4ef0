"""A local stand-in for an upstream OAuth token endpoint (the only stand-in the suite allows).

:class:`TokenEndpoint` is a tiny HTTP/1.1 server on the loopback interface (a free port)
that answers ``POST /refresh`` with a new token, in the shape of the request:

* a JSON body ``{"refreshToken": ...}`` (Kiro's refresh call) gets
  ``{"accessToken": "new-<n>", "refreshToken": "<rt>-rotated-<n>", "expiresIn": 3600}``;
* a form or JSON body with ``refresh_token`` (Google's token endpoint, also Qwen/iFlow)
  gets ``{"access_token": "new-<n>", "expires_in": 3600, "scope": ..., "token_type":
  "Bearer", "id_token": ...}`` — no ``refresh_token``: google-auth-library carries the old
  one over, and so must the caller.

``n`` counts requests (1, 2, …). :attr:`TokenEndpoint.requests` counts requests per refresh
token and :attr:`TokenEndpoint.issued` lists the access tokens issued per refresh token.
Answers can be delayed (``delay_s``) or held until :meth:`TokenEndpoint.release` (to widen
or pin races); a held answer is bounded by ``max_hold_s`` (then ``503``). Every read has a
timeout, heads and bodies have size limits, and leaving ``async with`` closes the listener
and cancels what is still in flight.

The server runs on the event loop of the process that opened it; other processes reach it
through :attr:`TokenEndpoint.url` — :func:`post_refresh` is the (blocking, stdlib-only)
client both the tests and their worker processes use.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from types import TracebackType
from typing import Any

__all__ = ["TokenEndpoint", "post_refresh"]

LOOPBACK = "127.0.0.1"
MAX_HEAD_BYTES = 16 * 1024
MAX_BODY_BYTES = 64 * 1024
READ_TIMEOUT_S = 5.0
REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


class TokenEndpoint:
    """``async with TokenEndpoint(delay_s=0.2) as endpoint:`` → POST to ``endpoint.url``."""

    def __init__(
        self, *, delay_s: float = 0.0, expires_in_s: int = 3600, max_hold_s: float = 30.0
    ) -> None:
        self.delay_s = delay_s
        self.expires_in_s = expires_in_s
        self.max_hold_s = max_hold_s
        self.requests: Counter[str] = Counter()
        """Requests received per refresh token (counted on arrival, before any delay)."""
        self.issued: dict[str, list[str]] = {}
        """Access tokens issued per refresh token, in order."""
        self._served = 0
        self._open_gate = asyncio.Event()
        self._open_gate.set()
        self._closing = asyncio.Event()
        self._arrivals = asyncio.Condition()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None
        self._port = 0

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the token endpoint is not running (use `async with`)")
        return f"http://{LOOPBACK}:{self._port}/refresh"

    @property
    def total(self) -> int:
        """Refresh requests received so far."""
        return sum(self.requests.values())

    def hold(self) -> None:
        """Hold every answer (already waiting or arriving later) until :meth:`release`."""
        self._open_gate.clear()

    def release(self) -> None:
        self._open_gate.set()

    async def wait_for_requests(self, count: int, within_s: float = 10.0) -> None:
        """Return once ``count`` refresh requests have arrived (raise ``TimeoutError``
        after ``within_s``)."""

        async def arrived() -> None:
            async with self._arrivals:
                await self._arrivals.wait_for(lambda: self.total >= count)

        await asyncio.wait_for(arrived(), within_s)

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> TokenEndpoint:
        self._server = await asyncio.start_server(
            self._connection, LOOPBACK, 0, limit=MAX_HEAD_BYTES
        )
        self._port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        self._closing.set()
        if self._tasks:
            await asyncio.wait_for(
                asyncio.gather(*self._tasks, return_exceptions=True), READ_TIMEOUT_S * 2
            )
        await asyncio.wait_for(server.wait_closed(), READ_TIMEOUT_S)

    # -- serving -----------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        # The answer runs in a task of its own that shutdown cancels; this task always ends
        # normally (asyncio's stream callback of Python 3.11 fails on a cancelled one).
        answering = asyncio.ensure_future(self._answer(reader))
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            await asyncio.wait({answering, closing}, return_when=asyncio.FIRST_COMPLETED)
            if not answering.done():
                answering.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await answering
                return
            status, answer = answering.result()
            body = json.dumps(answer).encode()
            head = (
                f"HTTP/1.1 {status} {REASONS[status]}\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(head.encode("ascii") + body)
            await asyncio.wait_for(writer.drain(), READ_TIMEOUT_S)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            pass  # the client went away or stalled: nothing to answer
        finally:
            answering.cancel()  # no-op once done; stops it if this task itself was cancelled
            closing.cancel()
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), READ_TIMEOUT_S)

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[int, dict[str, Any]]:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
        except (asyncio.LimitOverrunError, ValueError):
            return 431, {"error": "request head too large"}
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return 400, {"error": "malformed request line"}
        method, target, _ = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, sep, value = line.partition(":")
                if not sep:
                    return 400, {"error": "malformed header"}
                headers[name.strip().lower()] = value.strip()
        if urllib.parse.urlsplit(target).path != "/refresh":
            return 404, {"error": f"no such path: {target}"}
        if method != "POST":
            return 405, {"error": "POST only"}
        if "transfer-encoding" in headers or "content-length" not in headers:
            return 411, {"error": "send a Content-Length"}
        try:
            length = int(headers["content-length"])
        except ValueError:
            return 400, {"error": "bad Content-Length"}
        if not 0 <= length <= MAX_BODY_BYTES:
            return 413, {"error": "body too large"}
        raw = await asyncio.wait_for(reader.readexactly(length), READ_TIMEOUT_S)
        fields = _fields(raw, headers.get("content-type", ""))
        if fields is None:
            return 400, {"error": "body must be JSON or a form"}
        kiro = isinstance(fields.get("refreshToken"), str)
        refresh_token = fields.get("refreshToken") if kiro else fields.get("refresh_token")
        if not isinstance(refresh_token, str) or not refresh_token:
            return 400, {"error": "invalid_request", "error_description": "no refresh token"}

        self._served += 1
        number = self._served
        self.requests[refresh_token] += 1
        async with self._arrivals:
            self._arrivals.notify_all()
        if self.delay_s > 0:
            await asyncio.sleep(self.delay_s)
        try:
            await asyncio.wait_for(self._open_gate.wait(), self.max_hold_s)
        except TimeoutError:
            return 503, {"error": "held longer than max_hold_s"}

        access = f"new-{number}"
        self.issued.setdefault(refresh_token, []).append(access)
        if kiro:
            return 200, {
                "accessToken": access,
                "refreshToken": f"{refresh_token}-rotated-{number}",
                "expiresIn": self.expires_in_s,
            }
        return 200, {
            "access_token": access,
            "expires_in": self.expires_in_s,
            "scope": "https://www.googleapis.com/auth/cloud-platform",
            "token_type": "Bearer",
            "id_token": f"FAKE.id-token.{number}",
        }


def _fields(raw: bytes, content_type: str) -> dict[str, Any] | None:
    try:
        text = raw.decode("utf-8")
        if content_type.startswith("application/x-www-form-urlencoded"):
            return dict(urllib.parse.parse_qsl(text, strict_parsing=bool(text)))
        value = json.loads(text)
    except (UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


# Proxies from the environment must not see loopback test traffic.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def post_refresh(
    url: str, fields: dict[str, str], *, form: bool = False, timeout_s: float = 10.0
) -> dict[str, Any]:
    """POST a refresh request (JSON, or a form like Google's) and return the JSON answer.

    Blocking (call it through ``asyncio.to_thread``); raises ``urllib.error.HTTPError`` for
    a non-2xx answer and ``TimeoutError``/``URLError`` when the endpoint does not answer.
    """
    if form:
        data = urllib.parse.urlencode(fields).encode()
        content_type = "application/x-www-form-urlencoded"
    else:
        data = json.dumps(fields).encode()
        content_type = "application/json"
    request = urllib.request.Request(
        url, data=data, method="POST", headers={"Content-Type": content_type}
    )
    with _OPENER.open(request, timeout=timeout_s) as response:
        answer = json.loads(response.read())
    if not isinstance(answer, dict):
        raise urllib.error.URLError(f"token endpoint answered {answer!r}, not an object")
    return answer
