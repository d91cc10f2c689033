"""What the stack's small HTTP servers share: loopback-only binding, TLS, and a clean stop on signals."""

from __future__ import annotations

import ipaddress
import logging
import signal
import ssl
import sys
import threading
import urllib.request
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T")


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


class LoopbackServer(ThreadingHTTPServer):
    """What the stack's HTTP servers share: threads that end with the process, a port reusable at once.

    A client that fails the TLS handshake (plain http to https) or hangs up is logged in a line, not a traceback.
    """

    daemon_threads = True
    allow_reuse_address = True
    logger = logging.getLogger("lintas.serving")

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A dropped connection: one log line; anything else: the standard traceback."""
        exc = sys.exc_info()[1]
        if isinstance(exc, ssl.SSLError | ConnectionError | TimeoutError):
            self.logger.info("connection from %s dropped: %s", client_address[0], type(exc).__name__)
            return
        super().handle_error(request, client_address)


def serve_tls(server: ThreadingHTTPServer, cert_chain: Path) -> None:
    """Serve https: ``cert_chain`` holds the key, the certificate and its CA (infra/tls.py's server.pem).

    The handshake happens on the request's own thread (``do_handshake_on_connect=False``; the first read
    makes it), so a client that connects and says nothing cannot stall the accept loop.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert_chain))
    server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)


def http_ok(url: str, ca_file: Path | None, expect: bytes = b"", timeout: float = 1.0,
            headers: dict[str, str] | None = None) -> bool:
    """Health probe: True if ``url`` answers 200 (and its body starts with ``expect``), verifying TLS with the CA."""
    context = ssl.create_default_context(cafile=str(ca_file)) if url.startswith("https:") and ca_file else None
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - loopback URL built from settings
    with urllib.request.urlopen(request, timeout=timeout, context=context) as resp:  # noqa: S310
        return resp.status == 200 and resp.read().startswith(expect)


def start_tls(server: ThreadingHTTPServer, cert_chain: Path | None, name: str, close: Callable[[], None]) -> bool:
    """:func:`serve_tls` if a certificate is given; False (printed why, server and store closed) if it cannot load."""
    if cert_chain is None:
        return True
    try:
        serve_tls(server, cert_chain)
    except OSError as exc:  # ssl.SSLError included
        server.server_close()
        close()
        print(f"{name}: cannot load TLS certificate {cert_chain}: {exc}", file=sys.stderr)
        return False
    return True


class ReloadedFile(Generic[T]):
    """A file parsed by ``load``, read again when it changes, so a server takes a rotated password at once.

    Read at construction: a server never starts with a file it cannot read (OSError, ValueError). Later, a
    rewrite that cannot be read leaves the last good reading in place (logged) until the file changes again.
    """

    def __init__(self, path: Path, load: Callable[[Path], T], log: logging.Logger) -> None:
        """Read ``path`` now."""
        self.path, self._load, self._log = path, load, log
        self._lock = threading.Lock()
        self._version = self._file_version()
        self._value = load(path)

    def _file_version(self) -> tuple[int, int, int]:
        # the inode too: a file replaced within the clock's resolution is still seen as new
        st = self.path.stat()
        return st.st_mtime_ns, st.st_ino, st.st_size

    def current(self) -> T:
        """The file's content as it is now."""
        with self._lock:
            try:
                version = self._file_version()
                if version != self._version:
                    self._version = version
                    self._value = self._load(self.path)
                    self._log.info("%s changed: read again", self.path)
            except (OSError, ValueError) as exc:
                self._log.error("%s unreadable (%s): keeping what was read before", self.path, type(exc).__name__)
            return self._value
