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
  ``X-ClickHouse-User``/``X-ClickHouse-Key``; the file is read again when it changes,
  so rotating a password needs no restart;
* ``--tls-cert`` serves https (the local stack's certificate, infra/tls.py).

Each user has a role, what a production server would give it in grants:

* ``readonly`` (dashboards): reads only, enforced by ClickHouse itself (``readonly=1``)
  after a parse check;
* ``pipeline`` (the worker and the ``lintas`` commands): reads and writes rows, the
  grants ``SELECT, INSERT, ALTER UPDATE, ALTER DELETE``: INSERT, the ``ALTER TABLE ...
  DELETE/UPDATE`` mutations of an erasure and lightweight ``DELETE``; no DDL, no
  OPTIMIZE, SYSTEM or KILL, no table function reading outside the database;
* ``migrate`` (``lintas db migrate``, the worker's start): everything.

chDB's engine runs as one user with every grant and has no user directory (``CREATE
USER`` is refused, impersonation is off), and ClickHouse's ``allow_ddl=0`` would also
refuse the mutations an erasure needs; so the pipeline's grants are checked here, on
ClickHouse's own parse of the statement (``formatQuerySingleLine`` of the statement as a
bound value, then ``EXPLAIN AST`` of that), and refusals carry ClickHouse's errors:
``QUERY_IS_PROHIBITED`` (392, what ``allow_ddl=0`` says) for DDL, ``ACCESS_DENIED`` (497)
for the rest. For every user, ``INTO OUTFILE`` and ``FROM INFILE`` are refused as
ClickHouse's HTTP interface refuses them: chDB would read or write the server's files. For
the same reason ``VALUES`` data holds literals only (no ``file(...)`` evaluated in it), and only
the migration user may change the settings that make a format read or write files.

