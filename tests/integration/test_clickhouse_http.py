"""The chDB HTTP adapter against the real clickhouse-connect clients (sync and async)."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import clickhouse_connect
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from tests.conftest import REPO

pytestmark = pytest.mark.integration

PASSWORD, RO_PASSWORD = "adapter-test-pw", "adapter-test-ro"  # noqa: S105 - throwaway test credentials


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Adapter:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = _free_port()
        users = {
            "lintas": {"password_sha256_hex": hashlib.sha256(PASSWORD.encode()).hexdigest(), "readonly": False},
            "grafana": {"password_sha256_hex": hashlib.sha256(RO_PASSWORD.encode()).hexdigest(), "readonly": True},
        }
        (root / "users.json").write_text(json.dumps(users))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "infra.clickhouse_http", "--data-dir", str(self.root / "data"),
             "--users-file", str(self.root / "users.json"), "--port", str(self.port)],
            cwd=REPO, stdout=open(self.root / "log", "ab"), stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ping", timeout=1) as r:
                    if r.read() == b"Ok.\n":
                        return
            except OSError:
                time.sleep(0.2)
        raise AssertionError((self.root / "log").read_text())

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.terminate()
        assert self.proc.wait(30) == 0

    def client(self, user: str = "lintas", password: str = PASSWORD, **kw):
        return clickhouse_connect.get_client(host="127.0.0.1", port=self.port, username=user, password=password, **kw)


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
    client.command(f"CREATE TABLE {table} (id UInt64, s String, v UInt32) ENGINE = ReplacingMergeTree(v) ORDER BY id")
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
    client.command("CREATE TABLE form_t (id String, n UInt32) ENGINE = MergeTree ORDER BY id")
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
    admin = adapter.client()
    admin.command("CREATE TABLE IF NOT EXISTS ro_t (x UInt8) ENGINE = MergeTree ORDER BY x")
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
    adapter.client().command("CREATE TABLE conc (w UInt8, i UInt32) ENGINE = MergeTree ORDER BY (w, i)")
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
    client = await clickhouse_connect.get_async_client(
        host="127.0.0.1", port=adapter.port, username="lintas", password=PASSWORD,
    )
    await client.command("CREATE TABLE IF NOT EXISTS async_t (x UInt32) ENGINE = MergeTree ORDER BY x")
    await client.insert("async_t", [(i,) for i in range(1000)], column_names=["x"])
    result = await client.query("SELECT count(), sum(x) FROM async_t")
    assert result.result_rows == [(1000, 499500)]
    await client.close()


def test_plain_http_like_curl(adapter: Adapter) -> None:
    """What an operator does with curl: body-only query, VALUES insert in the body, GET is read-only."""
    auth = {"X-ClickHouse-User": "lintas", "X-ClickHouse-Key": PASSWORD}
    base = f"http://127.0.0.1:{adapter.port}/"

    def post(body: bytes, query: str = "") -> tuple[int, str]:
        req = urllib.request.Request(base + query, data=body, headers=auth, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    assert post(b"CREATE TABLE curl_t (x UInt8, s String) ENGINE = Memory")[0] == 200
    assert post(b"INSERT INTO curl_t VALUES (1, 'a'), (2, 'b')")[0] == 200
    assert post(b"3\tc\n", "?query=INSERT%20INTO%20curl_t%20FORMAT%20TabSeparated")[0] == 200
    assert post(b"SELECT sum(x), count() FROM curl_t") == (200, "6\t3\n")
    status, body = post(b"SELECT nope FROM curl_t")
    assert status == 404 and body.startswith("Code: 47."), body
    req = urllib.request.Request(base + "?query=DROP%20TABLE%20curl_t", headers=auth, method="GET")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 403 and err.value.headers["X-ClickHouse-Exception-Code"] == "164"


def test_data_survives_restart(adapter: Adapter) -> None:
    client = adapter.client()
    client.command("CREATE TABLE persist_t (x UInt32) ENGINE = MergeTree ORDER BY x")
    client.insert("persist_t", [(i,) for i in range(123)], column_names=["x"])
    adapter.stop()
    adapter.start()
    assert adapter.client().query("SELECT count() FROM persist_t").result_rows == [(123,)]
