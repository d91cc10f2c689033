"""Dedup on the stream without a broker: the shard chain, replays, restarts, sealing and adjudication."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from agents.biometric import (
    AdjudicationRejected,
    Capture,
    DedupConfig,
    StepOutput,
    adjudicate,
    erase_command,
    link_row,
    load_entries,
    search_commands,
    shard_step,
    subject_id,
)
from agents.dedup import Shard, Thresholds, route, shard_of
from agents.gallery import ExactIndex, SketchIndex
from agents.pseudonymise import Tokeniser
from agents.sealing import KeyDestroyed, SealError, SqliteSubjectKeys, SubjectSealer, person_key, subject_key

T = Thresholds("t-test", red=0.6, yellow=0.45)
DIM = 128
NOW = datetime(2026, 11, 20, 8, tzinfo=UTC)


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


KEYS = SqliteSubjectKeys(":memory:")  # one key store for every worker of a test, like the deployment's


def _cfg(shards: int) -> DedupConfig:
    return DedupConfig(T, SubjectSealer(KEYS), Tokeniser(b"unit-test-token-key", "k-test"), shards, "exact")


def _capture(i: int, identity: str) -> Capture:
    return Capture(f"00000000-0000-4000-8000-{i:012d}", f"00000000-0000-4000-8000-{i:012d}", "crossing", "ID-BTH",
                   NOW + timedelta(minutes=i), identity, {}, "biometric")


class Chain:
    """biometric.probes as one queue per partition; each delivery round gives every shard its queue as a batch."""

    def __init__(self, shards: int, index: str = "exact") -> None:
        self.cfg = _cfg(shards)
        new = (lambda n: Shard(n, ExactIndex(DIM))) if index == "exact" else (lambda n: Shard(n, SketchIndex(DIM)))
        self.shards = [new(n) for n in range(shards)]
        self.queues: dict[int, list[bytes]] = defaultdict(list)
        self.gallery: dict[int, list[bytes]] = defaultdict(list)
        self.decisions: list[dict] = []
        self.links: list[dict] = []
        self.outputs: list[StepOutput] = []

    def send(self, cap: Capture, template: np.ndarray) -> None:
        [(partition, value)] = search_commands([(cap, template)], self.cfg.sealer, self.cfg.shards)
        self.queues[partition].append(value)

    def drain(self) -> None:
        while any(self.queues.values()):
            queues, self.queues = self.queues, defaultdict(list)
            for number, commands in sorted(queues.items()):
                out = shard_step(self.shards[number], commands, self.cfg, NOW)
                self.outputs.append(out)
                for partition, value in out.forwards + out.aliases:
                    self.queues[partition].append(value)
                self.gallery[number] += [v for _, v in out.gallery]
                self.decisions += out.decisions
                self.links += out.links


def _people(n: int, seed: int) -> tuple[np.ndarray, np.random.Generator]:
    rng = np.random.default_rng(seed)
    return _unit(rng.standard_normal((n, DIM))), rng


def _capture_of(face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return _unit(0.85 * face + 0.53 * _unit(rng.standard_normal(DIM)))


def _script(n_people: int, seed: int) -> tuple[list[tuple[int, int, str]], np.ndarray, np.random.Generator]:
    """(capture number, person, identity): everybody twice under their document, every 10th once more under another."""
    faces, rng = _people(n_people, seed)
    script = [(i, i, f"doc-{i}") for i in range(n_people)]
    script += [(n_people + i, i, f"doc-{i}") for i in range(n_people)]
    script += [(2 * n_people + i, i, f"forged-{i}") for i in range(0, n_people, 10)]
    return script, faces, rng


@pytest.mark.parametrize("shards", [1, 2, 4])
def test_chain_over_shards_decides_like_one_gallery(shards: int) -> None:
    script, faces, rng = _script(200, seed=5)
    templates = [_capture_of(faces[person], rng) for _, person, _ in script]
    reference, chain = Chain(1), Chain(shards)
    for (i, _, identity), template in zip(script, templates, strict=True):
        for c in (reference, chain):
            c.send(_capture(i, identity), template)
            c.drain()  # one probe at a time: the chain must then decide exactly as one gallery does
    got = [(d["probe_id"], d["outcome"], d["subject_id"], round(d["score"], 5)) for d in chain.decisions]
    want = [(d["probe_id"], d["outcome"], d["subject_id"], round(d["score"], 5)) for d in reference.decisions]
    assert got == want
    outcomes = [d["outcome"] for d in chain.decisions]
    assert outcomes.count("enrol") == 200 and outcomes.count("known_traveller") == 200
    assert outcomes.count("link_red") + outcomes.count("link_yellow") == 20 and len(chain.links) == 20
    assert sum(len(s) for s in chain.shards) == 200
    if shards > 1:
        assert all(len(s) > 0 for s in chain.shards)  # subjects spread over every shard
    # a confirmed alias makes the next capture under the forged identity known, not a second link
    person = 10
    chain.send(_capture(9999, f"forged-{person}"), _capture_of(faces[person], rng))
    chain.drain()
    assert chain.decisions[-1]["outcome"] == "known_traveller"


def test_batches_in_flight_enrol_each_person_once() -> None:
    faces, rng = _people(300, seed=6)
    chain = Chain(4)
    for i in range(300):
        chain.send(_capture(i, f"doc-{i}"), _capture_of(faces[i], rng))
    chain.drain()
    for i in range(300):  # second captures, all in flight together
        chain.send(_capture(1000 + i, f"doc-{i}"), _capture_of(faces[i], rng))
    chain.drain()
    enrolled = [d for d in chain.decisions if d["outcome"] == "enrol"]
    assert len(enrolled) == 300 == len({d["subject_id"] for d in enrolled})
    first = {d["probe_id"][-4:]: d["subject_id"] for d in enrolled}
    for d in chain.decisions[300:]:
        assert d["outcome"] == "known_traveller"
        assert d["subject_id"] == first[f"{int(d['probe_id'][-4:]) - 1000:04d}"]


def test_replayed_commands_change_nothing() -> None:
    faces, rng = _people(50, seed=7)
    chain = Chain(2)
    # keep every command each shard receives, to deliver them all again (a crash before the commit)
    delivered: list[tuple[int, bytes]] = []

    def drain() -> None:
        while any(chain.queues.values()):
            queues, chain.queues = chain.queues, defaultdict(list)
            for number, commands in sorted(queues.items()):
                delivered.extend((number, c) for c in commands)
                out = shard_step(chain.shards[number], commands, chain.cfg, NOW)
                for partition, value in out.forwards + out.aliases:
                    chain.queues[partition].append(value)
                chain.decisions.extend(out.decisions)

    for i in range(50):
        chain.send(_capture(i, f"doc-{i}"), _capture_of(faces[i], rng))
    drain()
    chain.send(_capture(50, "forged-3"), _capture_of(faces[3], rng))
    drain()
    first = {d["probe_id"]: (d["outcome"], d["subject_id"]) for d in chain.decisions}
    assert first[_capture(50, "").probe_id] in {("link_red", first[_capture(3, "").probe_id][1]),
                                                ("link_yellow", first[_capture(3, "").probe_id][1])}
    sizes = [len(s) for s in chain.shards]
    again, rewritten = [], []
    for number, command in delivered:
        out = shard_step(chain.shards[number], [command], chain.cfg, NOW)
        again += out.decisions
        rewritten += out.gallery
    assert {d["probe_id"]: (d["outcome"], d["subject_id"]) for d in again} == first
    assert [len(s) for s in chain.shards] == sizes and rewritten == []


@pytest.mark.parametrize("index", ["exact", "sketch"])
def test_shards_reloaded_from_their_gallery_records_know_everyone(index: str) -> None:
    faces, rng = _people(400, seed=8)
    chain = Chain(4, index)
    for i in range(400):
        chain.send(_capture(i, f"doc-{i}"), _capture_of(faces[i], rng))
    chain.drain()
    subjects = {d["probe_id"]: d["subject_id"] for d in chain.decisions}
    restarted = Chain(4, index)  # a new worker: empty shards, filled only from the gallery topic
    for number in range(4):
        load_entries(restarted.shards[number], chain.gallery[number], restarted.cfg.sealer)
    assert [len(s) for s in restarted.shards] == [len(s) for s in chain.shards]
    for i in range(400):
        restarted.send(_capture(1000 + i, f"doc-{i}"), _capture_of(faces[i], rng))
    restarted.drain()
    assert len(restarted.decisions) == 400
    assert all(d["outcome"] == "known_traveller" for d in restarted.decisions)
    assert sorted((d["probe_id"], d["subject_id"]) for d in restarted.decisions) == sorted(
        (_capture(1000 + i, "").probe_id, subjects[_capture(i, "").probe_id]) for i in range(400))


def test_templates_leave_a_shard_only_sealed() -> None:
    faces, rng = _people(30, seed=9)
    chain = Chain(2)
    templates = [_capture_of(faces[i], rng) for i in range(30)]
    for i in range(30):
        chain.send(_capture(i, f"doc-{i}"), templates[i])
    chain.send(_capture(30, "forged-1"), _capture_of(faces[1], rng))
    chain.drain()
    raw = [t.astype("<f4").tobytes() for t in templates]
    emitted = [v for out in chain.outputs for _, v in out.forwards + out.aliases + out.gallery]
    assert emitted and not any(chunk[:64] in blob for blob in emitted for chunk in raw)
    for row in chain.decisions + [link_row(x) for x in chain.links]:
        assert not any(isinstance(v, bytes | np.ndarray) for v in row.values())
        assert all(not isinstance(v, list) or len(v) <= 3 for v in row.values())


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


def test_records_that_cannot_be_opened_are_skipped_and_counted_not_fatal() -> None:
    faces, rng = _people(20, seed=12)
    chain = Chain(1)
    for i in range(20):
        chain.send(_capture(i, f"doc-{i}"), _capture_of(faces[i], rng))
    chain.drain()
    legacy = b"\x09gallery-1" + bytes(12) + bytes(64)  # the shared-key format from before per-subject sealing
    records = list(chain.gallery[0])
    from agents.biometric import GALLERY_ENTRY, _read
    from streams.wire import avro_bytes

    old = _read(GALLERY_ENTRY, records[0])
    records.append(avro_bytes(GALLERY_ENTRY, {**old, "subject": "S-legacy", "sealed_template": legacy}))
    restarted = Chain(1)
    assert load_entries(restarted.shards[0], records, restarted.cfg.sealer) == (20, 1)
    [(partition, good)] = search_commands([(_capture(99, "doc-3"), _capture_of(faces[3], rng))], chain.cfg.sealer, 1)
    from agents.biometric import PROBE_COMMAND

    cmd = _read(PROBE_COMMAND, good)
    sealed = cmd["sealed_template"]
    bad = avro_bytes(PROBE_COMMAND, {**cmd, "sealed_template": sealed[:-1] + bytes([sealed[-1] ^ 1])})  # one bit
    out = shard_step(restarted.shards[0], [bad, good], restarted.cfg, NOW)
    assert out.unreadable == 1 and [d["outcome"] for d in out.decisions] == ["known_traveller"]


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


def test_an_erased_person_is_forgotten_by_every_shard_and_their_records_cannot_be_opened() -> None:
    faces, rng = _people(60, seed=11)
    chain = Chain(3)
    for i in range(60):
        chain.send(_capture(i, f"doc-{i}"), _capture_of(faces[i], rng))
    chain.drain()
    chain.send(_capture(60, "forged-4"), _capture_of(faces[4], rng))  # someone presents person 4's face on forged-4
    chain.drain()
    gone = subject_id(chain.cfg.tok, _capture(3, "").probe_id)
    four = subject_id(chain.cfg.tok, _capture(4, "").probe_id)
    assert any(gone in s for s in chain.shards) and "forged-4" in next(s for s in chain.shards if four in s).identities[four]
    chain.send(_capture(61, "doc-3"), _capture_of(faces[3], rng))  # in flight when the erasure happens
    # lintas erase: destroy person 3's keys, then ERASE to every shard (identity forged-4 erased too)
    KEYS.destroy([person_key("doc-3"), subject_key(gone), person_key("forged-4")])
    for number in range(3):
        chain.queues[number].insert(0, erase_command(number, gone, "doc-3", NOW))
        chain.queues[number].insert(0, erase_command(number, "", "forged-4", NOW))
    before, steps = len(chain.decisions), len(chain.outputs)
    chain.drain()
    assert len(chain.decisions) == before and sum(o.erased for o in chain.outputs) == 1  # the in-flight probe dropped
    assert not any(gone in s for s in chain.shards) and sum(len(s) for s in chain.shards) == 59
    assert all("forged-4" not in ids for s in chain.shards for ids in s.identities.values())
    rewritten = [k for o in chain.outputs[steps:] for k, _ in o.gallery]
    assert rewritten == [four]  # person 4's record, without the erased identity
    # the records written before the erasure no longer open; a reloaded worker knows everyone else, not person 3
    restarted = Chain(3)
    for number in range(3):
        load_entries(restarted.shards[number], chain.gallery[number], restarted.cfg.sealer)
    assert sum(len(s) for s in restarted.shards) == 59 and not any(gone in s for s in restarted.shards)
    for c in (chain, restarted):
        c.send(_capture(70, "doc-3"), _capture_of(faces[3], rng))
        c.send(_capture(71, "doc-5"), _capture_of(faces[5], rng))
        c.drain()
        assert [d["outcome"] for d in c.decisions[-2:]] == ["enrol", "known_traveller"]  # person 3 is new again


def test_routes_visit_every_shard_once_and_end_at_the_owner() -> None:
    for shards in (1, 2, 4, 7):
        for probe in ("a", "b", "c", "d"):
            owner = shard_of(probe, shards)
            hops = [route(owner, h, shards) for h in range(shards)]
            assert sorted(s for s, _ in hops) == list(range(shards))
            assert hops[-1] == (owner, True) and not any(last for _, last in hops[:-1])


def _link() -> dict:
    return {"link_id": "L1", "subject_id": "S1", "identity_token": "t", "probe_id": "p", "event_id": "00000000-0000-4000-8000-000000000001",
            "source": "crossing", "post_id": "ID-BTH", "colour": "YELLOW", "score": 0.5, "thresholds_version": "t",
            "status": "OPEN", "officer_token": "", "raised_at": NOW, "updated_at": NOW, "key_id": "k"}


def test_adjudication_confirms_rejects_and_refuses_with_reasons() -> None:
    tok = Tokeniser(b"k", "k")
    decision = {"link_id": "L1", "decision": "CONFIRM", "officer_id": "OFF-1", "decided_at": NOW + timedelta(hours=1)}
    confirmed = adjudicate(_link(), decision, tok)
    assert confirmed["status"] == "CONFIRMED" and confirmed["officer_token"] == tok.token("officer", "OFF-1")
    assert adjudicate(confirmed, decision, tok) is confirmed  # a replay changes nothing
    assert adjudicate(_link(), {**decision, "decision": "REJECT"}, tok)["status"] == "REJECTED"
    for link, dec, code in [
        (None, decision, "unknown_link"),
        (confirmed, {**decision, "decision": "REJECT"}, "already_decided"),
        (_link(), {**decision, "officer_id": " "}, "missing_officer"),
        (_link(), {**decision, "decided_at": NOW - timedelta(days=1)}, "before_link"),
    ]:
        with pytest.raises(AdjudicationRejected) as err:
            adjudicate(link, dec, tok)
        assert err.value.code == code and "OFF-1" not in str(err.value)
    assert link_row(confirmed)["version"] > link_row({**_link(), "updated_at": NOW + timedelta(days=9)})["version"]
