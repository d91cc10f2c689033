"""Serve the ClickHouse engine (chDB) over the ClickHouse HTTP interface.

No ClickHouse server package installs on these machines, but the engine does
(``chdb-core``). This adapter gives it the HTTP interface clickhouse-connect
speaks, so the pipeline talks to it exactly as to a production server:

* ``GET /ping`` and ``GET /`` answer ``Ok.``;
* the query comes in the ``query`` URL parameter and/or the body; with both, the
  body is the INSERT's data (ClickHouse semantics);
* ``param_<name>`` URL parameters bind ``{name:Type}`` placeholders (chDB's own binding);
  other URL parameters (session ids, progress headers, query settings) are accepted
  and not applied: chDB takes settings only in the query text;
* request bodies may be chunked and compressed (``Content-Encoding`` lz4, zstd,
  gzip, deflate); responses are compressed on request (``enable_http_compression=1``);
* errors come back as ClickHouse's do: ``Code: N. DB::Exception: ...`` in the body,
  ``X-ClickHouse-Exception-Code`` header, and ClickHouse's HTTP status for the code;
* users from a JSON file (SHA-256 password hashes), HTTP Basic auth or
  ``X-ClickHouse-User``/``X-ClickHouse-Key``; a read-only user runs read queries
  only, enforced by ClickHouse itself (``readonly=1``) after a parse check.

chDB runs one engine per process and its connection is not safe for concurrent
queries, so requests are served by threads but executed one at a time.
Multi-statement requests are refused, as ClickHouse's HTTP interface does.
"""

from __future__ import annotations

import argparse
import base64
import email.parser
import email.policy
import gzip
import hashlib
import hmac
import json
import logging
import re
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import lz4.frame
import zstandard
from chdb import session as chdb_session

from infra.serving import is_allowed_host, serve_until_signalled
from streams.sql import split_statements

log = logging.getLogger("lintas.clickhouse_http")

SERVER_NAME = "lintas-chdb"

# ClickHouse's HTTPHandler maps these error codes to HTTP statuses; everything else is 500.
ERROR_STATUS = {
    **dict.fromkeys((6, 26, 27, 36, 38, 41, 42, 43, 53, 62, 72, 456, 457), HTTPStatus.BAD_REQUEST),
    **dict.fromkeys((46, 47, 50, 56, 60, 63, 73, 81, 115), HTTPStatus.NOT_FOUND),  # UNKNOWN_* (table, db, ...)
    **dict.fromkeys((164, 497), HTTPStatus.FORBIDDEN),  # READONLY, ACCESS_DENIED
    210: HTTPStatus.SERVICE_UNAVAILABLE,  # NETWORK_ERROR: here, the server shutting down (a client retries)
    **dict.fromkeys((192, 193, 194, 516), HTTPStatus.UNAUTHORIZED),  # UNKNOWN_USER ... AUTHENTICATION_FAILED
    48: HTTPStatus.NOT_IMPLEMENTED,
}
ERROR_NAMES = {62: "SYNTAX_ERROR", 164: "READONLY", 516: "AUTHENTICATION_FAILED", 1: "UNSUPPORTED_METHOD",
               210: "NETWORK_ERROR"}

# Statement kinds (root of ClickHouse's AST) a read-only user may run.
READ_KINDS = ("SelectWithUnionQuery", "SelectIntersectExceptQuery", "SelectQuery", "ShowTables", "ShowColumns",
              "ShowCreate", "DescribeQuery", "ExistsTableQuery", "ExistsDatabaseQuery", "ExistsQuery",
              "ExplainQuery", "ShowProcesslist")
# Scalar functions that read outside the database; readonly=1 stops table functions, not these.
FORBIDDEN_READONLY_FUNCTIONS = frozenset({"file", "url", "executable"})

_CODE = re.compile(r"Code: (\d+)\.")
_FORMAT_TAIL = re.compile(r"\bFORMAT\s+([A-Za-z][A-Za-z0-9_]*)\s*;?\s*$", re.IGNORECASE | re.DOTALL)
_VALUES_TAIL = re.compile(r"\bVALUES\s*$", re.IGNORECASE)
_BODY_INSERT = re.compile(
    rb"\s*(INSERT\s.*?(?:\bFORMAT\s+[A-Za-z][A-Za-z0-9_]*|\bVALUES\b))[ \t]*\r?\n?", re.IGNORECASE | re.DOTALL
)
_FUNCTION_NODE = re.compile(r"^\s*Function (\w+)", re.MULTILINE)


