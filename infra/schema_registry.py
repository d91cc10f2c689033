"""The smallest Confluent-compatible schema registry: the REST calls confluent-kafka and kcat make.

Apicurio Registry could not be assembled from Maven Central on these machines
(docs/architecture.md says what was tried), and Confluent's registry is not published
there, so the local stack runs this one. It is a stand-in behind a URL setting
(``LINTAS_SCHEMA_REGISTRY_EXTERNAL_URL``): a real registry plugs in unchanged.

What it implements, with Confluent's paths, bodies and error codes:

* ``POST /subjects/{s}/versions`` register (idempotent; ids are global per schema text),
  ``POST /subjects/{s}`` look up, ``GET /subjects[/{s}/versions[/{v}|latest[/schema]]]``,
  ``DELETE /subjects/{s}[/versions/{v}]`` (soft: ids stay resolvable, as in Confluent);
* ``GET /schemas/ids/{id}[/schema|/versions]``, ``GET /schemas/types``;
* ``GET|PUT|DELETE /config[/{s}]`` and ``POST /compatibility/subjects/{s}/versions/{v}``,
  with every level: NONE, BACKWARD, FORWARD, FULL and their ``_TRANSITIVE`` forms,
  checked by Apache Avro's own reader/writer compatibility checker.

Avro only. Schemas live in SQLite in the state directory, so ids survive restarts.

With ``--users-file`` every request needs HTTP basic auth (``registry_auth``) and each route an
access level: ``read`` for every GET, a lookup and a compatibility check; ``write`` to register or
set a compatibility level; ``admin`` to delete. ``--tls-cert`` serves https. Refusals use
Confluent's answers: 401 ``Unauthorized`` with ``WWW-Authenticate``, and RBAC's 403 / 40301.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import sys
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import avro.errors
import avro.schema

from infra.registry_auth import Access, RegistryUsers, allows
from infra.serving import LoopbackServer, serve_main
from schemas.compatibility import LEVELS, incompatibilities

log = logging.getLogger("lintas.schema_registry")

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"

DEFAULT_LEVEL = "BACKWARD"  # Confluent's default

REALM = "lintas-registry"
GLOBAL_SUBJECT = "__GLOBAL"  # Confluent's name for the registry-wide config, in a refusal's message


class RegistryError(Exception):
    """A Confluent-style error: HTTP status, ``error_code`` and message."""

    def __init__(self, status: int, error_code: int, message: str) -> None:
        """Keep what the client will see."""
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message


def subject_not_found(subject: str) -> RegistryError:
    """Confluent's 40401."""
    return RegistryError(404, 40401, f"Subject '{subject}' not found.")


def version_not_found(version: object) -> RegistryError:
    """Confluent's 40402."""
    return RegistryError(404, 40402, f"Version {version} not found.")


def schema_not_found() -> RegistryError:
    """Confluent's 40403."""
    return RegistryError(404, 40403, "Schema not found")


def unauthorized() -> RegistryError:
    """Confluent's 401: no credentials, or wrong ones."""
    return RegistryError(401, 401, "Unauthorized")


def denied(needed: Access, subject: str | None) -> RegistryError:
    """Confluent RBAC's 40301: authenticated, but not allowed this operation."""
    operation = "Delete" if needed == "admin" else "Write"
    return RegistryError(403, 40301, f"User is denied operation {operation} on Subject: {subject or GLOBAL_SUBJECT}")


def parse_avro(schema_str: str) -> avro.schema.Schema:
    """Parse an Avro schema or raise Confluent's 42201 (invalid schema)."""
    try:
        return avro.schema.parse(schema_str)
    except (avro.errors.AvroException, json.JSONDecodeError, TypeError, ValueError) as exc:
        raise RegistryError(422, 42201, f"Invalid schema: {exc}") from None


