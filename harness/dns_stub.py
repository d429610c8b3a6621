"""A loopback DNS server for tests: answers ``model-server`` like Docker's embedded DNS does."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Mapping, Sequence


class DnsStub:
    """A loopback UDP DNS server answering A queries from a table you can change while it runs.

    Stands in for Docker's embedded DNS (127.0.0.11), which answers a service name with one A
    record per replica. Unknown names get NXDOMAIN; other query types an empty answer.
    """

    def __init__(self, records: Mapping[str, Sequence[str]], ttl: int = 1) -> None:
        self._records = {name.lower(): list(addrs) for name, addrs in records.items()}
        self._ttl = ttl
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.port: int = self._sock.getsockname()[1]
        self.queries = 0
        self._thread = threading.Thread(target=self._serve, name="dns-stub", daemon=True)

    def set(self, name: str, addresses: Sequence[str]) -> None:
        """Answer ``name`` with ``addresses`` from now on (like scaling a compose service)."""
        with self._lock:
            self._records[name.lower()] = list(addresses)

    def __enter__(self) -> DnsStub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                query, peer = self._sock.recvfrom(512)
            except TimeoutError:
                continue
            except OSError:
                return
            answer = self._answer(query)
            if answer is not None:
                self.queries += 1
                self._sock.sendto(answer, peer)

    def _answer(self, query: bytes) -> bytes | None:
        if len(query) < 17:
            return None
        labels, pos = [], 12
        while pos < len(query) and query[pos] != 0:
            n = query[pos]
            labels.append(query[pos + 1 : pos + 1 + n].decode("ascii", "replace"))
            pos += 1 + n
        pos += 1
        if pos + 4 > len(query):
            return None
        qtype, _qclass = struct.unpack("!HH", query[pos : pos + 4])
        question = query[12 : pos + 4]
        with self._lock:
            addresses = self._records.get(".".join(labels).lower())
        rd = struct.unpack("!H", query[2:4])[0] & 0x0100
        if addresses is None:
            header = struct.pack("!2sHHHHH", query[:2], 0x8400 | rd | 3, 1, 0, 0, 0)
            return header + question
        answers = [] if qtype != 1 else addresses
        header = struct.pack("!2sHHHHH", query[:2], 0x8400 | rd, 1, len(answers), 0, 0)
        body = b"".join(
            b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, self._ttl, 4) + socket.inet_aton(a)
            for a in answers
        )
        return header + question + body
