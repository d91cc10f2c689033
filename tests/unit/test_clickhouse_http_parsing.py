"""The adapter's pure parts: statement splitting, comments, compression."""

from __future__ import annotations

import gzip

import lz4.frame
import pytest
import zstandard

from infra.clickhouse_http import ClickHouseError, ClickHouseRequestHandler, compress, decompress
from streams.sql import split_statements, strip_comments


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT 1", 1),
        ("SELECT 1;", 1),
        ("SELECT 1; ", 1),
        ("SELECT ';'", 1),
        ("SELECT 1 -- ; DROP TABLE x", 1),
        ("SELECT 1 /* ; */", 1),
        ("SELECT `a;b` FROM t", 1),
        ("SELECT 'it\\'s;' ", 1),
        ("SELECT 1; DROP TABLE x", 2),
        ("SELECT 1;\n-- trailing comment\n", 1),
        ("", 0),
        ("-- only a comment", 0),
    ],
)
def test_split_statements(sql: str, expected: int) -> None:
    assert len(split_statements(sql)) == expected


def test_strip_comments_keeps_quoted_text() -> None:
    assert strip_comments("SELECT '--x' -- c\n, 2 /* y */") == "SELECT '--x' \n, 2  "


@pytest.mark.parametrize("encoding", ["lz4", "zstd", "gzip", "deflate", None])
def test_compress_decompress_round_trip(encoding: str | None) -> None:
    payload = b"\x00\x01native block" * 1000
    body, used = compress(payload, encoding or "")
    assert used == encoding
    assert decompress(body, used) == payload


def test_decompress_matches_client_encoders() -> None:
    payload = b"x" * 5000
    assert decompress(lz4.frame.compress(payload), "lz4") == payload
    assert decompress(zstandard.ZstdCompressor().compress(payload), "zstd") == payload
    assert decompress(gzip.compress(payload), "gzip") == payload


def test_unknown_encoding_is_a_clickhouse_error() -> None:
    with pytest.raises(ClickHouseError) as err:
        decompress(b"abc", "snappy-ish")
    assert "snappy-ish" in err.value.message


@pytest.mark.parametrize(
    ("body", "statement", "data"),
    [
        (b"INSERT INTO t (a, b) FORMAT Native\n\x01\x02\xff", "INSERT INTO t (a, b) FORMAT Native", b"\x01\x02\xff"),
        (b"INSERT INTO t VALUES (1), (2)", "INSERT INTO t VALUES", b"(1), (2)"),
        (b"INSERT INTO values_log (a) FORMAT TSV\n1\n", "INSERT INTO values_log (a) FORMAT TSV", b"1\n"),
        (b"SELECT 1", "SELECT 1", None),
    ],
)
def test_body_only_request_splits_statement_and_data(body: bytes, statement: str, data: bytes | None) -> None:
    assert ClickHouseRequestHandler._split_query(None, body) == (statement, data)


def test_error_from_engine_keeps_code() -> None:
    err = ClickHouseError.from_engine(RuntimeError("Code: 60. DB::Exception: Unknown table. (UNKNOWN_TABLE)"))
    assert err.code == 60
    assert ClickHouseError.from_engine(RuntimeError("boom")).code == 1001


def test_a_request_that_waited_while_the_server_shut_down_gets_a_transient_error(tmp_path) -> None:  # noqa: ANN001
    """Not chDB's closed-session exception (STD_EXCEPTION, fatal to the sink) but NETWORK_ERROR, which it retries."""
    from clickhouse_connect.driver.exceptions import DatabaseError

    from infra.clickhouse_http import ERROR_STATUS, Engine
    from streams.worker.sink import transient

    engine = Engine(tmp_path / "data")
    engine.close()
    with pytest.raises(ClickHouseError) as err:
        engine.execute("SELECT 1", None, "default", "TabSeparated", {}, "migrate")
    assert err.value.code == 210 and ERROR_STATUS[210] == 503
    wrapped = DatabaseError(err.value.message)
    wrapped.code = err.value.code  # type: ignore[attr-defined]
    assert transient(wrapped)
