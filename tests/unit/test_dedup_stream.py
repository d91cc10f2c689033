"""Dedup on the stream without a broker: shard steps over in-memory partitions, any schedule, replays, restarts,
sealing, erasure, links and adjudication."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from agents.biometric import (
    DEDUP_COMMAND,
    LINK_COMMAND,
    Capture,
    DedupConfig,
    capture_commands,
    erase_command,
    shard_step,
    subject_id,
)
from agents.dedup import ModelThresholds, ThresholdSet, identity_key
from agents.links import AdjudicationRejected, LinkState, adjudicate, apply_command, link_row
from agents.pseudonymise import Tokeniser
from agents.sealing import KeyDestroyed, SealError, SubjectSealer, person_key
from agents.shard import IDENTITY_RECORD, Shard, load_records, read
from schemas.wire import avro_bytes
from streams.keystores import SqliteSubjectKeys
from streams.sim.dedup_network import LocalNetwork

DIM = 64
NOW = datetime(2026, 11, 20, 8, tzinfo=UTC)
MODEL = "face-test/1"
T = ModelThresholds(MODEL, "t-test", verify=0.5, mismatch=0.2, yellow=0.6, red=0.7, pair_floor=0.55, samples=3)
THRESHOLDS = ThresholdSet("t-test", {MODEL: T}, ThresholdSet.load().default)
KEYS = SqliteSubjectKeys(":memory:")  # one key store for every worker of a test, like the deployment's
TOK = Tokeniser(b"unit-test-token-key", "k-test")


def cfg(shards: int = 4, window: int = 32, exact_max: int = 250_000, hot: int = 20_000) -> DedupConfig:
    return DedupConfig(THRESHOLDS, SubjectSealer(KEYS), TOK, shards, window=window, exact_max=exact_max,
                       dimension=DIM, hot=hot)


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


class People:
    """Synthetic people: a face each; captures are the face plus noise, presented under a document."""

    def __init__(self, n: int, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.faces = _unit(self.rng.standard_normal((n, DIM)))
        self.count = 0

    def capture(self, person: int, document: str, minute: int, quality: float = 0.9,
                face: int | None = None) -> tuple[Capture, np.ndarray]:
        self.count += 1
        probe = f"00000000-0000-4000-8000-{self.count:012d}"
        template = _unit(0.85 * self.faces[person if face is None else face]
                         + 0.53 * _unit(self.rng.standard_normal(DIM)))
        return (Capture(probe, probe, "crossing", "ID-BTH", NOW + timedelta(minutes=minute), document,
                        {"quality": quality, "model": MODEL}, "biometric"), template)


def traffic(n: int = 150, seed: int = 3) -> list[tuple[Capture, np.ndarray]]:
    """Everyone several times under their document; every 15th also under a second one; every 40th document
    carried once by somebody else."""
    people, rng = People(n, seed), random.Random(seed)
    out = []
    for person in range(n):
        for _ in range(rng.randint(1, 5)):
            out.append(people.capture(person, f"doc-{person}", rng.randrange(40_000), rng.uniform(0.4, 1.0)))
        if person % 15 == 0:
            out += [people.capture(person, f"alias-{person}", rng.randrange(40_000)) for _ in range(2)]
        if person % 40 == 0:
            out.append(people.capture((person + 1) % n, f"doc-{person}", rng.randrange(40_000), 0.9))
    return out


def run(captures: list[tuple[Capture, np.ndarray]], seed: int | None = None, chunk: int | None = None,
        batch: tuple[int, int] = (500, 500), crash: float = 0.0, shards: int = 4, hot: int = 20_000) -> LocalNetwork:
    net = LocalNetwork(cfg(shards, hot=hot))
    rng = random.Random(seed) if seed is not None else None
    items = list(captures)
    if rng:
        rng.shuffle(items)
    for s in range(0, len(items), chunk or len(items)):
        net.send(items[s:s + (chunk or len(items))])
        net.run(rng, batch, crash)
    return net


@pytest.fixture(scope="module")
def reference() -> tuple[list[tuple[Capture, np.ndarray]], LocalNetwork]:
    captures = sorted(traffic(), key=lambda c: c[0].occurred_at)
    return captures, run(captures, chunk=1)  # paced: one capture at a time, in event order


@pytest.mark.parametrize(("label", "kw"), [
    ("bulk, in event order", {}),
    ("bulk, shuffled, uneven batches", {"seed": 1, "batch": (1, 300)}),
    ("paced in shuffled chunks", {"seed": 2, "chunk": 37, "batch": (1, 40)}),
    ("workers killed between sends and records", {"seed": 3, "batch": (5, 200), "crash": 0.25}),
    ("no identity kept decoded: each read back from its record", {"seed": 4, "batch": (1, 60), "hot": 0}),
])
def test_any_pace_order_batching_or_crash_gives_the_same_identities_and_links(reference, label, kw) -> None:
    captures, paced = reference
    got = run(captures, **kw)
    assert got.outcomes() == paced.outcomes(), label
    assert got.link_set() == paced.link_set(), label


def test_the_paced_reference_finds_what_was_planted(reference) -> None:
    captures, net = reference
    outcomes = net.outcomes()
    by_doc: dict[str, set[str]] = {}
    for cap, _ in captures:
        by_doc.setdefault(cap.identity, set()).add(outcomes[cap.probe_id][1])
    assert all(len(by_doc[f"doc-{p}"]) == 1 for p in range(150) if p % 40), "one subject per honest document"
    reused = [p for p in range(0, 150, 40) if len(by_doc[f"doc-{p}"]) == 2]
    assert len(reused) >= 3, "another face under a reused document"
    links = net.link_set()
    linked = {(v[2], v[3]) for v in links.values()} | {(v[3], v[2]) for v in links.values()}
    assert all((f"doc-{p}", f"alias-{p}") in linked for p in range(0, 150, 15)), "every alias linked to its document"
    assert all(v[5] == "OPEN" for v in links.values()), "a link is a proposal until an officer decides"


def test_two_new_identities_enrolled_at_once_in_different_shards_still_find_each_other() -> None:
    people = People(2, seed=9)
    a, b = people.capture(0, "doc-a", 0), people.capture(0, "doc-b", 1)
    c = cfg(shards=2)
    shards = [identity_key(MODEL, d) for d in ("doc-a", "doc-b")]
    assert len({hash(s) for s in shards}) == 2
    net = LocalNetwork(c)
    net.send([a, b])
    for number in range(2):  # both CAPTUREs decided before either SEARCH arrives anywhere
        net.step_shard(number, 1)
    net.run()
    [(link_id, link)] = net.link_set().items()
    assert {link[2], link[3]} == {"doc-a", "doc-b"} and link[4] == "RED"


def test_a_replayed_or_resent_capture_changes_nothing() -> None:
    people = People(10, seed=4)
    captures = [people.capture(i, f"doc-{i}", i) for i in range(10)] + [people.capture(3, "doc-3", 20)]
    c = cfg(shards=1)
    shard = Shard(0)
    messages = [(i, v) for i, (_, v) in enumerate(capture_commands(captures, c.sealer, 1))]
    first = shard_step(shard, messages, c, NOW)
    assert [d["outcome"] for d in first.decisions].count("known_traveller") == 1
    replay = shard_step(shard, messages, c, NOW)  # the same offsets again (no commit before a crash)
    assert replay.decisions == [] and replay.commands == [] and replay.duplicates == 11
    resent = [(100 + i, v) for i, (_, v) in enumerate(capture_commands(captures[-1:], c.sealer, 1))]
    again = shard_step(shard, resent, c, NOW)  # a post's resend: new offset, same capture
    assert again.decisions == [] and again.duplicates == 1


def test_a_message_read_again_after_later_offsets_were_applied_is_decided() -> None:
    """The consumer seeks back to a message skipped during a rebalance: it arrives below offsets applied."""
    people = People(3, seed=6)
    captures = [people.capture(0, "doc-x", 0), people.capture(0, "doc-x", 10), people.capture(0, "doc-x", 20)]
    c = cfg(shards=1)
    messages = [(i, v) for i, (_, v) in enumerate(capture_commands(captures, c.sealer, 1))]
    shard = Shard(0)
    first = shard_step(shard, [messages[0], messages[2]], c, NOW)  # offset 1 was skipped
    again = shard_step(shard, [messages[1]], c, NOW)  # and read again
    decided = {d["probe_id"] for d in first.decisions + again.decisions}
    assert decided == {cap.probe_id for cap, _ in captures} and again.duplicates == 0


def test_a_shard_read_back_from_its_records_knows_every_identity_and_its_pairs(reference) -> None:
    _, net = reference
    for number in range(4):
        live = net.shards[number]
        reloaded = Shard(number)
        loaded, unreadable = load_records(reloaded, net.gallery[number], net.cfg)
        assert (loaded, unreadable) == (len(live), 0)
        assert set(reloaded.galleries[MODEL].row) == set(live.galleries[MODEL].row)
        assert {k: set(v) for k, v in reloaded.pairs.items()} == {k: set(v) for k, v in live.pairs.items()}
        assert reloaded.sample_count() == live.sample_count()


def test_an_identity_read_back_from_its_record_has_the_samples_the_current_thresholds_give(monkeypatch) -> None:
    people = People(2, seed=13)
    c = cfg(shards=1, hot=0)
    shard = c.shard(0)
    messages = capture_commands([people.capture(0, "doc-0", m, 0.9) for m in range(3)], c.sealer, 1)
    shard_step(shard, list(enumerate(v for _, v in messages)), c, NOW)
    key = identity_key(MODEL, "doc-0")
    assert shard.hot == {} and len(shard.galleries[MODEL].owned(key)) == 3
    monkeypatch.setattr(type(shard.galleries[MODEL]), "owned", lambda *_: pytest.fail("no scan while they agree"))
    [(_, later)] = capture_commands([people.capture(0, "doc-0", 9, 0.2)], c.sealer, 1)
    shard_step(shard, [(3, later)], c, NOW)  # read back: its samples are the index's, nothing to set again
    monkeypatch.undo()
    fewer = replace(c, thresholds=ThresholdSet("t-fewer", {MODEL: replace(T, samples=1)}, THRESHOLDS.default))
    [(_, again)] = capture_commands([people.capture(0, "doc-0", 10, 0.2)], c.sealer, 1)
    shard_step(shard, [(4, again)], fewer, NOW)
    assert len(shard.galleries[MODEL].owned(key)) == 1, "read back under new thresholds: one sample each"


def test_templates_leave_a_shard_only_sealed(reference) -> None:
    captures, net = reference
    raw = [t.astype("<f4").tobytes()[:64] for _, t in captures]
    blobs = [v for part in net.probes for v in part] + [v for part in net.gallery for _, v in part if v]
    blobs += [v for part in net.pairs for _, v in part]
    assert blobs and not any(chunk in blob for blob in blobs for chunk in raw)
    record = read(IDENTITY_RECORD, next(v for _, v in net.gallery[0] if v))
    assert all(c["sealed_template"][:2] != b"\x00\x00" for c in record["window"])
    for row in list(net.decisions.values()) + [link_row(x) for x in net.link_records.values()]:
        assert not any(isinstance(v, bytes | np.ndarray) for v in row.values())


def _flip(sealed: bytes) -> bytes:
    """The sealed bytes with their last bit flipped: always another value (overwriting the last byte with a
    constant left it unchanged one run in 256)."""
    return sealed[:-1] + bytes([sealed[-1] ^ 0x01])


def test_records_and_commands_that_cannot_be_opened_are_skipped_and_counted_not_fatal() -> None:
    people = People(5, seed=12)
    c = cfg(shards=1)
    shard = Shard(0)
    good = capture_commands([people.capture(i, f"doc-{i}", i) for i in range(5)], c.sealer, 1)
    out = shard_step(shard, [(i, v) for i, (_, v) in enumerate(good)], c, NOW)
    records = [(k.encode(), v) for k, v in out.records]
    rec = read(IDENTITY_RECORD, records[0][1])
    window = [{**rec["window"][0], "sealed_template": _flip(rec["window"][0]["sealed_template"])}]
    records.append((b"face-test/1|tampered", avro_bytes(IDENTITY_RECORD, {**rec, "window": window})))
    assert load_records(Shard(0), records, c) == (5, 1)
    [(_, probe)] = capture_commands([people.capture(3, "doc-3", 30)], c.sealer, 1)
    cmd = read(DEDUP_COMMAND, probe)
    bad = avro_bytes(DEDUP_COMMAND, {**cmd, "probe_id": "x", "sealed_template": _flip(cmd["sealed_template"])})
    out = shard_step(shard, [(10, bad), (11, probe)], c, NOW)
    assert out.unreadable == 1 and [d["outcome"] for d in out.decisions] == ["known_traveller"]


def test_sealed_values_refuse_a_destroyed_key_another_key_tampering_and_moving() -> None:
    store = SqliteSubjectKeys(":memory:")
    sealer = SubjectSealer(store)
    [sealed] = sealer.seal([(b"\x01\x02\x03" * 100, "S-a", "subject:S-a")])
    assert sealer.open_one(sealed, "S-a") == b"\x01\x02\x03" * 100
    with pytest.raises(SealError, match="authentication"):
        sealer.open_one(sealed, "S-b")  # moved to another subject
    with pytest.raises(SealError, match="authentication"):
        sealer.open_one(sealed[:-1] + bytes([sealed[-1] ^ 1]), "S-a")
    other = SubjectSealer(SqliteSubjectKeys(":memory:"))
    other.seal([(b"x", "S-a", "subject:S-a")])  # same name, another store's key
    with pytest.raises(SealError, match="authentication"):
        other.open_one(sealed, "S-a")
    assert store.destroy(["subject:S-a", "subject:never"]) == ["subject:S-a"]
    with pytest.raises(KeyDestroyed):
        sealer.open_one(sealed, "S-a")
    assert "S-a" not in str(sealer.open([(sealed, "S-a")])[0])


def test_a_destroyed_key_is_overwritten_in_the_key_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "secrets" / "subject_keys.sqlite3"
    store = SqliteSubjectKeys(path)
    keys = store.keys([f"person:p{i}" for i in range(50)], create=True)
    assert oct(path.stat().st_mode & 0o777) == "0o600" and oct(path.parent.stat().st_mode & 0o777) == "0o700"
    assert store.keys(["person:p7"], create=True) == {"person:p7": keys["person:p7"]}  # created once, then fetched
    files = lambda: b"".join(f.read_bytes() for f in path.parent.iterdir())  # noqa: E731  (db and any journal)
    assert keys["person:p7"] in files()
    store.destroy(["person:p7"])
    assert keys["person:p7"] not in files() and keys["person:p8"] in files()
    assert SqliteSubjectKeys(path).keys(["person:p7", "person:p8"]) == {"person:p8": keys["person:p8"]}


def test_an_erased_person_is_forgotten_by_every_shard_and_their_links_go_without_a_trace() -> None:
    keys = SqliteSubjectKeys(":memory:")
    c = DedupConfig(THRESHOLDS, SubjectSealer(keys), TOK, 3, dimension=DIM)
    people = People(30, seed=11)
    net = LocalNetwork(c)
    net.send([people.capture(i, f"doc-{i}", i) for i in range(30)])
    net.send([people.capture(4, "alias-4", 40)])
    net.run()
    [link] = net.link_set().values()
    assert {link[2], link[3]} == {"doc-4", "alias-4"}
    net.send([people.capture(4, "alias-4", 50)])  # in flight when the erasure happens
    keys.destroy([person_key("alias-4")])  # lintas erase: keys first, then ERASE to every shard
    gone = subject_id(TOK, MODEL, "alias-4", None)
    for number in range(3):
        net.probes[number].insert(net.position[number], erase_command([gone], "alias-4", NOW))
    net.run()
    assert net.link_set() == {} and net.links == {}, "the link agent dropped it; a tombstone, no withdrawn record"
    assert not any(s.identity == "alias-4" for sh in net.shards.values() for s in sh.each(c))
    assert not any(key.endswith("|alias-4") for sh in net.shards.values() for g in sh.galleries.values()
                   for key, _ in g.row), "its samples left the index"
    assert not any(r.remote[0] == gone for sh in net.shards.values() for held in sh.pairs.values()
                   for r in held.values())
    restarted = Shard(0)  # the records written before the erasure are tombstoned or no longer open
    for number in range(3):
        restarted = Shard(number)
        load_records(restarted, net.gallery[number], c)
        assert not any(s.identity == "alias-4" for s in restarted.each(c))


def test_each_shard_reports_what_an_erasure_took_out_of_its_index_for_the_proof() -> None:
    """What ``lintas erase`` waits for: per shard, the erasure's id, the index rows removed, and none left."""
    c = DedupConfig(THRESHOLDS, SubjectSealer(SqliteSubjectKeys(":memory:")), TOK, 3, dimension=DIM)
    people = People(20, seed=5)
    net = LocalNetwork(c)
    net.send([people.capture(i, f"doc-{i}", i) for i in range(20)])
    net.send([people.capture(4, "doc-4", 30 + n) for n in range(3)])  # several samples of one person
    net.run()
    held = sum(sh.rows_of("doc-4") for sh in net.shards.values())
    assert held >= 2
    reports = [shard_step(net.shards[n], [(10**6, erase_command([], "doc-4", NOW, "E-1"))], c, NOW).erasures
               for n in range(3)]
    assert [len(r) for r in reports] == [1, 1, 1] and {e.erasure_id for r in reports for e in r} == {"E-1"}
    assert sum(e.rows_removed for r in reports for e in r) == held and all(e.rows_left == 0 for r in reports for e in r)
    assert sum(e.records for r in reports for e in r) == 1  # the one shard that held them says which record went
    again = shard_step(net.shards[0], [(10**6 + 1, erase_command([], "doc-4", NOW, "E-1"))], c, NOW).erasures
    assert [(e.rows_removed, e.rows_left) for e in again] == [(0, 0)]  # a redelivery: nothing more, nothing left


