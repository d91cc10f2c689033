"""The ClickHouse adapter's users and their roles, in-process (chDB, no server): who may run what, and with which
of ClickHouse's errors the rest is refused; the local stack's users file and its rotation."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from infra.clickhouse import LocalClickHouse
from infra.clickhouse_http import ClickHouseError, ClickHouseUsers, Engine, Role, load_users, table_functions
from infra.errors import StackError
from streams.settings import Settings


def _sha(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def _write(path: Path, users: dict[str, dict[str, object]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(users))
    os.replace(tmp, path)  # as LocalClickHouse writes it: a new inode, never half a file


# --- the users file ------------------------------------------------------------------------------------------------


def test_users_have_roles_and_a_file_from_before_roles_keeps_its_meaning(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    _write(path, {"grafana": {"password_sha256_hex": _sha("r"), "readonly": True},
                  "lintas": {"password_sha256_hex": _sha("w"), "readonly": False},
                  "worker": {"password_sha256_hex": _sha("p"), "role": "pipeline", "readonly": False}})
    users = load_users(path)
    assert {name: u.role for name, u in users.items()} == {"grafana": "readonly", "lintas": "migrate",
                                                          "worker": "pipeline"}
    assert users["grafana"].readonly and not users["worker"].readonly


@pytest.mark.parametrize("spec", [
    {"password_sha256_hex": "ab", "role": "root"},  # no such role
    {"password_sha256_hex": "ab", "role": "migrate", "readonly": True},  # a read-only user is never widened
    {"role": "pipeline"},  # no password
    "lintas",
])
def test_a_users_file_that_is_not_one_is_refused(tmp_path: Path, spec: object) -> None:
    path = tmp_path / "users.json"
    path.write_text(json.dumps({"u": spec}))
    with pytest.raises(ValueError, match="u"):
        load_users(path)


def test_users_are_read_again_when_the_file_changes_and_a_broken_file_keeps_the_old_ones(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    _write(path, {"lintas": {"password_sha256_hex": _sha("old"), "role": "pipeline"}})
    users = ClickHouseUsers(path)
    assert users.get("lintas").password_sha256_hex == _sha("old")  # type: ignore[union-attr]
    _write(path, {"lintas": {"password_sha256_hex": _sha("new"), "role": "pipeline"},
                  "grafana": {"password_sha256_hex": _sha("r"), "role": "readonly"}})
    assert users.get("lintas").password_sha256_hex == _sha("new")  # type: ignore[union-attr]
    assert users.get("grafana") is not None
    path.write_text("{not json")
    assert users.get("lintas").password_sha256_hex == _sha("new")  # type: ignore[union-attr]
    assert users.get("nobody") is None


# --- what each role may run ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    e = Engine(tmp_path_factory.mktemp("chdb") / "data")
    e.execute("CREATE TABLE t (a UInt32, b String, c Array(String)) ENGINE = MergeTree ORDER BY a", None, "default",
              "TabSeparated", {}, "migrate")
    yield e
    e.close()


def _run(engine: Engine, sql: str, role: Role, data: bytes | None = None,
         params: dict[str, str] | None = None) -> bytes:
    return engine.execute(sql, data, "default", "TabSeparated", params or {}, role, "lintas").body


def _refused(engine: Engine, sql: str, role: Role, data: bytes | None = None) -> ClickHouseError:
    with pytest.raises(ClickHouseError) as err:
        _run(engine, sql, role, data)
    return err.value


def test_the_pipeline_reads_inserts_updates_and_deletes_rows(engine: Engine) -> None:
    _run(engine, "INSERT INTO t VALUES (1, 'a', ['x']), (2, 'b', [])", "pipeline")
    _run(engine, "INSERT INTO t (a, b, c) FORMAT TabSeparated", "pipeline", b"3\tc\t['y']\n")
    _run(engine, "INSERT INTO t SELECT number + 10, 'n', [] FROM numbers(3)", "pipeline")
    # what `lintas erase` runs: mutations, applied synchronously, with bound parameters
    _run(engine, "ALTER TABLE t UPDATE c = arrayFilter(x -> NOT has({gone:Array(String)}, x), c) "
                 "WHERE hasAny(c, {gone:Array(String)}) SETTINGS mutations_sync = 2", "pipeline",
         params={"gone": "['x']"})
    _run(engine, "ALTER TABLE t DELETE WHERE a = {a:UInt32} SETTINGS mutations_sync = 2", "pipeline",
         params={"a": "2"})
    _run(engine, "DELETE FROM t WHERE a = 12", "pipeline")
    assert _run(engine, "SELECT a, c FROM t WHERE a IN (1, 2, 3, 10, 11, 12) ORDER BY a", "pipeline") == (
        b"1\t[]\n3\t['y']\n10\t[]\n11\t[]\n")


@pytest.mark.parametrize("sql", [
    "CREATE TABLE evil (x UInt8) ENGINE = Memory",
    "DROP TABLE t",
    "ALTER TABLE t ADD COLUMN evil UInt8",
    "ALTER TABLE t DELETE WHERE 1, DROP COLUMN b",  # a mutation does not carry a schema change along
    "ALTER TABLE t MODIFY TTL now()",
    "TRUNCATE TABLE t",
    "RENAME TABLE t TO t2",
    "CREATE FUNCTION evil AS x -> x",
])
def test_the_pipeline_runs_no_ddl(engine: Engine, sql: str) -> None:
    err = _refused(engine, sql, "pipeline")
    assert err.code == 392 and "DDL queries are prohibited for the user lintas" in err.message
    assert err.message.endswith("(QUERY_IS_PROHIBITED)")


@pytest.mark.parametrize(("sql", "grant"), [
    ("OPTIMIZE TABLE t FINAL", "OPTIMIZE"),
    ("SYSTEM FLUSH LOGS", "SYSTEM"),
    ("KILL QUERY WHERE 1", "KILL QUERY"),
    ("SELECT * FROM file('/etc/hostname', 'LineAsString')", "READ ON FILE"),
    ("SELECT file('/etc/hostname')", "READ ON FILE"),
    ("SELECT * FROM url('http://127.0.0.1:9/', 'LineAsString')", "READ ON URL"),
    ("INSERT INTO t (b) SELECT * FROM file('/etc/hostname', 'LineAsString')", "READ ON FILE"),
    ("INSERT INTO FUNCTION file('evil.tsv') SELECT 1", "READ ON FILE"),
    ("SELECT * FROM t WHERE b IN (SELECT * FROM executable('id', 'TSV', 'x String'))", "READ ON EXECUTABLE"),
])
def test_the_pipeline_lacks_the_other_grants(engine: Engine, sql: str, grant: str) -> None:
    err = _refused(engine, sql, "pipeline")
    assert err.code == 497 and "lintas: Not enough privileges" in err.message and grant in err.message


def test_values_data_is_literals_only_and_only_the_migration_user_may_change_that(engine: Engine) -> None:
    """ClickHouse would evaluate ``file(...)`` in VALUES data with the server's access to its files."""
    assert _refused(engine, "INSERT INTO t VALUES (5, file('/etc/hostname'), [])", "pipeline").code == 344
    assert _refused(engine, "INSERT INTO t VALUES", "pipeline", b"(5, file('/etc/hostname'), [])").code == 344
    err = _refused(engine, "INSERT INTO t SETTINGS input_format_values_interpret_expressions = 1 "
                           "VALUES (5, file('/etc/hostname'), [])", "pipeline")
    assert err.code == 452 and "input_format_values_interpret_expressions" in err.message
    err = _refused(engine, "SELECT * FROM t FORMAT Template SETTINGS format_template_resultset = '/etc/hostname'",
                   "readonly")
    assert err.code == 452
    assert _run(engine, "SELECT count() FROM t WHERE a = 5", "migrate") == b"0\n"


