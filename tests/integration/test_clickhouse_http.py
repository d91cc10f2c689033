"""The chDB HTTP adapter against the real clickhouse-connect clients (sync and async), over https, as each role."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from infra.serving import http_ok
from infra.tls import ensure_certificates, server_pem
from streams.settings import Settings
from tests.conftest import REPO

pytestmark = pytest.mark.integration

# throwaway test credentials: the pipeline's, the dashboards' (read-only) and the migration user's
PASSWORD, RO_PASSWORD, MIGRATE_PASSWORD = "adapter-test-pw", "adapter-test-ro", "adapter-test-mg"  # noqa: S105
USERS = {"lintas": (PASSWORD, "pipeline"), "grafana": (RO_PASSWORD, "readonly"),
         "lintas_migrate": (MIGRATE_PASSWORD, "migrate")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Adapter:
    """The adapter as its own process, serving https with a certificate of the local stack's kind."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = _free_port()
        self.tls = Settings(state_dir=root / "state")
        ensure_certificates(self.tls)
        self.ca = self.tls.tls_ca_file
        self.users_file = root / "users.json"
        self.write_users(USERS)
        self.proc: subprocess.Popen[bytes] | None = None

    def write_users(self, users: dict[str, tuple[str, str]]) -> None:
        """Replace the users file at once, as LocalClickHouse does (the server reads it again when it changes)."""
        tmp = self.root / ".users.json.tmp"
        tmp.write_text(json.dumps({name: {"password_sha256_hex": hashlib.sha256(pw.encode()).hexdigest(), "role": role}
                                   for name, (pw, role) in users.items()}))
        os.replace(tmp, self.users_file)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "infra.clickhouse_http", "--data-dir", str(self.root / "data"),
             "--users-file", str(self.users_file), "--port", str(self.port), "--tls-cert", str(server_pem(self.tls))],
            cwd=REPO, stdout=open(self.root / "log", "ab"), stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if http_ok(f"{self.url}/ping", self.ca, b"Ok.\n"):
                    return
            except OSError:
                time.sleep(0.2)
        raise AssertionError((self.root / "log").read_text())

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.terminate()
        assert self.proc.wait(30) == 0

    def client(self, user: str = "lintas", password: str = PASSWORD, **kw: Any) -> Any:
        """A client as the pipeline's user unless told otherwise, over https trusting the test CA."""
        return clickhouse_connect.get_client(host="127.0.0.1", port=self.port, username=user, password=password,
                                             secure=True, verify=True, ca_cert=str(self.ca), **kw)

    def migrator(self, **kw: Any) -> Any:
        """A client as the migration user: the one that may change the schema."""
        return self.client("lintas_migrate", MIGRATE_PASSWORD, **kw)


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Adapter]:
    a = Adapter(tmp_path_factory.mktemp("chdb-http"))
    a.start()
    yield a
    if a.proc and a.proc.poll() is None:
        a.stop()


def _rows(n: int, version: int = 1) -> list[tuple[int, str, int]]:
    return [(i, f"s{i % 97}", version) for i in range(n)]


@pytest.mark.parametrize("compression", ["lz4", "zstd", False])
def test_native_insert_100k_rows_each_compression(adapter: Adapter, compression: str | bool) -> None:
    client = adapter.client(compress=compression)
    table = f"ins_{compression or 'plain'}"
    adapter.migrator().command(
        f"CREATE TABLE {table} (id UInt64, s String, v UInt32) ENGINE = ReplacingMergeTree(v) ORDER BY id")
    summary = client.insert(table, _rows(100_000), column_names=["id", "s", "v"])
    assert summary.written_rows == 100_000
    client.insert(table, _rows(500, version=2), column_names=["id", "s", "v"])
    assert client.query(f"SELECT count() FROM {table}").result_rows == [(100_500,)]
    assert client.query(f"SELECT count(), sum(v) FROM {table} FINAL").result_rows == [(100_000, 100_500)]


def test_parameters_client_and_server_side(adapter: Adapter) -> None:
    client = adapter.client()
    assert client.query("SELECT %(a)s + 1", parameters={"a": 41}).result_rows == [(42,)]
    assert client.query("SELECT {x:UInt32} * 2, {s:String}", parameters={"x": 21, "s": "o'k"}).result_rows == [(42, "o'k")]


