"""An HTTP/1.1 proxy on loopback that injects S3 faults between a client and a server.

Modes, settable at any time from the test's thread:

- ``"pass"``: requests go to the upstream server unchanged, its answers come back unchanged
  but for their ``Connection`` header (see below);
- ``"slowdown"``: every request is read (with its body) and answered ``503`` with S3's
  ``SlowDown`` error, the connection kept alive;
- ``"reset"``: the client's connection is reset (RST, ``SO_LINGER`` 0) once a request arrives;
- ``"stall"``: the request is read and left unanswered until the client gives up, or until
  the mode is set again, which closes the connection; a stalled request never reaches the
  server (so a client's timed-out write does not land later).

Design: the proxy speaks HTTP/1.1 to its clients as S3 does, keeping their connections alive.
Each client connection is parsed one request at a time (request line, headers, and a body
framed by ``Content-Length`` or by chunked transfer coding, which also carries S3's
``aws-chunked`` payloads) and the mode is looked up per request, so a new mode applies to the
next request of every connection, kept-alive ones included. A request that passes goes to the
server over a connection of its own (moto's server closes every connection after one
response anyway), and the response is relayed as it arrives, its framing parsed only to find
its end; its ``Connection`` header is dropped so that the client keeps the connection, unless
only the server closing it would tell where the body ends.

Example
-------
>>> with FaultProxy(moto.endpoint) as proxy:
...     store = s3_store(proxy.endpoint, bucket)
...     proxy.inject("slowdown", times=2)  # two 503s, then requests pass again
...     obs.put(store, "k", b"v")          # succeeds if the client retries twice
"""

from __future__ import annotations

import asyncio
import re
import socket
import struct
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

Mode = Literal["pass", "slowdown", "reset", "stall"]
MODES: tuple[str, ...] = get_args(Mode)

SLOWDOWN_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
)
_LIMIT = 1 << 20  # longest message head or chunk-size line read in one piece
_CHUNK = 1 << 16
_DRAIN_ON_CLOSE = 1.0  # seconds to read what a client still sends after a closing answer


def slowdown_response(*, with_body: bool = True, close: bool = False) -> bytes:
    """S3's ``503 Slow Down`` answer; ``with_body=False`` for a HEAD request (which gets the
    headers only), ``close`` to end the connection after it."""
    head = [
        b"HTTP/1.1 503 Slow Down",
        b"Content-Type: application/xml",
        b"Content-Length: %d" % len(SLOWDOWN_BODY),
        b"x-amz-request-id: FAULTPROXY",
    ]
    if close:
        head.append(b"Connection: close")
    return b"\r\n".join(head) + b"\r\n\r\n" + (SLOWDOWN_BODY if with_body else b"")