@pytest.mark.parametrize("role", ["readonly", "pipeline", "migrate"])
def test_no_user_reads_or_writes_the_server_s_files(engine: Engine, role: Role, tmp_path: Path) -> None:
    out = tmp_path / "out"
    for sql in (f"SELECT 1 INTO OUTFILE '{out}'", f"SELECT 1 INTO OUTFILE '{out}' TRUNCATE FORMAT RawBLOB",
                # statements that EXPLAIN AST would have given an INTO OUTFILE of its own
                f"DELETE FROM t WHERE 1 INTO OUTFILE '{out}'", f"SET max_threads = 1 INTO OUTFILE '{out}'",
                f"SELECT 1 FORMAT TSV INTO OUTFILE '{out}'"):
        err = _refused(engine, sql, role)
        assert err.code in (358, 62, 164), (sql, err.message)
    for sql, data in ((f"INSERT INTO t FORMAT TSV INTO OUTFILE '{out}'", None),
                      ("INSERT INTO t (a) FORMAT TSV", f"30\n INTO OUTFILE '{out}'".encode()),
                      ("SELECT 1", f"INTO OUTFILE '{out}'".encode())):
        with pytest.raises(ClickHouseError):
            _run(engine, sql, role, data)
    assert not out.exists()
    err = _refused(engine, "INSERT INTO t FROM INFILE '/etc/hostname' FORMAT LineAsString", role)
    assert err.code in (78, 164)
    assert _refused(engine, f"SELECT 1 INTO OUTFILE '{out}'", role).code == 358