class Store:
    """Subjects, versions, schemas and config in one SQLite file."""

    def __init__(self, path: Path) -> None:
        """Open or create the database."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._lock = threading.Lock()
        self._db.executescript("""
            CREATE TABLE IF NOT EXISTS schemas (
                id INTEGER PRIMARY KEY, schema_type TEXT NOT NULL, canonical TEXT NOT NULL, schema TEXT NOT NULL,
                UNIQUE (schema_type, canonical));
            CREATE TABLE IF NOT EXISTS versions (
                subject TEXT NOT NULL, version INTEGER NOT NULL, schema_id INTEGER NOT NULL REFERENCES schemas(id),
                deleted INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (subject, version));
            CREATE TABLE IF NOT EXISTS config (subject TEXT PRIMARY KEY, compatibility TEXT NOT NULL);
        """)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def _q(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        return self._db.execute(sql, args).fetchall()

    def subjects(self, deleted: bool = False) -> list[str]:
        """Subjects with at least one live version."""
        cond = "" if deleted else "WHERE deleted = 0"
        return [r[0] for r in self._q(f"SELECT DISTINCT subject FROM versions {cond} ORDER BY subject")]  # noqa: S608

    def versions(self, subject: str, deleted: bool = False) -> list[int]:
        """Version numbers of a subject, or 40401."""
        cond = "" if deleted else "AND deleted = 0"
        rows = self._q(f"SELECT version FROM versions WHERE subject = ? {cond} ORDER BY version", subject)  # noqa: S608
        if not rows:
            raise subject_not_found(subject)
        return [r[0] for r in rows]

    def version(self, subject: str, version: str) -> dict[str, Any]:
        """One version (a number or ``latest``) as Confluent returns it."""
        versions = self.versions(subject)
        if version in ("latest", "-1"):
            number = versions[-1]
        else:
            try:
                number = int(version)
            except ValueError:
                raise RegistryError(422, 42202, "The specified version is not a valid version id.") from None
            if number not in versions:
                raise version_not_found(version)
        (schema_id,) = self._q("SELECT schema_id FROM versions WHERE subject = ? AND version = ?", subject, number)[0]
        return self._describe(subject, number, schema_id)

    def _describe(self, subject: str, version: int, schema_id: int) -> dict[str, Any]:
        schema_type, schema = self._q("SELECT schema_type, schema FROM schemas WHERE id = ?", schema_id)[0]
        out: dict[str, Any] = {"subject": subject, "version": version, "id": schema_id, "schema": schema}
        if schema_type != "AVRO":
            out["schemaType"] = schema_type
        return out

    def schema_by_id(self, schema_id: int) -> dict[str, Any]:
        """``{"schema": ...}`` for an id, or 40403."""
        rows = self._q("SELECT schema_type, schema FROM schemas WHERE id = ?", schema_id)
        if not rows:
            raise schema_not_found()
        out: dict[str, Any] = {"schema": rows[0][1]}
        if rows[0][0] != "AVRO":
            out["schemaType"] = rows[0][0]
        return out

    def subjects_of_id(self, schema_id: int) -> list[dict[str, Any]]:
        """Subject-version pairs that use a schema id."""
        self.schema_by_id(schema_id)
        return [{"subject": s, "version": v} for s, v in self._q(
            "SELECT subject, version FROM versions WHERE schema_id = ? AND deleted = 0 ORDER BY subject, version",
            schema_id)]

    def compatibility(self, subject: str | None, fallback: bool = True) -> str | None:
        """The subject's level, else (with fallback) the global one."""
        rows = self._q("SELECT compatibility FROM config WHERE subject = ?", subject or "")
        if rows:
            return str(rows[0][0])
        if subject and fallback:
            return self.compatibility(None)
        return DEFAULT_LEVEL if not subject else None

    def set_compatibility(self, subject: str | None, level: str) -> None:
        """Set a level, globally or per subject."""
        if level not in LEVELS:
            raise RegistryError(422, 42203, f"Invalid compatibility level {level!r}; valid: {', '.join(LEVELS)}")
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO config VALUES (?, ?)", (subject or "", level))

    def delete_compatibility(self, subject: str | None) -> str:
        """Remove a level (back to the default); returns the old one."""
        old = self.compatibility(subject, fallback=True) or DEFAULT_LEVEL
        with self._lock:
            self._db.execute("DELETE FROM config WHERE subject = ?", (subject or "",))
        return old

    def _live_schemas(self, subject: str) -> list[tuple[int, int, avro.schema.Schema]]:
        rows = self._q(
            "SELECT v.version, s.id, s.schema FROM versions v JOIN schemas s ON s.id = v.schema_id "
            "WHERE v.subject = ? AND v.deleted = 0 ORDER BY v.version", subject)
        return [(version, sid, avro.schema.parse(text)) for version, sid, text in rows]

    def register(self, subject: str, schema_str: str, schema_type: str) -> int:
        """Register under a subject (idempotent) after the compatibility check; returns the global id."""
        if schema_type != "AVRO":
            raise RegistryError(422, 42201, f"Schema type {schema_type} is not supported by this registry (AVRO only)")
        parsed = parse_avro(schema_str)
        canonical = parsed.canonical_form
        with self._lock:
            live = self._live_schemas(subject)
            for _version, sid, schema in live:
                if schema.canonical_form == canonical:
                    return sid
            problems = incompatibilities(parsed, [s for _, _, s in live], self.compatibility(subject) or DEFAULT_LEVEL)
            if problems:
                raise RegistryError(409, 409, "Schema being registered is incompatible with an earlier schema for "
                                    f"subject \"{subject}\": " + " | ".join(problems))
            rows = self._q("SELECT id FROM schemas WHERE schema_type = ? AND canonical = ?", schema_type, canonical)
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if rows:
                    sid = int(rows[0][0])
                else:
                    normalised = json.dumps(parsed.to_json(), separators=(",", ":"))
                    sid = int(self._db.execute("INSERT INTO schemas (schema_type, canonical, schema) VALUES (?, ?, ?)",
                                               (schema_type, canonical, normalised)).lastrowid or 0)
                (last,) = self._db.execute("SELECT coalesce(max(version), 0) FROM versions WHERE subject = ?",
                                           (subject,)).fetchone()
                self._db.execute("INSERT INTO versions (subject, version, schema_id) VALUES (?, ?, ?)",
                                 (subject, last + 1, sid))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return sid

    def lookup(self, subject: str, schema_str: str) -> dict[str, Any]:
        """The version of a subject holding this schema, or 40401/40403."""
        canonical = parse_avro(schema_str).canonical_form
        self.versions(subject)
        for version, sid, schema in self._live_schemas(subject):
            if schema.canonical_form == canonical:
                return self._describe(subject, version, sid)
        raise schema_not_found()

    def check(self, subject: str, version: str, schema_str: str) -> list[str]:
        """Compatibility of a candidate against one version (or latest) under the subject's level."""
        parsed = parse_avro(schema_str)
        level = self.compatibility(subject) or DEFAULT_LEVEL
        try:
            live = self._live_schemas(subject)
        except RegistryError:
            live = []
        if not live:
            return []
        if version not in ("latest", "-1"):
            target = self.version(subject, version)["version"]
            live = [row for row in live if row[0] <= target]
        return incompatibilities(parsed, [s for _, _, s in live], level)

    def delete(self, subject: str, version: str | None) -> Any:
        """Soft-delete a subject (all versions) or one version; ids stay resolvable."""
        with self._lock:
            if version is None:
                versions = self.versions(subject)
                self._db.execute("UPDATE versions SET deleted = 1 WHERE subject = ?", (subject,))
                return versions
            number = self.version(subject, version)["version"]
            self._db.execute("UPDATE versions SET deleted = 1 WHERE subject = ? AND version = ?", (subject, number))
            return number


