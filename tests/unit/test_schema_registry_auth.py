"""Basic auth and TLS on the local schema registry: hashes, the users file, and Confluent's 401 and 40301.

The server runs in this process on a free port, over https with the local CA, with the users file that
``SchemaRegistry.prepare`` writes; clients are built by ``streams.clients.registry`` as the pipeline builds them.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import stat
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from infra import registry_auth
from infra.registry import SchemaRegistry
from infra.registry_auth import RegistryUsers, hash_password, verify_password, write_users_file
from infra.schema_registry import _ROUTE_TABLE, RegistryServer, Store
from infra.serving import serve_tls
from infra.tls import ensure_certificates, server_pem
from streams import clients
from streams.clients import registry_user
from streams.settings import Settings
from streams.topics import Role

SCHEMA = Schema(json.dumps({"type": "record", "name": "AuthProbe", "namespace": "id.lintas.test",
                            "fields": [{"name": "id", "type": "string"}]}), "AVRO")


@dataclass
class Running:
    settings: Settings
    registry: SchemaRegistry
    url: str

    def password(self, access: str) -> str:
        return self.settings.credential("registry", registry_user(access))  # type: ignore[arg-type]

    def client(self, access: str) -> SchemaRegistryClient:
        user = registry_user(access)  # type: ignore[arg-type]
        return SchemaRegistryClient({"url": self.url, "basic.auth.user.info": f"{user}:{self.password(access)}",
                                     "ssl.ca.location": str(self.settings.tls_ca_file)})

    def raw(self, method: str, path: str, authorization: str | None = None,
            body: dict | None = None) -> tuple[int, dict, dict[str, str]]:
        """Status, JSON body and headers of one request (errors included)."""
        request = urllib.request.Request(self.url + path, method=method,
                                         data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Authorization": authorization} if authorization else {})
        context = ssl.create_default_context(cafile=str(self.settings.tls_ca_file))
        try:
            with urllib.request.urlopen(request, timeout=5, context=context) as resp:
                return resp.status, json.loads(resp.read()), dict(resp.headers)
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read()), dict(err.headers)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    """The registry over https with basic auth, prepared as ``lintas stack up`` prepares it."""
    settings = Settings(state_dir=tmp_path, schema_registry_port=_free_port())
    ensure_certificates(settings)
    registry = SchemaRegistry(settings)
    registry.prepare()
    store = Store(registry.root / "registry.sqlite")
    server = RegistryServer((settings.schema_registry_host, settings.schema_registry_port), store,
                    RegistryUsers(registry.users_file))
    serve_tls(server, server_pem(settings))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Running(settings, registry, settings.schema_registry_url)
    finally:
        server.shutdown()
        server.server_close()
        store.close()


def test_password_hash_is_salted_and_verifies_only_its_password() -> None:
    first, second = hash_password("s3cret"), hash_password("s3cret")
    assert first != second and "s3cret" not in first
    assert first.startswith("scrypt$")
    assert verify_password("s3cret", first) and verify_password("s3cret", second)
    assert not verify_password("s3cret ", first)


def test_users_file_holds_hashes_only_with_mode_0600(running: Running) -> None:
    path = running.registry.users_file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    users = json.loads(path.read_text())
    assert {u: spec["access"] for u, spec in users.items()} == {
        registry_user("read"): "read", registry_user("write"): "write", registry_user("admin"): "admin"}
    for access in ("read", "write", "admin"):
        password = running.password(access)
        assert password not in path.read_text()
        assert verify_password(password, users[registry_user(access)]["password_hash"])  # type: ignore[index]
        assert stat.S_IMODE(running.settings.credential_path("registry", registry_user(access)).stat().st_mode) \
            == 0o600


def test_every_route_needs_the_least_access_that_covers_it() -> None:
    for method, path, name, access in _ROUTE_TABLE:
        expected = ("admin" if method == "DELETE" else "write" if name in ("register", "put_config") else "read")
        assert access == expected, (method, path)
    read_posts = {name for method, _path, name, access in _ROUTE_TABLE if method == "POST" and access == "read"}
    assert read_posts == {"lookup", "compatibility", "compatibility_all"}  # they change nothing


@pytest.mark.parametrize("authorization", [
    None,
    "Bearer abc",
    "Basic not-base64!",
    _basic("lintas-registry-admin", "wrong"),
    _basic("nobody", "anything"),
], ids=["none", "not-basic", "malformed", "wrong-password", "unknown-user"])
def test_missing_or_wrong_credentials_get_confluents_401(running: Running, authorization: str | None) -> None:
    status, body, headers = running.raw("GET", "/subjects", authorization)
    assert status == 401
    assert body == {"error_code": 401, "message": "Unauthorized"}
    assert headers["WWW-Authenticate"] == 'Basic realm="lintas-registry"'


def test_unknown_path_is_401_before_404(running: Running) -> None:
    assert running.raw("GET", "/no/such/path")[0] == 401
    read = _basic(registry_user("read"), running.password("read"))
    assert running.raw("GET", "/no/such/path", read)[1]["error_code"] == 404


def test_read_user_reads_looks_up_and_checks_but_cannot_write(running: Running) -> None:
    running.client("write").register_schema("probe-value", SCHEMA)
    reader = running.client("read")
    assert reader.get_subjects() == ["probe-value"]
    assert reader.lookup_schema("probe-value", SCHEMA).version == 1
    assert reader.test_compatibility("probe-value", SCHEMA) is True
    assert reader.get_compatibility() == "BACKWARD"

    # another subject: the client answers a registration it has already looked up from its cache
    for subject, write in (("other-value", lambda: reader.register_schema("other-value", SCHEMA)),
                           ("probe-value", lambda: reader.set_compatibility("probe-value", "FULL"))):
        with pytest.raises(SchemaRegistryError) as refused:
            write()
        assert (refused.value.http_status_code, refused.value.error_code) == (403, 40301)
        assert refused.value.error_message == f"User is denied operation Write on Subject: {subject}"
    with pytest.raises(SchemaRegistryError) as refused:
        reader.set_compatibility(level="NONE")
    assert refused.value.error_message == "User is denied operation Write on Subject: __GLOBAL"


def test_write_user_registers_and_configures_but_cannot_delete(running: Running) -> None:
    writer = running.client("write")
    assert writer.register_schema("probe-value", SCHEMA) > 0
    assert writer.set_compatibility("probe-value", "FULL") == {"compatibility": "FULL"}
    assert writer.set_compatibility(level="FORWARD") == {"compatibility": "FORWARD"}
    for delete in (lambda: writer.delete_subject("probe-value"), lambda: writer.delete_version("probe-value", 1)):
        with pytest.raises(SchemaRegistryError) as refused:
            delete()
        assert (refused.value.http_status_code, refused.value.error_code) == (403, 40301)
        assert refused.value.error_message == "User is denied operation Delete on Subject: probe-value"
    status, body, _ = running.raw("DELETE", "/config/probe-value", _basic(registry_user("write"),
                                                                           running.password("write")))
    assert (status, body["error_code"]) == (403, 40301)


def test_admin_deletes(running: Running) -> None:
    admin = running.client("admin")
    admin.register_schema("probe-value", SCHEMA)
    admin.set_compatibility("probe-value", "FULL")
    assert running.raw("DELETE", "/config/probe-value", _basic(registry_user("admin"), running.password("admin")))[1] \
        == {"compatibilityLevel": "FULL"}
    assert admin.delete_version("probe-value", 1) == 1
    assert admin.get_subjects() == []


def test_the_pipelines_own_clients_get_their_roles_access(running: Running) -> None:
    # streams.clients.registry is how every command reaches the registry: https, the CA, its role's user
    clients.registry(running.settings, Role.WORKER).register_schema("probe-value", SCHEMA)
    ops = clients.registry(running.settings, Role.OPS)
    assert ops.get_subjects() == ["probe-value"]
    with pytest.raises(SchemaRegistryError) as refused:
        ops.register_schema("other-value", SCHEMA)
    assert refused.value.error_code == 40301


def test_health_probe_authenticates_over_https(running: Running) -> None:
    assert running.registry.process().healthy()
    assert "--users-file" in running.registry.process().command
    open_registry = SchemaRegistry(Settings(state_dir=running.settings.state_dir, secure=False))
    assert "--users-file" not in open_registry.process().command
    assert "--tls-cert" not in open_registry.process().command


def test_rotation_applies_without_restart(running: Running) -> None:
    before = running.client("admin")
    assert before.get_subjects() == []
    old = running.password("admin")
    running.registry.rotate()
    assert running.password("admin") != old
    running.client("read")  # the new credentials are read from the secrets, as clients read them
    assert running.raw("GET", "/subjects", _basic(registry_user("admin"), old))[0] == 401
    assert running.raw("GET", "/subjects", _basic(registry_user("admin"), running.password("admin")))[0] == 200
    assert running.registry.process().healthy()


def test_a_verified_password_is_hashed_once(running: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = registry_auth.verify_password
    monkeypatch.setattr(registry_auth, "verify_password", lambda pw, h: calls.append(h) or real(pw, h))
    read = _basic(registry_user("read"), running.password("read"))
    for _ in range(3):
        assert running.raw("GET", "/subjects", read)[0] == 200
    assert len(calls) == 1
    for _ in range(2):  # a wrong password is never cached
        assert running.raw("GET", "/subjects", _basic(registry_user("read"), "wrong"))[0] == 401
    assert len(calls) == 3


def test_an_unreadable_rewrite_keeps_the_users_read_before(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    write_users_file(path, {"u": ("pw", "read")})
    users = RegistryUsers(path)
    assert users.authenticate(_basic("u", "pw")) == ("u", "read")
    path.write_text("{not json")
    os.utime(path, ns=(1, 1))
    assert users.authenticate(_basic("u", "pw")) == ("u", "read")
    write_users_file(path, {"u": ("new", "write")})
    assert users.authenticate(_basic("u", "pw")) is None
    assert users.authenticate(_basic("u", "new")) == ("u", "write")


def test_server_refuses_a_bad_users_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from infra.schema_registry import main

    bad = tmp_path / "users.json"
    bad.write_text(json.dumps({"u": {"password_hash": "plain", "access": "read"}}))
    assert main(["--data-dir", str(tmp_path), "--port", str(_free_port()), "--users-file", str(bad)]) == 2
    assert "cannot read users file" in capsys.readouterr().err


def test_plain_http_to_the_https_registry_is_refused_and_logged_in_one_line(
        running: Running, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    plain = running.url.replace("https://", "http://")
    with caplog.at_level("INFO", logger="lintas.schema_registry"), pytest.raises((urllib.error.URLError, OSError)):
        urllib.request.urlopen(f"{plain}/subjects", timeout=5)  # noqa: S310 - loopback
    deadline = time.monotonic() + 5
    while "dropped" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "connection from 127.0.0.1 dropped: SSLError" in caplog.text
    assert "Traceback" not in capsys.readouterr().err  # socketserver's default prints one per such client
