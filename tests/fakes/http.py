"""A small threaded HTTP(S) server on 127.0.0.1 for the connector fakes.

Each fake is a function ``(Request) -> Reply``; the server runs it per request in
its own thread, so a client with several connections (urllib3 pools) works. A reply
may ask the server to stall (``delay``) to provoke client read timeouts; stalls end
early when the server stops, so teardown never waits for them.
"""

from __future__ import annotations

import gzip
import json
import socket
import ssl
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    #: Header names in lower case.
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    #: Seconds to stall before answering (read-timeout tests).
    delay: float = 0.0

    @classmethod
    def json(cls, doc: Any, status: int = 200, **headers: str) -> Reply:
        return cls(
            status, json.dumps(doc).encode(), {"Content-Type": "application/json", **headers}
        )


Handler = Callable[[Request], Reply]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, handler: Handler) -> None:
        self.fake = handler
        self.stopping = threading.Event()
        self.requests: list[Request] = []
        super().__init__(("127.0.0.1", 0), _RequestHandler)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY each reply
    # waits for the client's delayed ACK (~40 ms).
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        encoding = (self.headers.get("Content-Encoding") or "").lower()
        if encoding == "gzip" and body:
            body = gzip.decompress(body)
        elif encoding == "deflate" and body:
            body = zlib.decompress(body)
        parts = urlsplit(self.path)
        request = Request(
            self.command,
            parts.path,
            parse_qs(parts.query),
            {k.lower(): v for k, v in self.headers.items()},
            body,
        )
        self.server.requests.append(request)
        reply = self.server.fake(request)
        if reply.delay and self.server.stopping.wait(reply.delay):
            return
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle  # noqa: N815


@dataclass
class RunningServer:
    port: int
    scheme: str
    server: _Server

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[Request]:
        return self.server.requests


@contextmanager
def serve(handler: Handler, *, tls: ssl.SSLContext | None = None) -> Iterator[RunningServer]:
    """Serve ``handler`` on an ephemeral 127.0.0.1 port until the block ends."""
    server = _Server(handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-http", daemon=True
    )
    thread.start()
    try:
        yield RunningServer(server.server_address[1], "https" if tls else "http", server)
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def closed_port() -> int:
    """A 127.0.0.1 port with nothing listening (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