class ClickHouseError(Exception):
    """An error to return to the client with a ClickHouse error code."""

    def __init__(self, code: int, message: str) -> None:
        """Keep the code and the ClickHouse-style message."""
        super().__init__(message)
        self.code = code
        self.message = message

    @classmethod
    def from_engine(cls, exc: Exception) -> ClickHouseError:
        """Wrap a chDB exception, keeping the ClickHouse code from its text."""
        text = str(exc)
        match = _CODE.search(text)
        code = int(match.group(1)) if match else 1001  # STD_EXCEPTION
        if not text.startswith("Code:"):
            text = f"Code: {code}. DB::Exception: {text}"
        return cls(code, text)

    @classmethod
    def make(cls, code: int, message: str) -> ClickHouseError:
        """An error in ClickHouse's own wording: ``Code: N. DB::Exception: message. (NAME)``."""
        name = ERROR_NAMES.get(code, "UNKNOWN")
        return cls(code, f"Code: {code}. DB::Exception: {message}. ({name})")


@dataclass(frozen=True)
class User:
    """A user of the HTTP interface."""

    name: str
    password_sha256_hex: str
    readonly: bool


def load_users(path: Path) -> dict[str, User]:
    """Read the users file: ``{name: {"password_sha256_hex": ..., "readonly": bool}}``."""
    raw = json.loads(path.read_text())
    return {
        name: User(name, str(spec["password_sha256_hex"]).lower(), bool(spec.get("readonly", False)))
        for name, spec in raw.items()
    }


MAX_URI = 1 << 20  # ClickHouse's http_max_uri_size


def form_fields(content_type: str, body: bytes) -> dict[str, str] | None:
    """The fields of a form-encoded body (the query and ``param_*``), or ``None`` if the body is not a form.

    ClickHouse reads a query and its parameters from form fields as from the URL; a file part
    (external data for a temporary table) is not served here and is refused by name.
    """
    # curl's --data-binary says x-www-form-urlencoded for a bare query: ClickHouse reads that body as the query
    if content_type.split(";", 1)[0].strip().lower() != "multipart/form-data":
        return None
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    fields: dict[str, str] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if part.get_param("filename", header="content-disposition") is not None:
            raise ClickHouseError.make(48, f"external data (form file {name!r}) is not supported by this server")
        payload = part.get_payload(decode=True)
        raw = payload if isinstance(payload, bytes) else b""
        fields[str(name)] = raw.decode(part.get_content_charset() or "utf-8")
    return fields


def decompress(body: bytes, encoding: str | None) -> bytes:
    """Undo a request's Content-Encoding (what clickhouse-connect and curl send)."""
    enc = (encoding or "").strip().lower()
    if enc in ("", "identity"):
        return body
    # clickhouse-connect compresses each block of a large insert as a frame of its own: read every frame
    if enc == "lz4":
        return _frames(body, lambda: lz4.frame.LZ4FrameDecompressor())
    if enc == "zstd":
        return _frames(body, lambda: zstandard.ZstdDecompressor().decompressobj())
    if enc in ("gzip", "x-gzip"):
        return gzip.decompress(body)
    if enc == "deflate":
        return zlib.decompress(body)
    raise ClickHouseError.make(1, f"Unknown Content-Encoding of HTTP request: {enc}")


def _frames(body: bytes, decompressor: Callable[[], Any]) -> bytes:
    """Concatenated compression frames, decompressed one after another."""
    out, rest = [], body
    while rest:
        d = decompressor()
        out.append(d.decompress(rest))
        rest = d.unused_data
    return b"".join(out)


def compress(body: bytes, accept: str | None) -> tuple[bytes, str | None]:
    """Compress a response with the first encoding the client accepts that we support."""
    for enc in (e.split(";")[0].strip().lower() for e in (accept or "").split(",")):
        if enc == "lz4":
            return lz4.frame.compress(body), "lz4"
        if enc == "zstd":
            return zstandard.ZstdCompressor().compress(body), "zstd"
        if enc == "gzip":
            return gzip.compress(body, compresslevel=3), "gzip"
        if enc == "deflate":
            return zlib.compress(body, 3), "deflate"
    return body, None