def test_long_bound_parameters_sent_form_encoded_are_served(adapter: Adapter) -> None:
    """clickhouse-connect moves bound parameters longer than 4 KB from the URL into a multipart form."""
    import uuid

    client = adapter.client()
    ids = [str(uuid.uuid4()) for _ in range(10_000)]
    assert client.query("SELECT length({a:Array(String)}), {a:Array(String)}[10000]", parameters={"a": ids}
                        ).result_rows == [(10_000, ids[-1])]
    adapter.migrator().command("CREATE TABLE form_t (id String, n UInt32) ENGINE = MergeTree ORDER BY id")
    client.insert("form_t", [(i, n) for n, i in enumerate(ids * 10)], column_names=["id", "n"])  # 100,000 rows
    assert client.query("SELECT count(), uniqExact(id) FROM form_t WHERE id IN {a:Array(String)}",
                        parameters={"a": ids[:5000]}).result_rows == [(50_000, 5_000)]
    ro = adapter.client(user="grafana", password=RO_PASSWORD)
    with pytest.raises(DatabaseError) as err:  # the read-only user stays read-only through a form, too
        ro.command("INSERT INTO form_t SELECT arrayJoin({a:Array(String)}), 1", parameters={"a": ids})
    assert err.value.code in (164, 497)


def test_arrow_and_dataframe_results(adapter: Adapter) -> None:
    client = adapter.client()
    assert client.query_arrow("SELECT number AS n FROM numbers(5)").column("n").to_pylist() == [0, 1, 2, 3, 4]
    assert client.query_df("SELECT number AS n FROM numbers(3)")["n"].tolist() == [0, 1, 2]


def test_errors_carry_clickhouse_codes(adapter: Adapter) -> None:
    client = adapter.client()
    cases = {"SELEC 1": 62, "SELECT * FROM no_such_table": 60, "SELECT no_such_fn(1)": 46,
             "SELECT 1; SELECT 2": 62}
    for sql, code in cases.items():
        with pytest.raises(DatabaseError) as err:
            client.query(sql)
        assert err.value.code == code, sql
        assert f"Code: {code}" in str(err.value)


def test_wrong_password_is_516(adapter: Adapter) -> None:
    with pytest.raises(DatabaseError) as err:
        adapter.client(password="wrong")  # noqa: S106
    assert err.value.code == 516
    with pytest.raises(DatabaseError) as err:
        adapter.client(user="nobody")
    assert err.value.code == 516


def test_readonly_user_reads_only(adapter: Adapter) -> None:
    adapter.migrator().command("CREATE TABLE IF NOT EXISTS ro_t (x UInt8) ENGINE = MergeTree ORDER BY x")
    admin = adapter.client()
    admin.insert("ro_t", [(1,), (2,)], column_names=["x"])
    ro = adapter.client(user="grafana", password=RO_PASSWORD)
    assert ro.query("SELECT sum(x) FROM ro_t").result_rows == [(3,)]
    assert ro.query("SELECT sum(x) FROM ro_t WHERE x > {m:UInt8}", parameters={"m": 1}).result_rows == [(2,)]
    refused = [
        "INSERT INTO ro_t VALUES (9)", "DROP TABLE ro_t", "CREATE TABLE z (x UInt8) ENGINE = Memory",
        "SELECT * FROM file('/etc/hostname', 'LineAsString')", "SELECT file('/etc/hostname')",
        "SELECT 1 SETTINGS readonly = 0", "/* hi */ ALTER TABLE ro_t DELETE WHERE 1", "SELECT 1; DROP TABLE ro_t",
    ]
    for sql in refused:
        with pytest.raises(DatabaseError) as err:
            ro.command(sql)
        assert err.value.code in (164, 62), sql
    with pytest.raises(DatabaseError) as err:
        ro.insert("ro_t", [(5,)], column_names=["x"])
    assert err.value.code == 164
    assert admin.query("SELECT count() FROM ro_t").result_rows == [(2,)]


