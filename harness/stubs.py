"""Stand-in HTTP servers for tests: a quiet request handler, served from a thread on loopback.

Example
-------
>>> class Hello(QuietHandler):
...     def do_GET(self) -> None:
...         self.reply(200, b'{"hello": "world"}')
>>> with serving_in_thread(ThreadingHTTPServer(("127.0.0.1", 0), Hello)) as server:
...     httpx.get(f"http://127.0.0.1:{server.server_address[1]}/").json()
{'hello': 'world'}
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from socketserver import BaseServer
from typing import Any, TypeVar

S = TypeVar("S", bound=BaseServer)


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that logs nothing (a test's output is its assertions) and answers
    with :meth:`reply`."""

    def read_body(self) -> bytes:
        """The request's body, as long as its ``Content-Length`` says."""
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def read_json(self) -> Any:
        """The request's body parsed as JSON."""
        return json.loads(self.read_body())

    def reply(self, status: int, body: bytes = b"", content_type: str = "application/json") -> None:
        """Answer ``status`` with ``body``, its length and type in the headers."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serving_in_thread(server: S) -> Iterator[S]:
    """Serve ``server`` (an ``http.server``/``socketserver`` server) from a thread until the
    block ends; it is always shut down and closed."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
