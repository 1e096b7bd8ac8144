"""A test's own HTTP server on a free loopback port, served from a thread and shut down on exit."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer
from typing import Iterator

# How often the serving loop looks for a shutdown: what leaving the block waits at most
# (http.server's default, 0.5 s, was most of these tests' time).
_POLL_S = 0.02


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler], *, threads: bool = False) -> Iterator[str]:
    """Yield `http://127.0.0.1:<port>`, answered by `handler` (each request on its own thread
    with `threads`)."""
    server = (ThreadingHTTPServer if threads else HTTPServer)(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(_POLL_S,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
