"""What the stack's small HTTP servers share: loopback-only binding and a clean stop on signals."""

from __future__ import annotations

import ipaddress
import logging
import signal
import threading
from collections.abc import Callable
from http.server import ThreadingHTTPServer


def is_allowed_host(host: str, allow_non_loopback: bool) -> bool:
    """Servers of the local stack bind loopback addresses only, unless explicitly allowed."""
    return allow_non_loopback or ipaddress.ip_address(host).is_loopback


def serve_until_signalled(server: ThreadingHTTPServer, close: Callable[[], None], log: logging.Logger) -> None:
    """Serve until SIGTERM or SIGINT, finish the request in flight, then close the backing store."""

    def stop(signum: int, _frame: object) -> None:
        log.info("signal %d: shutting down", signum)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        close()
        log.info("stopped")