# (method, path, handler, access it needs): read changes nothing, write adds, admin deletes.
_ROUTE_TABLE: list[tuple[str, str, str, Access]] = [
    ("GET", r"^/?$", "root", "read"),
    ("GET", r"^/subjects/?$", "subjects", "read"),
    ("GET", r"^/subjects/(?P<s>[^/]+)/versions/?$", "versions", "read"),
    ("POST", r"^/subjects/(?P<s>[^/]+)/versions/?$", "register", "write"),
    ("POST", r"^/subjects/(?P<s>[^/]+)/?$", "lookup", "read"),
    ("DELETE", r"^/subjects/(?P<s>[^/]+)/?$", "delete_subject", "admin"),
    ("GET", r"^/subjects/(?P<s>[^/]+)/versions/(?P<v>[^/]+)/?$", "version", "read"),
    ("GET", r"^/subjects/(?P<s>[^/]+)/versions/(?P<v>[^/]+)/schema/?$", "version_schema", "read"),
    ("DELETE", r"^/subjects/(?P<s>[^/]+)/versions/(?P<v>[^/]+)/?$", "delete_version", "admin"),
    ("GET", r"^/schemas/ids/(?P<id>\d+)/?$", "schema_id", "read"),
    ("GET", r"^/schemas/ids/(?P<id>\d+)/schema/?$", "schema_id_raw", "read"),
    ("GET", r"^/schemas/ids/(?P<id>\d+)/versions/?$", "schema_id_versions", "read"),
    ("GET", r"^/schemas/types/?$", "types", "read"),
    ("GET", r"^/config/?$", "get_config", "read"),
    ("PUT", r"^/config/?$", "put_config", "write"),
    ("GET", r"^/config/(?P<s>[^/]+)/?$", "get_config", "read"),
    ("PUT", r"^/config/(?P<s>[^/]+)/?$", "put_config", "write"),
    ("DELETE", r"^/config/(?P<s>[^/]+)/?$", "delete_config", "admin"),
    ("POST", r"^/compatibility/subjects/(?P<s>[^/]+)/versions/(?P<v>[^/]+)/?$", "compatibility", "read"),
    ("POST", r"^/compatibility/subjects/(?P<s>[^/]+)/versions/?$", "compatibility_all", "read"),
]
_ROUTES = [(method, re.compile(path), name, access) for method, path, name, access in _ROUTE_TABLE]