def test_concurrent_clients(adapter: Adapter) -> None:
    adapter.migrator().command("CREATE TABLE conc (w UInt8, i UInt32) ENGINE = MergeTree ORDER BY (w, i)")
    errors: list[BaseException] = []

    def worker(w: int) -> None:
        try:
            client = adapter.client()
            for batch in range(5):
                client.insert("conc", [(w, batch * 1000 + i) for i in range(1000)], column_names=["w", "i"])
                assert client.query("SELECT count() FROM conc WHERE w = {w:UInt8}", parameters={"w": w}).result_rows == [
                    ((batch + 1) * 1000,)
                ]
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert adapter.client().query("SELECT count(), uniqExact(w) FROM conc").result_rows == [(40_000, 8)]


async def test_async_client(adapter: Adapter) -> None:
    adapter.migrator().command("CREATE TABLE IF NOT EXISTS async_t (x UInt32) ENGINE = MergeTree ORDER BY x")
    client = await clickhouse_connect.get_async_client(
        host="127.0.0.1", port=adapter.port, username="lintas", password=PASSWORD, secure=True, verify=True,
        ca_cert=str(adapter.ca),
    )
    await client.insert("async_t", [(i,) for i in range(1000)], column_names=["x"])
    result = await client.query("SELECT count(), sum(x) FROM async_t")
    assert result.result_rows == [(1000, 499500)]
    await client.close()


def test_plain_http_like_curl(adapter: Adapter) -> None:
    """What an operator does with curl: body-only query, VALUES insert in the body, GET is read-only."""
    auth = {"X-ClickHouse-User": "lintas", "X-ClickHouse-Key": PASSWORD}
    base = f"{adapter.url}/"

    def post(body: bytes, query: str = "", headers: dict[str, str] = auth) -> tuple[int, str]:
        req = urllib.request.Request(base + query, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10, context=adapter.context()) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    migrate = {"X-ClickHouse-User": "lintas_migrate", "X-ClickHouse-Key": MIGRATE_PASSWORD}
    assert post(b"CREATE TABLE curl_t (x UInt8, s String) ENGINE = Memory", headers=migrate)[0] == 200
    assert post(b"INSERT INTO curl_t VALUES (1, 'a'), (2, 'b')")[0] == 200
    assert post(b"3\tc\n", "?query=INSERT%20INTO%20curl_t%20FORMAT%20TabSeparated")[0] == 200
    assert post(b"SELECT sum(x), count() FROM curl_t") == (200, "6\t3\n")
    status, body = post(b"SELECT nope FROM curl_t")
    assert status == 404 and body.startswith("Code: 47."), body
    req = urllib.request.Request(base + "?query=DROP%20TABLE%20curl_t", headers=migrate, method="GET")
    with pytest.raises(urllib.error.HTTPError) as err:  # even the migration user's GET: ClickHouse's are read-only
        urllib.request.urlopen(req, timeout=10, context=adapter.context())
    # ClickHouse answers READONLY with 500 (exceptionCodeToHTTPStatus has no entry for it)
    assert err.value.code == 500 and err.value.headers["X-ClickHouse-Exception-Code"] == "164"
    status, body = post(b"SELECT 1", headers={"X-ClickHouse-User": "lintas", "X-ClickHouse-Key": "wrong"})
    assert status == 403 and body.startswith("Code: 516.") and "AUTHENTICATION_FAILED" in body


def test_https_with_the_ca_and_nothing_else(adapter: Adapter) -> None:
    with urllib.request.urlopen(f"{adapter.url}/ping", timeout=5, context=adapter.context()) as r:
        assert r.read() == b"Ok.\n"
    with pytest.raises(urllib.error.URLError) as err:  # a client that does not trust the local CA
        urllib.request.urlopen(f"{adapter.url}/ping", timeout=5, context=ssl.create_default_context())
    assert isinstance(err.value.reason, ssl.SSLCertVerificationError)
    with pytest.raises((OSError, http.client.HTTPException)):  # plain http to the https port: no answer
        urllib.request.urlopen(f"http://127.0.0.1:{adapter.port}/ping", timeout=5)
    with pytest.raises(OperationalError):
        clickhouse_connect.get_client(host="127.0.0.1", port=adapter.port, username="lintas", password=PASSWORD)
    assert adapter.client().query("SELECT 1").result_rows == [(1,)]  # and the server goes on serving


def test_unknown_user_and_wrong_password_are_516_over_https(adapter: Adapter) -> None:
    for user, password in (("nobody", PASSWORD), ("lintas", "wrong"), ("lintas_migrate", PASSWORD)):
        with pytest.raises(DatabaseError) as err:
            adapter.client(user, password)
        assert err.value.code == 516 and "AUTHENTICATION_FAILED" in str(err.value), user


