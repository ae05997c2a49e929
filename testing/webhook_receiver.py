"""A real HTTP receiver on 127.0.0.1 for the channel tests: a threaded `http.server`.

It records every request (method, path, headers, raw body) and answers from a script of
replies, then 200: a status (`Reply(500)`), a redirect (`Reply(302, location=...)`), or a
hang (`Reply(hang=True)`: it says nothing until the test ends or the client gives up).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b""
    location: str = ""
    hang: bool = False


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    server: ThreadingHTTPServer
    replies: list[Reply] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)  # time.monotonic() of each request
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def url(self, path: str = "/hook", scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def bodies(self) -> list[Any]:
        return [request.json() for request in self.received]

    def next_reply(self) -> Reply:
        with self.lock:
            return self.replies.pop(0) if self.replies else Reply()


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            with receiver.lock:
                receiver.received.append(Received("POST", self.path, dict(self.headers.items()), body))
                receiver.arrivals.append(time.monotonic())
            reply = receiver.next_reply()
            if reply.hang:
                receiver.stop.wait(30)
                return
            self.send_response(reply.status)
            if reply.location:
                self.send_header("Location", reply.location)
            self.send_header(
                "Content-Type", "application/json" if reply.body[:1] in (b"{", b"[") else "text/plain"
            )
            self.send_header("Content-Length", str(len(reply.body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(reply.body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the test reads `received`; the console stays quiet

    return Handler


def start_receiver(*replies: Reply) -> Receiver:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    server.daemon_threads = True
    receiver = Receiver(server, list(replies))
    server.RequestHandlerClass = _handler(receiver)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return receiver


def stop_receiver(receiver: Receiver) -> None:
    receiver.stop.set()
    receiver.server.shutdown()
    receiver.server.server_close()


def receivers() -> Iterator[Any]:
    """For a fixture: yields a `start(*replies)` function, stops every receiver afterwards."""
    started: list[Receiver] = []

    def start(*replies: Reply) -> Receiver:
        receiver = start_receiver(*replies)
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        stop_receiver(receiver)
