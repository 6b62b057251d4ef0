"""Stopping an aiohttp runner without waiting on connections that can never send a request.

aiohttp's graceful shutdown closes idle keep-alive connections once, right after the
listener closes. A connection the listener accepted in the last loop iterations before
that has no request loop waiting yet, so that single close misses it; its request bytes,
arriving after, are then ignored (the connection is marked closing), and the shutdown waits
the whole ``shutdown_timeout`` for a request that can no longer come, while the client waits
for an answer that never comes. :func:`cleanup_runner` closes connections again until the
cleanup is over, so every such connection is closed within one interval.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

#: How often connections are closed again while the cleanup runs. Closing is idempotent and
#: only asks a connection that is handling a request to close after it, which the shutdown
#: does anyway; a short interval bounds how long a late connection can hold the stop up.
CLOSE_AGAIN_INTERVAL_S = 0.01


async def cleanup_runner(runner: web.BaseRunner) -> None:
    """``runner.cleanup()``, closing every connection it accepted as the listener closed.

    Requests in flight still finish within the runner's ``shutdown_timeout`` as before."""
    server = runner.server
    if server is None:  # never set up, or already cleaned up
        await runner.cleanup()
        return
    closer = asyncio.create_task(_keep_closing(server), name="cfgstore-close-late-connections")
    try:
        await runner.cleanup()
    finally:
        closer.cancel()


async def _keep_closing(server: web.Server) -> None:
    while True:
        for connection in server.connections:
            connection.close()
        await asyncio.sleep(CLOSE_AGAIN_INTERVAL_S)