def test_officers_decide_links_the_first_decision_stands_and_red_may_confirm_itself() -> None:
    side = {"identity": "", "probe_id": "p", "event_id": "00000000-0000-4000-8000-000000000001",
            "source": "crossing", "post_id": "ID-BTH", "occurred_ms": 1, "quality": 0.9}
    pair = {"kind": "PAIR", "link_id": "L1", "model": MODEL, "pair": "a~b@0", "score": 0.65,
            "sides": [{**side, "subject": "S1", "identity": "d1"}, {**side, "subject": "S2", "identity": "d2"}],
            "erased": False, "status": "", "officer_token": "", "decided_at": NOW}
    out = apply_command(None, pair, THRESHOLDS.for_model, NOW, False, "k")
    assert out.record["status"] == "OPEN" and out.record["colour"] == "YELLOW" and out.facts == ()
    state = out.state
    decide = {**pair, "kind": "DECIDE", "status": "CONFIRMED", "officer_token": "OT", "decided_at": NOW}
    out = apply_command(state, decide, THRESHOLDS.for_model, NOW, False, "k")
    assert out.record["status"] == "CONFIRMED" and out.record["decided_by"] == "officer"
    assert len(out.facts) == 2, "a confirmed link is evidence of one face with two documents"
    again = apply_command(out.state, {**decide, "status": "REJECTED"}, THRESHOLDS.for_model, NOW, False, "k")
    assert again.record is None and again.state.status == "CONFIRMED"
    unpair = {**pair, "kind": "UNPAIR"}
    kept = apply_command(again.state, unpair, THRESHOLDS.for_model, NOW, False, "k")
    assert kept.record["status"] == "CONFIRMED", "a decision outlives its evidence"
    red = apply_command(None, {**pair, "score": 0.75}, THRESHOLDS.for_model, NOW, True, "k")
    assert (red.record["status"], red.record["decided_by"], red.record["colour"]) == ("CONFIRMED", "auto", "RED")
    gone = apply_command(LinkState.from_bytes(out.state.to_bytes()), {**unpair, "erased": True}, THRESHOLDS.for_model, NOW,
                 False, "k")
    assert gone.state is None and gone.tombstone and gone.record is None
    withdrawn = apply_command(apply_command(None, pair, THRESHOLDS.for_model, NOW, False, "k").state, unpair, THRESHOLDS.for_model,
                      NOW, False, "k")
    assert withdrawn.record["status"] == "WITHDRAWN"