@dataclass
class Result:
    """What one request produced."""

    body: bytes
    fmt: str
    read_rows: int = 0
    read_bytes: int = 0
    written_rows: int = 0
    written_bytes: int = 0
    elapsed_ns: int = 0


class Engine:
    """One chDB session on a data directory, used by one query at a time."""

    def __init__(self, data_dir: Path) -> None:
        """Open (or create) the persistent database in ``data_dir``."""
        data_dir.mkdir(parents=True, exist_ok=True)
        self._session = chdb_session.Session(str(data_dir))
        self._lock = threading.Lock()
        self._closed = False

    def close(self) -> None:
        """Close the session so the data directory is left consistent."""
        with self._lock:
            self._closed = True
            self._session.close()

    def execute(self, sql: str, data: bytes | None, database: str, fmt: str, params: dict[str, str],
                readonly: bool) -> Result:
        """Run one statement (with INSERT data if given) as ClickHouse's HTTP handler would."""
        statements = split_statements(sql)
        if len(statements) != 1:
            if not statements:
                raise ClickHouseError.make(62, "Empty query")
            raise ClickHouseError.make(62, "Multi-statements are not allowed")
        statement = statements[0].strip()
        t0 = time.perf_counter_ns()
        with self._lock:
            if self._closed:  # a request that waited while the server shut down: the client may retry elsewhere
                raise ClickHouseError.make(210, "The server is shutting down")
            self._use(database)
            if readonly:
                statement = self._readonly_statement(statement, params)
            if data:
                result = self._insert(statement, data)
            else:
                result = self._query(statement, fmt, params)
        result.elapsed_ns = time.perf_counter_ns() - t0
        return result

    def _use(self, database: str) -> None:
        try:
            self._session.query(f"USE `{database.replace('`', '')}`", "TabSeparated")
        except Exception as exc:  # noqa: BLE001 - chDB raises its own error types
            raise ClickHouseError.from_engine(exc) from None

    def _readonly_statement(self, statement: str, params: dict[str, str]) -> str:
        """Refuse anything but a read; hand ClickHouse ``readonly=1`` so it enforces the rest."""
        try:
            ast = self._session.query(f"EXPLAIN AST {statement}", "TabSeparated", params=params or None)
        except Exception as exc:  # noqa: BLE001
            raise ClickHouseError.from_engine(exc) from None
        tree = ast.bytes().decode(errors="replace")
        kind = tree.split(" ", 1)[0].strip()
        if kind not in READ_KINDS:
            raise ClickHouseError.make(164, "Cannot execute query in readonly mode")
        if {f.lower() for f in _FUNCTION_NODE.findall(tree)} & FORBIDDEN_READONLY_FUNCTIONS:
            raise ClickHouseError.make(164, "Cannot execute query in readonly mode")
        if kind.startswith("Select"):
            # A query-level SETTINGS clause makes ClickHouse itself refuse writes, table functions and
            # setting changes in the query; it must come after FORMAT, so strip and re-append the format.
            fmt_match = _FORMAT_TAIL.search(statement)
            body = statement[: fmt_match.start()] if fmt_match else statement
            fmt = f"\nFORMAT {fmt_match.group(1)}" if fmt_match else ""
            return f"{body.rstrip().rstrip(';')}{fmt}\nSETTINGS readonly = 1"
        return statement

    def _query(self, statement: str, fmt: str, params: dict[str, str]) -> Result:
        try:
            res = self._session.query(statement, fmt, params=params or None)
        except Exception as exc:  # noqa: BLE001
            raise ClickHouseError.from_engine(exc) from None
        fmt_match = _FORMAT_TAIL.search(statement)
        return Result(
            body=bytes(res.bytes()),
            fmt=fmt_match.group(1) if fmt_match else fmt,
            read_rows=int(res.rows_read()),
            read_bytes=int(res.bytes_read()),
        )

    def _insert(self, statement: str, data: bytes) -> Result:
        fmt_match = _FORMAT_TAIL.search(statement)
        values_match = None if fmt_match else _VALUES_TAIL.search(statement)
        if fmt_match:
            prefix, fmt = statement[: fmt_match.start()], fmt_match.group(1)
        elif values_match:
            prefix, fmt = statement[: values_match.start()], "Values"
        else:
            # Not an INSERT with data: ClickHouse concatenates the parameter and the body into one query.
            return self._query(f"{statement} {data.decode()}", "TabSeparated", {})
        if not prefix.lstrip().upper().startswith("INSERT"):
            raise ClickHouseError.make(62, "Only an INSERT query may carry data in the request body")
        try:
            inserter = self._session.send_insert(prefix.strip(), fmt)
            inserter.append(data)
            res = inserter.finish()
        except Exception as exc:  # noqa: BLE001
            raise ClickHouseError.from_engine(exc) from None
        return Result(body=b"", fmt=fmt, written_rows=int(res.rows_written), written_bytes=len(data))