def test_set_lasts_for_its_request_only_and_the_read_only_user_may_not(engine: Engine) -> None:
    _run(engine, "SET max_result_rows = 1, result_overflow_mode = 'throw'", "pipeline")
    _run(engine, "SET readonly = 1", "migrate")
    assert _run(engine, "SELECT number FROM numbers(3)", "pipeline") == b"0\n1\n2\n"
    _run(engine, "INSERT INTO t VALUES (7, 'seven', [])", "pipeline")
    assert _refused(engine, "SET max_threads = 1", "readonly").code == 164


def test_the_read_only_user_reads_only(engine: Engine) -> None:
    _run(engine, "INSERT INTO t VALUES (20, 'twenty', [])", "pipeline")
    assert _run(engine, "SELECT b FROM t WHERE a = 20", "readonly") == b"twenty\n"
    for sql in ("INSERT INTO t VALUES (9, 'x', [])", "ALTER TABLE t DELETE WHERE 1", "CREATE TABLE z (x UInt8) "
                "ENGINE = Memory"):
        assert _refused(engine, sql, "readonly").code == 164, sql


def test_the_migration_user_changes_the_schema(engine: Engine) -> None:
    _run(engine, "CREATE TABLE m (x UInt8, at DateTime) ENGINE = MergeTree ORDER BY x", "migrate")
    _run(engine, "ALTER TABLE m ADD COLUMN y String", "migrate")
    _run(engine, "ALTER TABLE m MODIFY TTL at + INTERVAL 1 DAY", "migrate")
    _run(engine, "DROP TABLE m", "migrate")


def test_table_functions_are_found_where_they_are_read_from_or_written_to() -> None:
    tree = "\n".join([
        "InsertQuery   (children 2)", " Function file (children 1)", "  ExpressionList (children 1)",
        " SelectWithUnionQuery (children 1)", "  ExpressionList (children 1)", "   SelectQuery (children 2)",
        "    ExpressionList (children 1)", "     Function file (children 1)",  # a scalar: not a table function
        "    TablesInSelectQuery (children 1)", "     TablesInSelectQueryElement (children 1)",
        "      TableExpression (children 1)", "       Function numbers (children 1)"])
    assert table_functions(tree) == ["file", "numbers"]


# --- the local stack's users file ----------------------------------------------------------------------------------


def _settings(tmp_path: Path, **extra: object) -> Settings:
    return Settings(state_dir=tmp_path / "state", **extra)  # type: ignore[arg-type]


def test_prepare_writes_the_three_users_with_their_roles(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    local = LocalClickHouse(settings)
    local.prepare()
    assert local.users_file.stat().st_mode & 0o077 == 0
    users = load_users(local.users_file)
    assert {u.name: u.role for u in users.values()} == {settings.clickhouse_migrate_user: "migrate",
                                                        settings.clickhouse_user: "pipeline",
                                                        settings.clickhouse_readonly_user: "readonly"}
    for name, secret in ((settings.clickhouse_migrate_user, "clickhouse_migrate_password"),
                         (settings.clickhouse_user, "clickhouse_password"),
                         (settings.clickhouse_readonly_user, "clickhouse_readonly_password")):
        assert users[name].password_sha256_hex == _sha(settings.secret(secret))


def test_rotation_gives_every_user_a_new_password_that_the_running_server_reads(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    local = LocalClickHouse(settings)
    local.prepare()
    running = ClickHouseUsers(local.users_file)
    fields = ("clickhouse_migrate_password", "clickhouse_password", "clickhouse_readonly_password")
    before = {f: settings.secret(f) for f in fields}
    local.rotate()
    after = {f: settings.secret(f) for f in fields}
    assert not {v for v in before.values()} & {v for v in after.values()}
    assert running.get(settings.clickhouse_user).password_sha256_hex == _sha(after["clickhouse_password"])  # type: ignore[union-attr]
    assert running.get(settings.clickhouse_migrate_user).role == "migrate"  # type: ignore[union-attr]
    for f in fields:
        assert settings.secret_path(f).stat().st_mode & 0o077 == 0


def test_rotation_refuses_a_password_the_environment_sets(tmp_path: Path) -> None:
    settings = _settings(tmp_path, clickhouse_password=SecretStr("from-the-environment"))
    local = LocalClickHouse(settings)
    local.prepare()
    before = local.users_file.read_bytes()
    with pytest.raises(StackError, match="clickhouse_password"):
        local.rotate()
    assert local.users_file.read_bytes() == before


def test_the_users_need_three_names(tmp_path: Path) -> None:
    settings = _settings(tmp_path, clickhouse_migrate_user="lintas")
    with pytest.raises(StackError, match="three names"):
        LocalClickHouse(settings).prepare()


def test_the_server_serves_https_when_secure(tmp_path: Path) -> None:
    secure = LocalClickHouse(_settings(tmp_path)).process().command
    assert "--tls-cert" in secure and secure[secure.index("--tls-cert") + 1].endswith("server.pem")
    assert "--tls-cert" not in LocalClickHouse(_settings(tmp_path, secure=False)).process().command