chDB runs one engine per process and its connection is not safe for concurrent
queries, so requests are served by threads but executed one at a time.
Multi-statement requests are refused, as ClickHouse's HTTP interface does.
"""

from __future__ import annotations

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
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import parse_qsl, urlsplit

import lz4.frame
import zstandard
from chdb import session as chdb_session

from infra.serving import LoopbackServer, ReloadedFile, serve_main
from streams.sql import split_statements

log = logging.getLogger("lintas.clickhouse_http")

SERVER_NAME = "lintas-chdb"

# ClickHouse maps these error codes to HTTP statuses (src/Server/HTTP/exceptionCodeToHTTPStatus.cpp); every
# other code is 500: READONLY (164), INTO_OUTFILE_NOT_ALLOWED (358), QUERY_IS_PROHIBITED (392) and
# SETTING_CONSTRAINT_VIOLATION (452) among them.
ERROR_STATUS = {
    **dict.fromkeys((6, 26, 27, 36, 38, 41, 42, 43, 53, 62, 72, 456, 457), HTTPStatus.BAD_REQUEST),
    # UNKNOWN_* (table, db, ..., type of query)
    **dict.fromkeys((46, 47, 50, 56, 60, 63, 73, 78, 81, 115), HTTPStatus.NOT_FOUND),
    194: HTTPStatus.UNAUTHORIZED,  # REQUIRED_PASSWORD
    # UNKNOWN_USER, WRONG_PASSWORD, ACCESS_DENIED, AUTHENTICATION_FAILED
    **dict.fromkeys((192, 193, 497, 516), HTTPStatus.FORBIDDEN),
    210: HTTPStatus.SERVICE_UNAVAILABLE,  # NETWORK_ERROR: here, the server shutting down (a client retries)
    48: HTTPStatus.NOT_IMPLEMENTED,
}
ERROR_NAMES = {1: "UNSUPPORTED_METHOD", 48: "NOT_IMPLEMENTED", 62: "SYNTAX_ERROR", 78: "UNKNOWN_TYPE_OF_QUERY",
               164: "READONLY", 210: "NETWORK_ERROR", 358: "INTO_OUTFILE_NOT_ALLOWED", 392: "QUERY_IS_PROHIBITED",
               452: "SETTING_CONSTRAINT_VIOLATION", 497: "ACCESS_DENIED", 516: "AUTHENTICATION_FAILED"}

Role = Literal["readonly", "pipeline", "migrate"]
ROLES: tuple[Role, ...] = ("readonly", "pipeline", "migrate")

# Statement kinds (root of ClickHouse's AST) a read-only user may run.
READ_KINDS = ("SelectWithUnionQuery", "SelectIntersectExceptQuery", "SelectQuery", "ShowTables", "ShowColumns",
              "ShowCreate", "DescribeQuery", "ExistsTableQuery", "ExistsDatabaseQuery", "ExistsQuery",
              "ExplainQuery", "ShowProcesslist")
# Scalar functions that read outside the database; readonly=1 stops table functions, not these.
FORBIDDEN_READONLY_FUNCTIONS = frozenset({"file", "url", "executable"})

# The pipeline's writes: rows in, and rows deleted or changed (lightweight DELETE needs ClickHouse's ALTER DELETE
# grant too). Its ALTERs may hold these commands only: the mutations `lintas erase` runs.
PIPELINE_WRITE_KINDS = frozenset({"InsertQuery", "DeleteQuery"})
ROW_MUTATIONS = frozenset({"DELETE", "UPDATE"})
# Statement kinds ClickHouse's allow_ddl=0 refuses: schema changes (every ALTER counts, mutations included)
DDL_KINDS = frozenset({"CreateQuery", "DropQuery", "TruncateQuery", "Rename", "UndropQuery", "AttachQuery",
                       "DetachQuery", "AlterQuery", "CreateSQLFunctionQuery", "DropFunctionQuery",
                       "CreateIndexQuery", "DropIndexQuery"})
# Over HTTP without a session, ClickHouse applies SET and USE to their own request only; one chDB session serves
# every user here, so they are answered and not run (a SET would last, for every user).
SESSION_KINDS = frozenset({"Set", "UseQuery"})
# Table functions that read nothing outside the database (lower case); others need source grants (READ ON FILE...)
LOCAL_TABLE_FUNCTIONS = frozenset({"numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series",
                                   "generateseries", "values", "null", "generaterandom"})
# The grant a refused statement kind needs, in ClickHouse's words
_GRANTS = {"OptimizeQuery": "OPTIMIZE", "SYSTEM": "SYSTEM", "KillQueryQuery": "KILL QUERY", "CheckQuery": "CHECK",
           "BackupQuery": "BACKUP", "GrantQuery": "ACCESS MANAGEMENT"}
# Settings that make a format read or write the server's files, or evaluate expressions in INSERT data: only the
# migration user may change them in a query (what a settings constraint in a production profile does).
_PROTECTED_SETTINGS = re.compile(
    r"\b(input_format_values_interpret_expressions|input_format_values_deduce_templates_of_expressions"
    r"|format_template_\w+|format_schema\w*|output_format_schema\w*)\b", re.IGNORECASE)
# The session's defaults: VALUES data holds literals only, so `INSERT ... VALUES (file('/etc/...'))` reads nothing
# (ClickHouse would evaluate such an expression with the server's access to its files).
SESSION_DEFAULTS = ("SET input_format_values_interpret_expressions = 0, "
                    "input_format_values_deduce_templates_of_expressions = 0")

_CODE = re.compile(r"Code: (\d+)\.")
_FORMAT_TAIL = re.compile(r"\bFORMAT\s+([A-Za-z][A-Za-z0-9_]*)\s*;?\s*$", re.IGNORECASE | re.DOTALL)
_VALUES_TAIL = re.compile(r"\bVALUES\s*$", re.IGNORECASE)
_BODY_INSERT = re.compile(
    rb"\s*(INSERT\s.*?(?:\bFORMAT\s+[A-Za-z][A-Za-z0-9_]*|\bVALUES\b))[ \t]*\r?\n?", re.IGNORECASE | re.DOTALL
)
_FUNCTION_NODE = re.compile(r"^\s*Function (\w+)", re.MULTILINE)
_ALTER_COMMAND = re.compile(r"^\s*AlterCommand (\w+)", re.MULTILINE)
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|`(?:[^`\\]|\\.)*`|\"(?:[^\"\\]|\\.)*\"")
_INTO_OUTFILE = re.compile(r"\bINTO\s+OUTFILE\b", re.IGNORECASE)
_FROM_INFILE = re.compile(r"\bFROM\s+INFILE\b", re.IGNORECASE)
# what chDB adds to an error met inside formatQuerySingleLine: the wrapping query, not the client's
_IN_SCOPE = re.compile(r": In scope SELECT formatQuerySingleLine\(.*\)(?=\. \([A-Z_]+\)\s*$)", re.DOTALL)


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
    """A user of the HTTP interface and its role (see the module docstring)."""

    name: str
    password_sha256_hex: str
    role: Role

    @property
    def readonly(self) -> bool:
        """Whether the user may only read."""
        return self.role == "readonly"


def load_users(path: Path) -> dict[str, User]:
    """Read the users file: ``{name: {"password_sha256_hex": ..., "role": "readonly"|"pipeline"|"migrate"}}``.

    A file from before roles has ``"readonly": bool`` only: a read-only user stays one, and a read-write user keeps
    what it had then, everything (``migrate``). A user marked ``"readonly": true`` with another role is refused
    (ValueError), never widened.
    """
    raw = json.loads(path.read_text())
    users: dict[str, User] = {}
    try:
        for name, spec in raw.items():
            legacy = spec.get("readonly")
            role = spec.get("role") or ("readonly" if legacy else "migrate")
            if role not in ROLES:
                raise ValueError(f"user {name!r}: unknown role {role!r}")
            if legacy and role != "readonly":
                raise ValueError(f"user {name!r}: readonly but role {role!r}")
            if "role" not in spec:
                log.warning("users file %s: user %r has no role: %s, as before roles", path, name, role)
            users[str(name)] = User(str(name), str(spec["password_sha256_hex"]).lower(), cast(Role, role))
    except (AttributeError, KeyError, TypeError) as exc:
        raise ValueError(f"users file {path}: not {{name: {{password_sha256_hex, role}}}} ({exc!r})") from None
    return users


class ClickHouseUsers:
    """The users file, read again when it changes, so a rotation needs no restart."""

    def __init__(self, path: Path) -> None:
        """Read the file now: the server never starts with users it cannot read (OSError, ValueError)."""
        self.path = path
        self._file = ReloadedFile(path, load_users, log)

    def get(self, name: str) -> User | None:
        """The user of that name in the file as it is now, or None."""
        return self._file.current().get(name)


MAX_URI = 1 << 20  # ClickHouse's http_max_uri_size
ALLOWED_CACHE = 1024  # statements whose checks are remembered


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


def statement_kind(tree: str) -> str:
    """The root of an ``EXPLAIN AST`` tree: ``SelectWithUnionQuery``, ``InsertQuery``, ``AlterQuery``..."""
    return tree.lstrip().split("\n", 1)[0].split(" ", 1)[0].strip()


def table_functions(tree: str) -> list[str]:
    """Names of the table functions an ``EXPLAIN AST`` tree reads or writes (``FROM f(...)``, ``INTO FUNCTION f``).

    A table function is a ``Function`` node right under a ``TableExpression``, or the target of an INSERT.
    The tree comes as TabSeparated rows, one node each, so no name in it can add a line.
    """
    names: list[str] = []
    path: list[str] = []  # the node text at each depth down to the current line
    for line in tree.split("\n"):
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip(" "))
        node = line.strip()
        del path[depth:]
        parent = path[depth - 1] if 0 < depth <= len(path) else ""
        if node.startswith("Function ") and (
                parent.startswith("TableExpression") or (depth == 1 and parent.startswith("InsertQuery"))):
            names.append(node.split(" ")[1])
        path.extend([""] * (depth - len(path)))
        path.append(node)
    return names


def check_file_access(canonical: str, role: Role) -> None:
    """Refuse what reaches the server's files from a statement's canonical text (ClickHouse's own formatting).

    ``INTO OUTFILE`` and ``FROM INFILE`` for everyone, as ClickHouse's HTTP interface does (chDB would write and
    read the server's files); settings that make a format read or write files, for all but the migration user.
    """
    bare = _QUOTED.sub("''", canonical)  # names and literals cannot look like clauses
    if _INTO_OUTFILE.search(bare):
        raise ClickHouseError.make(358, "INTO OUTFILE is not allowed")
    if _FROM_INFILE.search(bare):
        raise ClickHouseError.make(78, "Query has infile and was send directly to server")
    protected = _PROTECTED_SETTINGS.search(bare) if role != "migrate" else None
    if protected:
        raise ClickHouseError.make(452, f"Setting {protected.group(1)} should not be changed")


def check_pipeline(tree: str, user: str, database: str) -> None:
    """Refuse what the pipeline's grants (SELECT, INSERT, ALTER UPDATE, ALTER DELETE) do not allow.

    DDL gets ClickHouse's ``allow_ddl=0`` refusal (392), anything else outside the grants its missing-grant one
    (497).
    """
    kind = statement_kind(tree)
    commands = set(_ALTER_COMMAND.findall(tree))
    row_mutation = kind == "AlterQuery" and bool(commands) and commands <= ROW_MUTATIONS
    if kind in DDL_KINDS and not row_mutation:
        raise ClickHouseError.make(392, f"Cannot execute query. DDL queries are prohibited for the user {user}")
    if not (row_mutation or kind in READ_KINDS or kind in PIPELINE_WRITE_KINDS or kind in SESSION_KINDS):
        grant = _GRANTS.get(kind)
        if grant:
            raise _access_denied(user, f"{grant} ON {database}.*")
        raise ClickHouseError.make(
            497, f"{user}: Not enough privileges. The pipeline's user reads and writes rows only, not {kind}")
    for name in table_functions(tree):
        if name.lower() not in LOCAL_TABLE_FUNCTIONS:
            raise _access_denied(user, f"READ ON {name.upper()}")
    for name in _FUNCTION_NODE.findall(tree):
        if name.lower() in FORBIDDEN_READONLY_FUNCTIONS:
            raise _access_denied(user, f"READ ON {name.upper()}")


def _access_denied(user: str, grant: str) -> ClickHouseError:
    return ClickHouseError.make(
        497, f"{user}: Not enough privileges. To execute this query, it's necessary to have the grant {grant}")


def _bound_string(text: str) -> str:
    """``text`` as a ``{name:String}`` parameter value: ClickHouse reads those escaped, as TabSeparated does."""
    return (text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
            .replace("\0", "\\0"))


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
        self._session.query(SESSION_DEFAULTS, "TabSeparated")
        self._lock = threading.Lock()
        self._closed = False
        # statements already allowed: the sink sends the same INSERT text batch after batch, and the checks
        # depend on the text and the caller only (parameters never change a statement's shape)
        self._allowed: OrderedDict[tuple[str, Role, str, str], tuple[str, str]] = OrderedDict()

    def close(self) -> None:
        """Close the session so the data directory is left consistent."""
        with self._lock:
            self._closed = True
            self._session.close()

    def execute(self, sql: str, data: bytes | None, database: str, fmt: str, params: dict[str, str],
                role: Role, user: str = "default") -> Result:
        """Run one statement (with INSERT data if given) as ClickHouse's HTTP handler would, within ``role``."""
        if data and not (_FORMAT_TAIL.search(sql) or _VALUES_TAIL.search(sql)):
            # Not an INSERT with data: ClickHouse reads the parameter and the body as one query (checked as one).
            try:
                sql, data = f"{sql} {data.decode()}", None
            except UnicodeDecodeError:
                raise ClickHouseError.make(62, "Query is not valid UTF-8") from None
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
            key = (statement, role, user, database)
            allowed = self._allowed.get(key)
            if allowed is None:
                allowed = self._allowed[key] = self._authorize(statement, params, role, user, database)
                if len(self._allowed) > ALLOWED_CACHE:
                    self._allowed.popitem(last=False)
            kind, statement = allowed
            if kind in SESSION_KINDS:
                result = Result(body=b"", fmt=fmt)
            elif data:
                result = self._insert(statement, data)
            else:
                result = self._query(statement, fmt, params)
        result.elapsed_ns = time.perf_counter_ns() - t0
        return result

    def _authorize(self, statement: str, params: dict[str, str], role: Role, user: str,
                   database: str) -> tuple[str, str]:
        """The statement's kind and the statement to run, or the refusal ``role`` gets.

        ClickHouse formats the statement, passed as a bound value so nothing in it can change the query that
        reads it; the canonical text has no INSERT data (the formatter drops it) and, once checked, no INTO
        OUTFILE, so ``EXPLAIN AST`` of it cannot be made to write a file either.
        """
        try:
            res = self._session.query("SELECT formatQuerySingleLine({q:String})", "RawBLOB",
                                      params={"q": _bound_string(statement)})
        except Exception as exc:  # noqa: BLE001 - chDB raises its own error types
            err = ClickHouseError.from_engine(exc)
            raise ClickHouseError(err.code, _IN_SCOPE.sub("", err.message)) from None
        canonical = res.bytes().decode(errors="replace")
        check_file_access(canonical, role)
        try:
            ast = self._session.query(f"EXPLAIN AST {canonical}", "TabSeparated", params=params or None)
        except Exception as exc:  # noqa: BLE001
            raise ClickHouseError.from_engine(exc) from None
        tree = ast.bytes().decode(errors="replace")
        if role == "readonly":
            return statement_kind(tree), self._readonly_statement(statement, tree)
        if role == "pipeline":
            check_pipeline(tree, user, database)
        return statement_kind(tree), statement

    def _use(self, database: str) -> None:
        try:
            self._session.query(f"USE `{database.replace('`', '')}`", "TabSeparated")
        except Exception as exc:  # noqa: BLE001 - chDB raises its own error types
            raise ClickHouseError.from_engine(exc) from None

    @staticmethod
    def _readonly_statement(statement: str, tree: str) -> str:
        """Refuse anything but a read; hand ClickHouse ``readonly=1`` so it enforces the rest."""
        kind = statement_kind(tree)
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
        else:  # execute() made any other statement with a body one query
            raise ClickHouseError.make(62, "Only an INSERT query may carry data in the request body")
        if not prefix.lstrip().upper().startswith("INSERT"):
            raise ClickHouseError.make(62, "Only an INSERT query may carry data in the request body")
        try:
            inserter = self._session.send_insert(prefix.strip(), fmt)
            inserter.append(data)
            res = inserter.finish()
        except Exception as exc:  # noqa: BLE001
            raise ClickHouseError.from_engine(exc) from None
        return Result(body=b"", fmt=fmt, written_rows=int(res.rows_written), written_bytes=len(data))


class ClickHouseRequestHandler(BaseHTTPRequestHandler):
    """One HTTP/1.1 connection speaking ClickHouse's HTTP interface."""

    protocol_version = "HTTP/1.1"
    server_version = SERVER_NAME
    server: ClickHouseServer

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
            role: Role = "readonly" if self.command == "GET" else user.role  # ClickHouse: GET is read-only
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
            result = self.server.engine.execute(sql, payload, database, fmt, bind, role, user.name)
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


class ClickHouseServer(LoopbackServer):
    """The threaded HTTP server holding the engine and the users."""

    logger = log

    def __init__(self, address: tuple[str, int], engine: Engine, users: ClickHouseUsers) -> None:
        """Bind the address; the engine and users are shared by every request."""
        self.engine = engine
        self.users = users
        self.version = "unknown"
        super().__init__(address, ClickHouseRequestHandler)
        try:
            res = engine._session.query("SELECT version()", "TabSeparated")  # noqa: SLF001
            self.version = res.bytes().decode().strip()
        except Exception:  # noqa: BLE001, S110 - the version only decorates error messages
            pass


def main(argv: list[str] | None = None) -> int:
    """Run the server until SIGTERM or SIGINT."""
    return serve_main(argv, name="clickhouse", description=__doc__.split("\n\n")[0], port=8123, users_required=True,
                      load_users=ClickHouseUsers, open_store=Engine, make_server=ClickHouseServer,
                      banner=lambda server, users: f"serving ClickHouse {server.version}", log=log)


if __name__ == "__main__":
    sys.exit(main())