class Handler(BaseHTTPRequestHandler):
    """One HTTP/1.1 connection speaking ClickHouse's HTTP interface."""

    protocol_version = "HTTP/1.1"
    server_version = SERVER_NAME
    server: Server

    def handle_one_request(self) -> None:
        """http.server's loop with ClickHouse's URI limit (``http_max_uri_size``, 1 MiB) instead of 64 KiB.

        Bound parameters travel in the URL (up to 4 KB from clickhouse-connect's queries, but
        without limit from ``command()``), so a server that stops at 64 KiB refuses what ClickHouse takes.
        """
        try:
            self.raw_requestline = self.rfile.readline(MAX_URI + 1)
            if len(self.raw_requestline) > MAX_URI:
                self.requestline, self.request_version, self.command = "", "", ""
                self.send_error(HTTPStatus.REQUEST_URI_TOO_LONG)
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return
            method = getattr(self, f"do_{self.command}", None)
            if method is None:
                self.send_error(HTTPStatus.NOT_IMPLEMENTED, f"Unsupported method ({self.command!r})")
                return
            method()
            self.wfile.flush()
        except TimeoutError as exc:
            self.log_error("Request timed out: %r", exc)
            self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
        """Log the request line only: queries may hold personal data, so never log their text."""
        log.debug("%s %s", self.command, urlsplit(self.path).path)

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        """Ping, or a read-only query in the URL."""
        self._serve(body=b"")

    def do_POST(self) -> None:  # noqa: N802
        """A query and/or data in the body."""
        self._serve(body=self._read_body())

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self, body: bytes) -> None:
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        query_id = params.get("query_id") or str(uuid.uuid4())
        if url.path in ("/ping", "/") and "query" not in params and not body:
            self._reply(HTTPStatus.OK, b"Ok.\n", query_id, content_type="text/html; charset=UTF-8")
            return
        if url.path != "/":
            self._reply(HTTPStatus.NOT_FOUND, b"There is no handle " + url.path.encode() + b"\n", query_id)
            return
        try:
            user = self._authenticate(params)
            readonly = user.readonly or self.command == "GET"
            data = decompress(body, self.headers.get("Content-Encoding"))
            form = form_fields(self.headers.get("Content-Type", ""), data)
            if form is not None:  # clickhouse-connect sends long bound parameters (> 4 KB) this way
                params.update(form)
                data = b""
            sql, payload = self._split_query(params.get("query"), data)
            database = params.get("database") or self.headers.get("X-ClickHouse-Database") or "default"
            fmt = params.get("default_format") or self.headers.get("X-ClickHouse-Format") or "TabSeparated"
            bind = {k[len("param_"):]: v for k, v in params.items() if k.startswith("param_")}
            if self.command == "GET" and payload:
                raise ClickHouseError.make(164, "Cannot execute query in readonly mode")
            result = self.server.engine.execute(sql, payload, database, fmt, bind, readonly)
        except ClickHouseError as err:
            self._error(err, query_id)
            return
        except Exception as exc:  # noqa: BLE001 - every failure must reach the client as a ClickHouse error
            log.exception("internal error serving a request")
            self._error(ClickHouseError(1001, f"Code: 1001. DB::Exception: {type(exc).__name__}. (STD_EXCEPTION)"),
                        query_id)
            return
        summary = {
            "read_rows": str(result.read_rows), "read_bytes": str(result.read_bytes),
            "written_rows": str(result.written_rows), "written_bytes": str(result.written_bytes),
            "total_rows_to_read": str(result.read_rows), "result_rows": str(result.written_rows or result.read_rows),
            "result_bytes": str(len(result.body)), "elapsed_ns": str(result.elapsed_ns),
        }
        out, encoding = result.body, None
        if params.get("enable_http_compression") == "1" and out:
            out, encoding = compress(out, self.headers.get("Accept-Encoding"))
        self._reply(HTTPStatus.OK, out, query_id, fmt=result.fmt, encoding=encoding, summary=summary)

    @staticmethod
    def _split_query(param_query: str | None, data: bytes) -> tuple[str, bytes | None]:
        """The statement and the INSERT data, from the URL parameter and/or the body."""
        if param_query is not None:
            return param_query, (data or None)
        # Body only: an INSERT's data starts right after `FORMAT name` (one newline) or `VALUES`.
        head = _BODY_INSERT.match(data[:65536])
        if head:
            return head.group(1).decode("utf-8", errors="strict"), data[head.end():] or None
        try:
            return data.decode(), None
        except UnicodeDecodeError:
            raise ClickHouseError.make(62, "Query is not valid UTF-8") from None

    def _authenticate(self, params: dict[str, str]) -> User:
        name, password = "default", ""
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                name, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                raise ClickHouseError.make(516, "Malformed Authorization header") from None
        elif "X-ClickHouse-User" in self.headers:
            name, password = self.headers["X-ClickHouse-User"], self.headers.get("X-ClickHouse-Key", "")
        elif "user" in params:
            name, password = params["user"], params.get("password", "")
        user = self.server.users.get(name)
        supplied = hashlib.sha256(password.encode()).hexdigest()
        expected = user.password_sha256_hex if user else hashlib.sha256(b"\0no-such-user").hexdigest()
        if not hmac.compare_digest(supplied, expected) or user is None:
            raise ClickHouseError.make(
                516, f"{name}: Authentication failed: password is incorrect, or there is no user with such name")
        return user

    def _error(self, err: ClickHouseError, query_id: str) -> None:
        status = ERROR_STATUS.get(err.code, HTTPStatus.INTERNAL_SERVER_ERROR)
        text = err.message if "(version" in err.message else f"{err.message.rstrip()} (version {self.server.version})"
        self._reply(status, (text + "\n").encode(), query_id, extra={"X-ClickHouse-Exception-Code": str(err.code)})

    def _reply(self, status: HTTPStatus, body: bytes, query_id: str, *, fmt: str | None = None,
               encoding: str | None = None, summary: dict[str, str] | None = None,
               content_type: str = "text/plain; charset=UTF-8", extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream" if fmt in ("Native", "Arrow", "Parquet",
                                                                               "RowBinary") else content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "Keep-Alive")
        self.send_header("Keep-Alive", "timeout=30")
        self.send_header("X-ClickHouse-Server-Display-Name", SERVER_NAME)
        self.send_header("X-ClickHouse-Query-Id", query_id)
        self.send_header("X-ClickHouse-Timezone", "UTC")
        if fmt:
            self.send_header("X-ClickHouse-Format", fmt)
        if encoding:
            self.send_header("Content-Encoding", encoding)
        if summary:
            self.send_header("X-ClickHouse-Summary", json.dumps(summary, separators=(",", ":")))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)