def _row() -> dict:
    return {"link_id": "L1", "status": "OPEN", "officer_token": "", "raised_at": NOW}


def test_adjudication_is_checked_against_the_link_and_refused_with_reasons() -> None:
    decision = {"link_id": "L1", "decision": "CONFIRM", "officer_id": "OFF-1", "decided_at": NOW + timedelta(hours=1)}
    officer = TOK.token("officer", "OFF-1")
    assert adjudicate(_row(), decision, officer) == {"status": "CONFIRMED", "officer_token": officer,
                                                     "decided_at": NOW + timedelta(hours=1)}
    confirmed = {**_row(), "status": "CONFIRMED", "officer_token": officer}
    assert adjudicate(confirmed, decision, officer) is None  # a replay changes nothing
    assert adjudicate(_row(), {**decision, "decision": "REJECT"}, officer)["status"] == "REJECTED"
    for link, dec, code in [
        (None, decision, "unknown_link"),
        (confirmed, {**decision, "decision": "REJECT"}, "already_decided"),
        (_row(), {**decision, "officer_id": " "}, "missing_officer"),
        (_row(), {**decision, "decided_at": NOW - timedelta(days=1)}, "before_link"),
    ]:
        with pytest.raises(AdjudicationRejected) as err:
            adjudicate(link, dec, officer)
        assert err.value.code == code and "OFF-1" not in str(err.value)
    record = {"status": "CONFIRMED", "updated_at": NOW, "event_id": "00000000-0000-4000-8000-000000000001"}
    later_open = {"status": "OPEN", "updated_at": NOW + timedelta(days=9), "event_id": ""}
    assert link_row(record)["version"] > link_row(later_open)["version"]


def test_link_commands_name_no_template_and_carry_both_sides(reference) -> None:
    _, net = reference
    commands = [read(LINK_COMMAND, v) for part in net.pairs for _, v in part]
    pairs = [c for c in commands if c["kind"] == "PAIR"]
    assert pairs and all(len(c["sides"]) == 2 and c["sides"][0]["subject"] < c["sides"][1]["subject"] for c in pairs)