class RegistryRequestHandler(BaseHTTPRequestHandler):
    """Confluent Schema Registry REST API over HTTP/1.1."""

    protocol_version = "HTTP/1.1"
    server_version = "lintas-schema-registry"
    server: RegistryServer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Request lines at debug level only."""
        log.debug("%s %s", self.command, urlsplit(self.path).path)

    def do_GET(self) -> None:  # noqa: N802
        """Dispatch a GET."""
        self._dispatch()

    def do_POST(self) -> None:  # noqa: N802
        """Dispatch a POST."""
        self._dispatch()

    def do_PUT(self) -> None:  # noqa: N802
        """Dispatch a PUT."""
        self._dispatch()

    def do_DELETE(self) -> None:  # noqa: N802
        """Dispatch a DELETE."""
        self._dispatch()

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            granted = self._authenticate()
            for method, pattern, name, needed in _ROUTES:
                match = pattern.match(url.path)
                if match and method == self.command:
                    args = {k: unquote(v) for k, v in match.groupdict().items()}
                    if granted is not None and not allows(granted, needed):
                        log.info("403: %s %s denied to %s access", self.command, url.path, granted)
                        raise denied(needed, args.get("s"))
                    body = json.loads(raw) if raw else {}
                    if not isinstance(body, dict):
                        raise RegistryError(422, 42201, "Request body must be a JSON object")
                    status, payload = getattr(self, f"_{name}")(args, body, query)
                    self._send(status, payload)
                    return
            raise RegistryError(404, 404, "HTTP 404 Not Found")
        except RegistryError as err:
            challenge = {"WWW-Authenticate": f'Basic realm="{REALM}"'} if err.status == 401 else {}
            self._send(err.status, {"error_code": err.error_code, "message": err.message}, challenge)
        except json.JSONDecodeError:
            self._send(400, {"error_code": 400, "message": "Unrecognized JSON in request body"})
        except Exception:  # noqa: BLE001 - every failure must reach the client as a registry error
            log.exception("internal error")
            self._send(500, {"error_code": 50001, "message": "Error in the backend data store"})

    def _authenticate(self) -> Access | None:
        """The caller's access level; None if the registry is open (no users file); 401 if not proven."""
        if self.server.users is None:
            return None
        found = self.server.users.authenticate(self.headers.get("Authorization"))
        if found is None:
            log.info("401: %s %s", self.command, urlsplit(self.path).path)  # never the header: it holds a password
            raise unauthorized()
        return found[1]

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    # Routes: each returns (status, JSON payload).
    def _root(self, a: dict, b: dict, q: dict) -> tuple[int, Any]:
        return 200, {}

    def _subjects(self, a: dict, b: dict, q: dict) -> tuple[int, Any]:
        return 200, self.server.store.subjects(deleted=q.get("deleted") == "true")

    def _versions(self, a: dict, b: dict, q: dict) -> tuple[int, Any]:
        return 200, self.server.store.versions(a["s"], deleted=q.get("deleted") == "true")

    def _register(self, a: dict, b: dict, q: dict) -> tuple[int, Any]:
        if "schema" not in b:
            raise RegistryError(422, 42201, "Missing field: schema")
        if b.get("references"):
            raise RegistryError(422, 42201, "Schema references are not supported by this registry")
        return 200, {"id": self.server.store.register(a["s"], b["schema"], b.get("schemaType", "AVRO"))}

    def _lookup(self, a: dict, b: dict, q: dict) -> tuple[int, Any]:
        if "schema" not in b:
            raise RegistryError(422, 42201, "Missing field: schema")
        return 200, self.server.store.lookup(a["s"], b["schema"])

    def _delete_subject(self, a: dict, b: dict, q: dict) -> tuple[int, Any]:
        return 200, self.server.store.delete(a["s"], None)

    def _version(self, a: dict, b: dict, q: dict) -> tuple[int, Any]:
        return 200, self.server.store.version(a["s"], a["v"])

    def _version_schema(self, a: dict, b: dict, q: dict) -> tuple[int, Any]:
        return 200, json.loads(self.server.store.version(a["s"], a["v"])["schema"])

    def _delete_version(self, a: dict, b: dict, q: dict) -> tuple[int, Any]:
        return 200, self.server.store.delete(a["s"], a["v"])

    def _schema_id(self, a: dict, b: dict, q: dict) -> tuple[int, Any]:
        return 200, self.server.store.schema_by_id(int(a["id"]))

    def _schema_id_raw(self, a: dict, b: dict, q: dict) -> tuple[int, Any]:
        return 200, json.loads(self.server.store.schema_by_id(int(a["id"]))["schema"])

    def _schema_id_versions(self, a: dict, b: dict, q: dict) -> tuple[int, Any]:
        return 200, self.server.store.subjects_of_id(int(a["id"]))

    def _types(self, a: dict, b: dict, q: dict) -> tuple[int, Any]:
        return 200, ["AVRO"]

    def _get_config(self, a: dict, b: dict, q: dict) -> tuple[int, Any]:
        subject = a.get("s")
        level = self.server.store.compatibility(subject, fallback=q.get("defaultToGlobal") == "true")
        if level is None:
            raise RegistryError(404, 40408, f"Subject '{subject}' does not have subject-level compatibility configured")
        return 200, {"compatibilityLevel": level}

    def _put_config(self, a: dict, b: dict, q: dict) -> tuple[int, Any]:
        level = str(b.get("compatibility", "")).upper()
        self.server.store.set_compatibility(a.get("s"), level)
        return 200, {"compatibility": level}

    def _delete_config(self, a: dict, b: dict, q: dict) -> tuple[int, Any]:
        return 200, {"compatibilityLevel": self.server.store.delete_compatibility(a["s"])}

    def _compatibility(self, a: dict, b: dict, q: dict) -> tuple[int, Any]:
        if "schema" not in b:
            raise RegistryError(422, 42201, "Missing field: schema")
        problems = self.server.store.check(a["s"], a.get("v", "latest"), b["schema"])
        out: dict[str, Any] = {"is_compatible": not problems}
        if q.get("verbose") == "true":
            out["messages"] = problems
        return 200, out

    def _compatibility_all(self, a: dict, b: dict, q: dict) -> tuple[int, Any]:
        return self._compatibility({**a, "v": "latest"}, b, q)


class RegistryServer(LoopbackServer):
    """The registry's HTTP server."""

    logger = log

    def __init__(self, address: tuple[str, int], store: Store, users: RegistryUsers | None = None) -> None:
        """Bind and keep the store; with ``users``, every request must authenticate."""
        self.store = store
        self.users = users
        super().__init__(address, RegistryRequestHandler)


def main(argv: list[str] | None = None) -> int:
    """Run the registry until SIGTERM or SIGINT."""
    return serve_main(argv, name="registry", description=__doc__.split("\n\n")[0], port=8081, users_required=False,
                      load_users=RegistryUsers, open_store=lambda data: Store(data / "registry.sqlite"),
                      make_server=RegistryServer, log=log, banner=lambda server, users: "schema registry, "
                      + ("basic auth" if users else "open: no users file"))


if __name__ == "__main__":
    sys.exit(main())