class Server(ThreadingHTTPServer):
    """The threaded HTTP server holding the engine and the users."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], engine: Engine, users: dict[str, User]) -> None:
        """Bind the address; the engine and users are shared by every request."""
        self.engine = engine
        self.users = users
        self.version = "unknown"
        super().__init__(address, Handler)
        try:
            res = engine._session.query("SELECT version()", "TabSeparated")  # noqa: SLF001
            self.version = res.bytes().decode().strip()
        except Exception:  # noqa: BLE001, S110 - the version only decorates error messages
            pass


def main(argv: list[str] | None = None) -> int:
    """Run the server until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--users-file", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--allow-non-loopback", action="store_true",
                        help="bind a non-loopback address (never needed on a developer machine)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    if not is_allowed_host(args.host, args.allow_non_loopback):
        print(f"clickhouse: refusing to bind {args.host}: not a loopback address", file=sys.stderr)
        return 2
    try:
        users = load_users(args.users_file)
    except (OSError, ValueError, KeyError) as exc:
        print(f"clickhouse: cannot read users file {args.users_file}: {type(exc).__name__}", file=sys.stderr)
        return 2
    engine = Engine(args.data_dir)
    try:
        server = Server((args.host, args.port), engine, users)
    except OSError as exc:
        engine.close()
        print(f"clickhouse: cannot bind {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 2

    log.info("serving ClickHouse %s over HTTP on %s:%d, data in %s", server.version, args.host, args.port,
             args.data_dir)
    serve_until_signalled(server, engine.close, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
