"""What the stack's small HTTP servers share: loopback-only binding, TLS, and a clean stop on signals."""

from __future__ import annotations

import argparse
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
from typing import Any, Generic, Protocol, TypeVar

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


class Backing(Protocol):
    """What a server keeps its data in (the registry's SQLite store, ClickHouse's chDB engine)."""

    def close(self) -> None:
        """Release it."""


def serve_main(argv: list[str] | None, *, name: str, description: str, port: int, users_required: bool,
               load_users: Callable[[Path], Any], open_store: Callable[[Path], Backing],
               make_server: Callable[[tuple[str, int], Any, Any], ThreadingHTTPServer],
               banner: Callable[[Any, Any], str], log: logging.Logger) -> int:
    """A stack server's command line: check the address, read the users, open the store, bind, TLS, serve.

    Every refusal is one line on stderr naming the server and exit 2; the server runs until SIGTERM or SIGINT.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--users-file", type=Path, required=users_required, help="the users and their roles")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=port)
    parser.add_argument("--allow-non-loopback", action="store_true",
                        help="bind a non-loopback address (never needed on a developer machine)")
    parser.add_argument("--tls-cert", type=Path, help="serve https: key, certificate and CA in one PEM file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if not is_allowed_host(args.host, args.allow_non_loopback):
        print(f"{name}: refusing to bind {args.host}: not a loopback address", file=sys.stderr)
        return 2
    try:
        users = load_users(args.users_file) if args.users_file else None
    except (OSError, ValueError) as exc:  # the type only: a users file's content is not for a log
        print(f"{name}: cannot read users file {args.users_file}: {type(exc).__name__}", file=sys.stderr)
        return 2
    store = open_store(args.data_dir)
    try:
        server = make_server((args.host, args.port), store, users)
    except OSError as exc:
        store.close()
        print(f"{name}: cannot bind {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 2
    if not start_tls(server, args.tls_cert, name, store.close):
        return 2
    log.info("%s over %s on %s:%d, data in %s", banner(server, users), "HTTPS" if args.tls_cert else "HTTP",
             args.host, args.port, args.data_dir)
    serve_until_signalled(server, store.close, log)
    return 0


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
