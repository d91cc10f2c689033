"""Document and watchlist checks on literal list files and crossings: what hits, what must not, nothing in clear."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

import pytest

from agents.pseudonymise import Tokeniser, document_token, person_token
from agents.watchlist import (
    EXPIRED_RULE,
    LISTS,
    Entry,
    ListFileError,
    check,
    entries,
    parse_list_file,
    presented,
)
from schemas.contracts import ALERT
from schemas.wire import encode_payload
from streams.topics import ALL_TOPICS, WATCHLISTS

TOK = Tokeniser(b"unit-test-key-not-a-secret-00001", "ops-test")
AT = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
LOST = LISTS["lost_stolen"]
GOOD = """issuing_state,number,reason,valid_from,valid_until,source
IDN,X1234567,STOLEN,2026-01-01,,INTERPOL-SLTD
MYS,A 7654321,lost,,2026-06-30,
PHL,P0000001,REVOKED,2026-12-01,2027-12-31,DFA-PH
"""


def crossing(number: str = "X1234567", state: str = "IDN", expiry: date | None = date(2030, 1, 1),
             at: datetime = AT) -> dict[str, Any]:
    """A literal synthetic crossing, decoded (what ingest hands to the checks)."""
    return {
        "event_id": uuid.UUID("00000000-0000-4000-8000-000000000001"), "occurred_at": at,
        "post": {"post_id": "ID-BTH", "post_type": "SEA", "country": "IDN"}, "direction": "EXIT",
        "traveller": {"document": {"document_type": "PASSPORT", "number": number, "issuing_state": state,
                                   "expiry_date": expiry},
                      "given_names": "Synthetic", "surname": "Traveller", "date_of_birth": date(1990, 1, 1),
                      "sex": "F", "nationality": state},
    }


def shown(record: dict[str, Any]) -> Any:
    """What ingest hands the check: the crossing and its traveller's token, as made for its facts."""
    return presented(record, person_token(TOK, record["traveller"]))


def table(text: str = GOOD, name: str = "lost_stolen") -> dict[str, list[Entry]]:
    """A list as the replica holds it: token → entries."""
    rows = parse_list_file(text, LISTS[name])
    out: dict[str, list[Entry]] = {}
    for token, value in entries(rows, LISTS[name], TOK, datetime(2026, 11, 1, tzinfo=UTC), "load-1"):
        out.setdefault(token, []).append(Entry.from_bytes(value))
    return out


def lookup(tables: dict[str, list[Entry]]) -> Any:
    return lambda token: tables.get(token, [])


def test_a_listed_document_is_an_alert_with_list_reason_post_and_event() -> None:
    p = shown(crossing())
    assert p is not None and p.document_token == document_token(TOK, "IDN", "X1234567")
    [alert] = check([p], lookup(table()))
    assert alert.rule_id == "watchlist.lost_stolen" and alert.severity == "HIGH"
    assert alert.key_kind == "doc" and alert.key_token == p.document_token and alert.subjects == (p.document_token,)
    assert alert.evidence_event_ids == ("00000000-0000-4000-8000-000000000001",) and alert.post_ids == ("ID-BTH",)
    assert "lost_stolen:STOLEN" in alert.indicators and "reason STOLEN" in alert.explanation
    assert "source INTERPOL-SLTD" in alert.explanation and "X1234567" not in repr(alert)
    record = alert.record("ops-test", "watchlist")
    assert record["family"] == "watchlist"
    encode_payload(ALERT, record)  # the trafficking alerts' schema carries it unchanged
    assert check([p], lookup(table()))[0].alert_id == alert.alert_id, "a replay gives the same alert"


def test_no_hit_for_other_documents_or_outside_the_entry_validity() -> None:
    lists = lookup(table())
    assert check([shown(crossing("X1234568"))], lists) == []  # type: ignore[list-item]
    assert check([shown(crossing("X1234567", "MYS"))], lists) == []  # type: ignore[list-item]
    # MYS A 7654321 was listed until 2026-06-30; PHL P0000001 only from 2026-12-01
    assert check([shown(crossing("A 7654321", "MYS"))], lists) == []  # type: ignore[list-item]
    assert check([shown(crossing("P0000001", "PHL"))], lists) == []  # type: ignore[list-item]
    june = datetime(2026, 6, 30, 23, 0, tzinfo=UTC)
    assert len(check([shown(crossing("a  7654321", "MYS", at=june))], lists)) == 1, "same normalised number"
    assert shown({**crossing(), "traveller": {**crossing()["traveller"], "document": None}}) is None


def test_an_expired_document_is_flagged_low() -> None:
    p = shown(crossing("Z9999999", expiry=date(2026, 11, 1)))
    [alert] = check([p], lookup({}))  # type: ignore[list-item]
    assert alert.rule_id == EXPIRED_RULE and alert.severity == "LOW" and alert.features["days_expired"] == 19
    assert check([shown(crossing("Z9999999", expiry=AT.date()))], lookup({})) == []  # type: ignore[list-item]
    listed = check([shown(crossing(expiry=date(2026, 1, 1)))], lookup(table()))  # type: ignore[list-item]
    assert sorted(a.rule_id for a in listed) == [EXPIRED_RULE, "watchlist.lost_stolen"]


