"""A client's protocol, and how requests and answers cross to an upstream's protocol.

Each upstream adapter speaks one protocol (:func:`~cfgstore_gateway.adapters.upstream_protocol`).
When the client speaks the same one, bodies pass through untouched (bytes included, no
parsing); otherwise the request is converted once on the way in (through the neutral model)
and the answer once on the way out: a whole body (:meth:`ClientProtocol.client_body`), a
stream event by event (:meth:`ClientProtocol.translator`). Errors the gateway makes take
the client's protocol's shape (:meth:`ClientProtocol.error_response`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import attrs
from aiohttp import web

from cfgstore_gateway.errors import error_response
from cfgstore_gateway.protocols import BUILT_IN, Converter, StreamTranslator
from cfgstore_gateway.protocols import neutral as n
from cfgstore_gateway.protocols.openai_chat import error_type as openai_error_type


@attrs.frozen
class ClientProtocol:
    """The protocol a client speaks (its converter)."""

    converter: Converter

    @property
    def name(self) -> str:
        return self.converter.name

    @property
    def is_openai_chat(self) -> bool:
        """OpenAI chat clients get the gateway's historical error shape (with ``code``) and
        upstream error bodies as the upstream gave them."""
        return self.converter.name == OPENAI.name

    def speaks(self, upstream: Converter) -> bool:
        """Whether ``upstream`` is this very protocol (then nothing is converted)."""
        return upstream.name == self.converter.name

    def client_body(self, data: bytes, upstream: Converter) -> tuple[bytes, n.Usage | None]:
        """An upstream's whole successful body in this protocol, and its token usage.
        Raises ``ValueError`` when the body is not a JSON object."""
        document = json.loads(data)
        if not isinstance(document, Mapping):
            raise ValueError("the upstream answered with JSON that is not an object")
        response = upstream.parse_response(document)
        if self.speaks(upstream):
            return data, response.usage
        rendered = self.converter.render_response(response)
        return json.dumps(rendered, ensure_ascii=False).encode(), response.usage

    def translator(self, model: str, upstream: Converter) -> StreamTranslator | None:
        """The stream conversion of one answer (``None``: the same protocol, passed through)."""
        if self.speaks(upstream):
            return None
        return StreamTranslator(upstream.stream_reader(), self.converter.stream_writer(model))

    def error_response(
        self,
        status: int,
        message: str,
        code: str | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        """An error answer in this protocol (OpenAI chat's carries ``code``)."""
        if self.is_openai_chat:
            return error_response(status, message, openai_error_type(status), code, headers=headers)
        body = self.converter.error_body(status, message)
        return web.json_response(body, status=status, headers=headers)

    def stream_error(self, status: int, message: str, model: str) -> bytes:
        """An in-stream error event in this protocol."""
        return self.converter.stream_writer(model).error(status, message)


OPENAI: Converter = BUILT_IN[0]
OPENAI_CLIENT = ClientProtocol(OPENAI)
"""OpenAI chat completions, the protocol of ``/v1/chat/completions``."""