@dataclass(frozen=True)
class _Head:
    """A request's or a response's start line and headers."""

    raw: bytes  # through the blank line
    start: str
    headers: dict[str, str]  # lower-case names

    @classmethod
    def parse(cls, raw: bytes) -> _Head:
        start, *fields = raw.decode("latin-1").split("\r\n")
        headers: dict[str, str] = {}
        for field in fields:
            if field:
                name, _, value = field.partition(":")
                key = name.strip().lower()
                value = value.strip()
                headers[key] = f"{headers[key]}, {value}" if key in headers else value
        if len(start.split(" ", 2)) != 3:
            raise ValueError(f"not an HTTP start line: {start!r}")
        return cls(raw, start, headers)

    @property
    def method(self) -> str:
        return self.start.split(" ", 1)[0]

    @property
    def status(self) -> int:
        return int(self.start.split(" ", 2)[1])

    @property
    def chunked(self) -> bool:
        return "chunked" in self.headers.get("transfer-encoding", "").lower()

    @property
    def keep_alive(self) -> bool:
        """Whether a request leaves its connection open after the answer."""
        connection = self.headers.get("connection", "").lower()
        if self.start.endswith("HTTP/1.0"):
            return "keep-alive" in connection
        return "close" not in connection

    @property
    def expects_continue(self) -> bool:
        return self.headers.get("expect", "").lower() == "100-continue"

    def without_connection(self) -> bytes:
        """The head without its hop-by-hop ``Connection`` and ``Keep-Alive`` headers."""
        lines = self.raw.split(b"\r\n")
        kept = [
            line
            for line in lines[1:]
            if line.split(b":", 1)[0].strip().lower() not in (b"connection", b"keep-alive")
        ]
        return b"\r\n".join([lines[0], *kept])

    async def body(self, reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive, framing (chunk sizes, trailers) included; none
        without ``Content-Length`` or chunked coding (for a request: it has no body)."""
        if self.chunked:
            while True:
                size_line = await reader.readuntil(b"\r\n")
                yield size_line
                size = int(size_line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while (trailer := await reader.readuntil(b"\r\n")) != b"\r\n":
                        yield trailer
                    yield trailer
                    return
                yield await reader.readexactly(size + 2)  # the data and its CRLF
        left = int(self.headers.get("content-length", "0"))
        while left > 0:
            data = await reader.read(min(left, _CHUNK))
            if not data:
                raise asyncio.IncompleteReadError(b"", left)
            left -= len(data)
            yield data


class FaultProxy:
    """A proxy from ``endpoint`` (``http://127.0.0.1:<port>``) to ``upstream``, served by an
    event loop in a daemon thread from construction until :meth:`close`.

    ``requests`` lists the request lines seen (``"PUT /bucket/key HTTP/1.1"``), in order;
    ``faults_injected`` counts faults applied (a 503 sent, a reset, a stall begun);
    ``connections`` counts client connections accepted (a client that reuses its
    connections opens few).
    """

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"upstream must be http://host:port, not {upstream!r}")
        self._upstream = (parts.hostname, parts.port)
        self._lock = threading.Lock()
        self._mode: Mode = "pass"
        self._times: int | None = None
        self._match: re.Pattern[str] | None = None
        self._generation = 0  # counts inject() calls: a stalled request waits for the next
        self.requests: list[str] = []
        self.faults_injected = 0
        self.connections = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy")
        self._thread.daemon = True
        self._thread.start()
        self.port: int = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests_seen(self) -> int:
        return len(self.requests)

    @property
    def mode(self) -> Mode:
        return self._mode

    @mode.setter
    def mode(self, mode: Mode) -> None:
        self.inject(mode)

    def inject(self, mode: Mode, *, times: int | None = None, match: str | None = None) -> None:
        """Apply ``mode`` to the next requests: to every one, or only to those whose request
        line ``match`` finds (a regex; the others pass), and only ``times`` of them, after
        which the mode is ``"pass"`` again. Connections of stalled requests are closed."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        if times is not None and times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._mode = mode
            self._times = None if mode == "pass" else times
            self._match = None if match is None else re.compile(match)
            self._generation += 1
        self._loop.call_soon_threadsafe(self._wake_stalled)

    def close(self) -> None:
        """Stop accepting, drop every connection, and end the thread."""
        if self._loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # Everything below runs in the proxy's event loop.

    async def _start(self) -> int:
        self._changed = asyncio.Event()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=_LIMIT)
        return self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def _wake_stalled(self) -> None:
        # a fresh event per change: a stalled request waits on the one current when it looked
        self._changed.set()
        self._changed = asyncio.Event()

    def _decide(self, line: str) -> tuple[Mode, int]:
        """The mode for a request that arrived, counting it against ``times``; and the
        generation of the setting that decided it."""
        with self._lock:
            self.requests.append(line)
            if self._mode == "pass" or (self._match and not self._match.search(line)):
                return "pass", self._generation
            mode = self._mode
            if self._times is not None:
                self._times -= 1
                if self._times == 0:
                    self._mode, self._times, self._match = "pass", None, None
            return mode, self._generation

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        with self._lock:
            self.connections += 1
        connection = _Connection(self, reader, writer)
        try:
            await connection.run()
        except (OSError, EOFError, asyncio.LimitOverrunError, ValueError):
            pass  # the client or the server went away, or spoke something other than HTTP
        finally:
            connection.close()
            self._tasks.discard(task)


class _Connection:
    """One client connection, kept alive for as long as the client and the answers allow."""

    def __init__(
        self, proxy: FaultProxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.proxy = proxy
        self.reader = reader
        self.writer = writer
        self.upstream: asyncio.StreamWriter | None = None

    async def run(self) -> None:
        while True:
            try:
                raw = await self.reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return  # the client closed the connection between requests
            request = _Head.parse(raw)
            mode, generation = self.proxy._decide(request.start)
            body = request.body(self.reader)
            if mode == "stall":
                self._fault()
                async for _ in body:
                    pass
                await self._stall(generation)
                return
            if mode == "pass":
                keep_alive = await self._forward(request, body)
            elif mode == "slowdown":
                self._fault()
                keep_alive = await self._slowdown(request, body)
            else:
                self._fault()
                self._reset()
                return
            if not keep_alive:
                return

    def _fault(self) -> None:
        with self.proxy._lock:
            self.proxy.faults_injected += 1

    async def _stall(self, generation: int) -> None:
        """Return when :meth:`FaultProxy.inject` is called after ``generation`` or the client
        closes or sends more (it gave up: HTTP clients do not pipeline). The end of
        ``times`` stalls is no call: it leaves the stalled requests stalled."""
        client = asyncio.ensure_future(self.reader.read(1))
        try:
            # the event is taken before the check: a call after the check sets this event
            changed = asyncio.ensure_future(self.proxy._changed.wait())
            if self.proxy._generation == generation:
                await asyncio.wait({client, changed}, return_when=asyncio.FIRST_COMPLETED)
            changed.cancel()
        finally:
            client.cancel()

    async def _forward(self, request: _Head, body: AsyncIterator[bytes]) -> bool:
        """Send ``request`` to the server on a new connection and relay its answer; return
        whether the client's connection stays open."""
        reader, self.upstream = await asyncio.open_connection(*self.proxy._upstream, limit=_LIMIT)
        self.upstream.write(request.raw)
        # the body is sent while the answer is awaited: a server answers "Expect:
        # 100-continue" (boto3 sends it) before it reads the body
        sending = asyncio.ensure_future(self._send_body(body))
        try:
            keep_alive = await self._relay_response(request, reader)
            await sending
        finally:
            sending.cancel()
            self.upstream.transport.abort()
            self.upstream = None
        return keep_alive and request.keep_alive

    async def _send_body(self, body: AsyncIterator[bytes]) -> None:
        # a server that answered without reading the whole body may close its end: the rest
        # is still read from the client, to stay at a request boundary
        async for chunk in body:
            if self.upstream is not None and not self.upstream.is_closing():
                try:
                    self.upstream.write(chunk)
                    await self.upstream.drain()
                except OSError:
                    self.upstream.transport.abort()

    async def _relay_response(self, request: _Head, reader: asyncio.StreamReader) -> bool:
        """Relay the server's answer (after any ``1xx``); return whether its end is known
        without the server closing, so that the client's connection can stay open."""
        while True:
            response = _Head.parse(await reader.readuntil(b"\r\n\r\n"))
            if response.status >= 200:
                break
            self.writer.write(response.raw)  # 100 Continue
            await self.writer.drain()
        no_body = request.method == "HEAD" or response.status in (204, 304)
        framed = no_body or response.chunked or "content-length" in response.headers
        keep_alive = framed and response.start.startswith("HTTP/1.1")
        self.writer.write(response.without_connection() if keep_alive else response.raw)
        if no_body:
            pass
        elif framed:
            async for chunk in response.body(reader):
                self.writer.write(chunk)
                await self.writer.drain()
        else:
            while data := await reader.read(_CHUNK):
                self.writer.write(data)
                await self.writer.drain()
        await self.writer.drain()
        return keep_alive

    async def _slowdown(self, request: _Head, body: AsyncIterator[bytes]) -> bool:
        """Answer 503 SlowDown; return whether the connection stays open. A client waiting
        for ``100 Continue`` has not sent its body: it gets the answer and the connection
        closes (it may still send the body; that is read and dropped)."""
        keep_alive = request.keep_alive and not request.expects_continue
        if keep_alive:
            async for _ in body:
                pass
        with_body = request.method != "HEAD"
        self.writer.write(slowdown_response(with_body=with_body, close=not keep_alive))
        await self.writer.drain()
        if not keep_alive:
            await self._close_after_answer()
        return keep_alive

    async def _close_after_answer(self) -> None:
        # closing with unread bytes would send a RST that can destroy the answer in flight
        self.writer.write_eof()
        try:
            async with asyncio.timeout(_DRAIN_ON_CLOSE):
                while await self.reader.read(_CHUNK):
                    pass
        except TimeoutError:
            pass

    def _reset(self) -> None:
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    def close(self) -> None:
        if self.upstream is not None:
            self.upstream.transport.abort()
        if not self.writer.is_closing():
            self.writer.close()