def test_a_yellow_notice_says_the_traveller_may_be_at_risk() -> None:
    notices = table("issuing_state,number,reason\nIDN,X1234567,YELLOW\n", "notices")
    [alert] = check([shown(crossing())], lookup(notices))  # type: ignore[list-item]
    assert alert.rule_id == "watchlist.notices" and "missing person" in alert.explanation


def test_a_bad_file_names_every_bad_row_by_line_and_column_and_no_value() -> None:
    text = ("issuing_state,number,reason,valid_from,valid_until,source\n"
            "IDN,X1234567,STOLEN,,,\n"          # line 2 fine
            "ID,SECRET01,STOLEN,,,\n"           # 3 country
            "IDN,,STOLEN,,,\n"                  # 4 number
            "IDN,SECRET02,WANTED,,,\n"          # 5 reason not of this list
            "IDN,SECRET03,LOST,2026-13-01,,\n"  # 6 date
            "IDN,SECRET04,LOST,2026-05-01,2026-04-01,\n"  # 7 order
            "IDN,x1234567,LOST,,,\n"            # 8 duplicate of line 2
            "IDN,SECRET05,LOST,,,,extra\n")     # 9 too many cells
    with pytest.raises(ListFileError) as err:
        parse_list_file(text, LOST)
    assert [(line, column) for line, column, _ in err.value.errors] == [
        (3, "issuing_state"), (4, "number"), (5, "reason"), (6, "valid_from"), (7, "valid_until"), (8, "number"),
        (9, "(row)")]
    assert "line 2" in err.value.errors[5][2]
    assert "SECRET" not in str(err.value) and "X1234567" not in str(err.value)


@pytest.mark.parametrize(("text", "where"), [
    ("state,number,reason\nIDN,X1,LOST\n", (1, "issuing_state")),
    ("issuing_state,number,reason,colour\nIDN,X1,LOST,red\n", (1, "colour")),
    ("issuing_state,number,reason\n", (1, "(file)")),
])
def test_a_bad_header_or_an_empty_file_is_refused(text: str, where: tuple[int, str]) -> None:
    with pytest.raises(ListFileError) as err:
        parse_list_file(text, LOST)
    assert err.value.errors[0][:2] == where


def test_national_lists_define_their_own_codes_and_removals_need_only_the_document() -> None:
    rows = parse_list_file("issuing_state,number,reason\nIDN,X1234567,DEPORTED_2024\n", LISTS["national_alerts"])
    assert rows[0].reason == "DEPORTED_2024"
    removal = parse_list_file("issuing_state,number\nIDN,X1234567\n", LOST, removal=True)
    assert removal[0].token(TOK) == document_token(TOK, "IDN", "X1234567")


def test_entries_carry_tokens_and_codes_never_the_number() -> None:
    rows = parse_list_file(GOOD, LOST)
    published = entries(rows, LOST, TOK, datetime(2026, 11, 1, tzinfo=UTC), "load-1")
    assert [key for key, _ in published] == [document_token(TOK, r.issuing_state, r.number) for r in rows]
    for (key, value), row in zip(published, rows, strict=True):
        assert row.number.encode() not in value and row.number.replace(" ", "").encode() not in value
        assert Entry.from_bytes(value).key_id == "ops-test" and len(key) == 32


def test_every_list_has_its_compacted_topic() -> None:
    assert set(WATCHLISTS) == set(LISTS)
    for spec in WATCHLISTS.values():
        assert spec in ALL_TOPICS and spec.cleanup == "compact" and spec.retention_ms == -1
        assert not spec.restricted, "tokens only: the pipeline's scan for clear values covers it"


class Msg:
    """A confluent-kafka message, as the replica sees it."""

    def __init__(self, topic: str, key: bytes | None = None, value: bytes | None = None, error: Any = None) -> None:
        self._t, self._k, self._v, self._e = topic, key, value, error

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return 0

    def key(self) -> bytes | None:
        return self._k

    def value(self) -> bytes | None:
        return self._v

    def error(self) -> Any:
        return self._e


def test_the_replica_applies_updates_and_tombstones_and_is_ready_at_the_end_of_every_list() -> None:
    from confluent_kafka import KafkaError

    from streams.settings import Settings
    from streams.watchlist_replica import Replica

    replica = Replica(Settings())
    names = {spec.name: name for name, spec in replica.topics.items()}
    [(token, value)] = entries(parse_list_file(GOOD.splitlines()[0] + "\n" + GOOD.splitlines()[1], LOST), LOST, TOK,
                               AT, "load-1")
    topic = WATCHLISTS["lost_stolen"].name
    replica._apply(Msg(topic, token.encode(), value), names)
    replica._apply(Msg(topic, b"not-a-token", value), names)
    assert [e.reason for e in replica.lookup(token)] == ["STOLEN"] and replica.bad_keys == 1
    for spec in WATCHLISTS.values():
        assert not replica.ready.is_set()
        replica._apply(Msg(spec.name, error=KafkaError(KafkaError._PARTITION_EOF)), names)
    assert replica.ready.is_set() and replica.sizes()["lost_stolen"] == 1
    replica._apply(Msg(topic, token.encode(), None), names)
    assert replica.lookup(token) == [] and replica.sizes()["lost_stolen"] == 0
