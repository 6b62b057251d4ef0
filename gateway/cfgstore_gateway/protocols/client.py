"""A client protocol in front of the OpenAI-protocol upstream path.

The adapters speak OpenAI chat completions (:mod:`cfgstore_gateway.adapters`); a client of
another protocol gets its request converted once on the way in
(:meth:`ClientProtocol.upstream_body`) and the answer converted once on the way out: a whole
body (:meth:`ClientProtocol.client_body`), a stream event by event
(:meth:`ClientProtocol.translator`), errors in its own shape. An OpenAI chat client passes
through untouched (:data:`PASS_THROUGH`: no parsing, no conversion).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs
from aiohttp import web

from cfgstore_gateway.errors import error_response
from cfgstore_gateway.protocols import BUILT_IN, Converter, StreamTranslator
from cfgstore_gateway.protocols import neutral as n
from cfgstore_gateway.protocols.openai_chat import error_type as openai_error_type
from cfgstore_gateway.protocols.openai_chat import usage_in as openai_usage

UPSTREAM: Converter = BUILT_IN[0]
"""The protocol the adapters speak (OpenAI chat completions)."""


@attrs.frozen
class ClientProtocol:
    """How a request of one client protocol is carried; ``converter`` ``None`` is the
    OpenAI chat protocol itself (passed through)."""

    converter: Converter | None = None

    @property
    def name(self) -> str:
        return self.converter.name if self.converter is not None else UPSTREAM.name

    def upstream_body(self, request: n.ChatRequest) -> dict[str, Any]:
        """The neutral request as the upstream's body."""
        return UPSTREAM.render_request(request)

    def client_body(self, data: bytes) -> tuple[bytes, n.Usage | None]:
        """An upstream's whole successful body in the client's protocol, and its usage.
        Raises ``ValueError`` when the upstream's body is not a JSON object."""
        document = json.loads(data)
        if not isinstance(document, Mapping):
            raise ValueError("the upstream answered with JSON that is not an object")
        if self.converter is None:
            return data, openai_usage(document.get("usage")) if "usage" in document else None
        response = UPSTREAM.parse_response(document)
        rendered = self.converter.render_response(response)
        return json.dumps(rendered, ensure_ascii=False).encode(), response.usage

    def translator(self, model: str) -> StreamTranslator | None:
        """The stream conversion for one response (``None``: passed through)."""
        if self.converter is None:
            return None
        return StreamTranslator(UPSTREAM.stream_reader(), self.converter.stream_writer(model))

    def error_response(
        self,
        status: int,
        message: str,
        code: str | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        """An error answer in the client's protocol (OpenAI's with ``code`` for chat)."""
        if self.converter is None:
            return error_response(status, message, openai_error_type(status), code, headers=headers)
        return web.json_response(
            self.converter.error_body(status, message), status=status, headers=headers
        )

    def stream_error(self, status: int, message: str, model: str) -> bytes:
        """An in-stream error event in the client's protocol."""
        if self.converter is None:
            payload = {
                "error": {"message": message, "type": openai_error_type(status), "code": None}
            }
            return b"data: " + json.dumps(payload).encode() + b"\n\n"
        return self.converter.stream_writer(model).error(status, message)


PASS_THROUGH = ClientProtocol()


def client_protocol(name: str) -> ClientProtocol:
    """The built-in client protocol ``name`` (``openai`` passes through)."""
    if name == UPSTREAM.name:
        return PASS_THROUGH
    for converter in BUILT_IN:
        if converter.name == name:
            return ClientProtocol(converter)
    raise KeyError(name)
