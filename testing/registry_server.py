"""A real HTTP server on 127.0.0.1 (port 0) that plays the version registry in tests.

Each path answers with a `Route`: a callable taking the request handler. Requests are
recorded (path and headers) so tests can assert what the client sent. The signing keys and
the signed envelope are SPEC §4's, written from the SPEC (not from `contract/`).
"""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

Route = Callable[[BaseHTTPRequestHandler], None]


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]


@dataclass
class RegistryServer:
    server: ThreadingHTTPServer
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def url(self, path: str = "/version.json") -> str:
        return self.base + path

    def serve(self, path: str, route: Route) -> str:
        self.routes[path] = route
        return self.url(path)

    def serve_json(self, path: str, document: Any, **kwargs: Any) -> str:
        return self.serve(path, respond(json.dumps(document).encode(), **kwargs))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def respond(
    body: bytes, status: int = 200, headers: dict[str, str] | None = None, content_length: bool = True
) -> Route:
    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Connection", "close")
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        if content_length and not any(k.lower() == "content-length" for k in headers or {}):
            handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        # The client may give up reading, as it should for oversize bodies.
        with contextlib.suppress(OSError):
            handler.wfile.write(body)

    return route


def drip(body: bytes, every: float) -> Route:
    """Send one byte every `every` seconds: never idle long enough for a read timeout."""

    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Connection", "close")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        for byte in body:
            try:
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
            except OSError:
                return
            time.sleep(every)

    return route


def start_registry_server() -> RegistryServer:
    registry: RegistryServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            registry.requests.append(Recorded(self.path, {k: v for k, v in self.headers.items()}))
            route = registry.routes.get(self.path.split("?")[0])
            if route is None:
                respond(b"not found", status=404)(self)
                return
            route(self)
            self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # clients cutting connections short is what several tests do on purpose

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    registry = RegistryServer(server)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    return registry


@contextlib.contextmanager
def serving_registry(settings: Any) -> Iterator[RegistryServer]:
    """A registry server that the backend's settings point at, until the block ends."""
    server = start_registry_server()
    settings.OPENTRACE_REGISTRY_URL = server.url("/version.json")
    try:
        yield server
    finally:
        server.close()


@dataclass
class SigningKey:
    keyid: str
    private: Ed25519PrivateKey

    @property
    def public_raw(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def sign(self, data: bytes) -> str:
        return base64.b64encode(self.private.sign(data)).decode()


def new_key(keyid: str = "k1") -> SigningKey:
    return SigningKey(keyid, Ed25519PrivateKey.generate())


def envelope(inner: bytes, *keys: SigningKey, signatures: list[dict[str, str]] | None = None) -> bytes:
    sigs = signatures if signatures is not None else [{"keyid": k.keyid, "sig": k.sign(inner)} for k in keys]
    return json.dumps({"signed": base64.b64encode(inner).decode(), "signatures": sigs}).encode()


def iso_in(delta: timedelta = timedelta()) -> str:
    """An ISO 8601 UTC time `delta` from now (negative: ago), written as a registry writes it."""
    return (datetime.now(UTC) + delta).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# A document's default expiry: a year after the session started (fixed for the session, so
# two documents built alike are byte for byte the same).
EXPIRES = iso_in(timedelta(days=365))


def full_document(*releases: dict[str, Any], meta_version: int = 1, **top: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "schema": 1,
        "project": "opentrace",
        "meta_version": meta_version,
        "expires": EXPIRES,
        "releases": list(releases),
    }
    document.update(top)
    return document