def test_the_pipeline_user_reads_and_writes_rows_and_changes_no_schema(adapter: Adapter, tmp_path: Path) -> None:
    adapter.migrator().command("CREATE TABLE rows_t (id UInt32, s String) ENGINE = MergeTree ORDER BY id")
    pipeline = adapter.client()
    assert pipeline.insert("rows_t", [(1, "a"), (2, "b"), (3, "c")], column_names=["id", "s"]).written_rows == 3
    pipeline.command("ALTER TABLE rows_t UPDATE s = 'z' WHERE id = {id:UInt32} SETTINGS mutations_sync = 2",
                     parameters={"id": 3})
    pipeline.command("ALTER TABLE rows_t DELETE WHERE id = {id:UInt32} SETTINGS mutations_sync = 2",
                     parameters={"id": 1})
    assert pipeline.query("SELECT id, s FROM rows_t ORDER BY id").result_rows == [(2, "b"), (3, "z")]
    for ddl in ("CREATE TABLE evil (x UInt8) ENGINE = Memory", "DROP TABLE rows_t",
                "ALTER TABLE rows_t ADD COLUMN evil UInt8", "TRUNCATE TABLE rows_t"):
        with pytest.raises(DatabaseError) as err:
            pipeline.command(ddl)
        assert err.value.code == 392 and "QUERY_IS_PROHIBITED" in str(err.value), ddl
    for other in ("OPTIMIZE TABLE rows_t FINAL", "SELECT * FROM file('/etc/hostname', 'LineAsString')"):
        with pytest.raises(DatabaseError) as err:
            pipeline.command(other)
        assert err.value.code == 497 and "Not enough privileges" in str(err.value), other
    out = tmp_path / "out.tsv"
    with pytest.raises(DatabaseError) as err:  # no user writes the server's files
        pipeline.command(f"SELECT * FROM rows_t INTO OUTFILE '{out}'")
    assert err.value.code == 358 and not out.exists()
    assert adapter.migrator().query("SELECT name FROM system.columns WHERE database = 'default' AND table = 'rows_t' "
                                    "ORDER BY name").result_rows == [("id",), ("s",)]
    assert pipeline.query("SELECT count() FROM rows_t").result_rows == [(2,)]


def test_the_migration_user_changes_the_schema(adapter: Adapter) -> None:
    migrate = adapter.migrator()
    migrate.command("CREATE TABLE schema_t (x UInt8) ENGINE = MergeTree ORDER BY x")
    migrate.command("ALTER TABLE schema_t ADD COLUMN y String")
    assert migrate.query("DESCRIBE TABLE schema_t").result_rows[1][:2] == ("y", "String")
    migrate.command("DROP TABLE schema_t")


def test_a_changed_users_file_is_read_without_a_restart(adapter: Adapter) -> None:
    adapter.migrator().command("CREATE TABLE IF NOT EXISTS rotation_t (x UInt8) ENGINE = MergeTree ORDER BY x")
    before = adapter.client()
    try:
        adapter.write_users({**USERS, "lintas": ("rotated-pw", "pipeline")})
        with pytest.raises(DatabaseError) as err:
            before.query("SELECT 1")
        assert err.value.code == 516
        assert adapter.client("lintas", "rotated-pw").query("SELECT 1").result_rows == [(1,)]
        adapter.write_users({**USERS, "lintas": (PASSWORD, "readonly")})  # a role changes the same way
        with pytest.raises(DatabaseError) as err:
            adapter.client().command("INSERT INTO rotation_t VALUES (9)")
        assert err.value.code == 164
    finally:
        adapter.write_users(USERS)
    assert adapter.client().query("SELECT 1").result_rows == [(1,)]


def test_data_survives_restart(adapter: Adapter) -> None:
    client = adapter.client()
    adapter.migrator().command("CREATE TABLE persist_t (x UInt32) ENGINE = MergeTree ORDER BY x")
    client.insert("persist_t", [(i,) for i in range(123)], column_names=["x"])
    adapter.stop()
    adapter.start()
    assert adapter.client().query("SELECT count() FROM persist_t").result_rows == [(123,)]
