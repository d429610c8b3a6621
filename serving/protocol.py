"""uvicorn's HTTP protocol with the limits it lacks: header block size and header read time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("driftlake.serving.protocol")

# After refusing a request whose client may still be sending, the server stops writing but
# reads and discards for this long, so the client reads the answer instead of a reset.
LINGER_SECONDS = 2.0
_PHRASES = {408: "Request Timeout", 431: "Request Header Fields Too Large"}

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # uvicorn without its [standard] extra: no httptools
    HttpToolsProtocol = None  # type: ignore[assignment,misc]


def http_protocol(
    max_header_bytes: int,
    header_timeout: float,
    on_refused: Callable[[int], None] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """Return uvicorn's ``http`` argument and extra options that bound a request's head.

    uvicorn's httptools protocol (the one ``uvicorn[standard]`` runs) accepts a header block
    of any size and waits for it forever; its h11 protocol has a size bound only. With
    httptools this returns a subclass enforcing both; without it, h11 with its size bound.

    Parameters
    ----------
    max_header_bytes
        Most bytes of a request line and its headers; more gets 431 and the connection closed.
    header_timeout
        Seconds from a connection's opening, or a request's first byte, to the end of its
        headers; slower gets 408 and the connection closed.
    on_refused
        Called with the status of every request refused this way (for metrics).

    Returns
    -------
    tuple
        ``(http, options)`` for ``uvicorn.run(app, http=http, **options)``.

    Example
    -------
    >>> http, options = http_protocol(65536, 30.0)
    >>> options
    {'h11_max_incomplete_event_size': 65536}
    """
    options = {"h11_max_incomplete_event_size": max_header_bytes}
    if HttpToolsProtocol is None:
        return "h11", options
    bounded = type(
        "BoundedHttpToolsProtocol",
        (BoundedHttpToolsProtocol,),
        {
            "max_header_bytes": max_header_bytes,
            "header_timeout": header_timeout,
            "on_refused": staticmethod(on_refused or _ignore),
        },
    )
    return bounded, options


def _ignore(status: int) -> None:
    return None


if HttpToolsProtocol is not None:

    class BoundedHttpToolsProtocol(HttpToolsProtocol):
        """httptools protocol refusing a header block over ``max_header_bytes`` or too slow.

        A head is counted from the parser's message start to its headers' end, in whole
        reads as the socket delivers them (so memory stays within one read of the bound);
        with pipelined requests a read may also hold the previous request's tail, which
        then counts against the next head.
        """

        max_header_bytes: int = 64 * 1024
        header_timeout: float = 30.0
        on_refused: Callable[[int], None] = staticmethod(_ignore)

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._head_bytes = 0
            self._in_head = False
            self._head_timer: asyncio.TimerHandle | None = None
            self._refused = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            # an opened connection must deliver its first request's headers in time too
            self._arm_head_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_head_timer()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return  # lingering after a refusal: read and discard
            super().data_received(data)
            if not self._in_head or self.parser is None or self.transport.is_closing():
                return
            self._head_bytes += len(data)
            if self._head_bytes > self.max_header_bytes:
                self._refuse(
                    431,
                    f"request headers are over {self.max_header_bytes} bytes; "
                    "send fewer or shorter headers",
                    linger=True,
                )
            else:
                self._arm_head_timer()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_head = True
            self._head_bytes = 0

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._cancel_head_timer()
            super().on_headers_complete()

        def _arm_head_timer(self) -> None:
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(self.header_timeout, self._head_too_slow)

        def _cancel_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_too_slow(self) -> None:
            self._head_timer = None
            if self._refused or self.transport.is_closing():
                return
            # a head under way, or a connection that never sent a first request
            if self._in_head or self.cycle is None:
                msg = (
                    f"request headers did not arrive within {self.header_timeout:g} s; "
                    "send the whole request at once"
                )
                self._refuse(408, msg, linger=False)

        def _refuse(self, status: int, msg: str, *, linger: bool) -> None:
            self._refused = True
            self._cancel_head_timer()
            client = f"{self.client[0]}:{self.client[1]}" if self.client else "-"
            log.warning(
                "event=request_refused status=%d client=%s head_bytes=%d reason=%r",
                status,
                client,
                self._head_bytes,
                msg,
            )
            self.on_refused(status)
            body = msg.encode()
            head = [f"HTTP/1.1 {status} {_PHRASES[status]}\r\n".encode()]
            for name, value in self.server_state.default_headers:
                head += [name, b": ", value, b"\r\n"]
            head.append(
                b"content-type: text/plain; charset=utf-8\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
            )
            self.transport.write(b"".join(head) + body)
            if linger and self.transport.can_write_eof():
                # the client may still be sending: closing now would reset the connection
                # before it reads the answer; shut our side, discard its bytes for a while
                self.transport.write_eof()
                self.loop.call_later(LINGER_SECONDS, self.transport.close)
            else:
                self.transport.close()
