"""One gallery shard's state: identities in memory while in use, as their records otherwise; samples; pairs.

A shard holds every identity hashed to it, but a step touches few of them: a national
gallery is mostly people seen once. So an identity's decoded state (its subjects, window
and templates: about 13 KB) is kept only for the ``hot`` identities most recently used;
every other one is its latest record, the very bytes its gallery partition holds
(templates sealed), in :class:`Records`: in memory here, a file on local disk in the worker
(:class:`streams.template_store.RecordFile`). A step reads an identity back from its record
when it needs it, and a record is what the shard would be read back from after a restart,
so keeping or dropping a state changes no decision (a test checks it with ``hot=0``).
What a shard keeps for every identity is its samples' rows in the 1:N index.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import fastavro
import numpy as np

from agents.dedup import IdentityState, Seen, SubjectState, identity_key
from agents.gallery import SampleIndex
from agents.sealing import KeyDestroyed, SealError, SubjectSealer
from schemas.contracts import internal_schema
from schemas.wire import avro_bytes

if TYPE_CHECKING:
    from agents.biometric import DedupConfig

_NAMED: dict[str, Any] = {}
IDENTITY_RECORD = internal_schema("IdentityRecord", _NAMED)
# a reader schema of the record's leading fields: Avro skips the rest (a third of a full decode)
RECORD_HEAD = fastavro.parse_schema({"type": "record", "name": "IdentityRecord", "namespace": "id.lintas.internal",
                                     "fields": IDENTITY_RECORD["fields"][:4]})
HOT = 20_000  # decoded identities a shard keeps (LINTAS_DEDUP_HOT_IDENTITIES): about 13 KB each


def read(schema: Any, data: bytes, reader: Any = None) -> dict[str, Any]:
    """One record of an internal schema (only ``reader``'s fields, if given)."""
    return fastavro.schemaless_reader(io.BytesIO(data), schema, reader or schema)  # type: ignore[return-value]


def opened_templates(sealer: SubjectSealer,
                     items: Sequence[tuple[bytes, str]]) -> tuple[list[np.ndarray | None], int, int]:
    """Open sealed templates: (templates, erased, unreadable); ``None`` where one cannot be opened.

    *Erased*: the key was destroyed. *Unreadable*: tampered, moved, or sealed in a format or
    with a key this store never had. Neither stops the batch: one bad record must not halt
    a shard (the caller counts and logs them).
    """
    out: list[np.ndarray | None] = []
    erased = unreadable = 0
    for result in sealer.open(items):
        if isinstance(result, SealError):
            out.append(None)
            erased += isinstance(result, KeyDestroyed)
            unreadable += not isinstance(result, KeyDestroyed)
        else:
            out.append(np.frombuffer(result, "<f4"))
    return out, erased, unreadable


class Records:
    """Each identity's latest record by identity key, as bytes: here in memory (a file in the worker)."""

    def __init__(self) -> None:
        """No records."""
        self._held: dict[str, Any] = {}  # key → its record (a file's store: where the record is)

    def __len__(self) -> int:
        """Records held."""
        return len(self._held)

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` has a record."""
        return key in self._held

    def keys(self) -> list[str]:
        """Every key, in the order first put."""
        return list(self._held)

    def get(self, key: str) -> bytes | None:
        """The key's record, or None."""
        return self._held.get(key)

    def put(self, key: str, value: bytes) -> None:
        """The key's record is now ``value``."""
        self._held[key] = value

    def drop(self, key: str) -> None:
        """Forget the key's record (an erased or unreadable identity)."""
        self._held.pop(key, None)

    def close(self) -> None:
        """Nothing to release here (a file's blocks go back to the file system)."""


@dataclass(frozen=True)
class PairRecord:
    """A pair found in this shard: local sample (subject, probe) of an identity here, the remote one, their link."""

    local: tuple[str, str]
    remote: tuple[str, str]
    remote_identity: str  # identity key
    link_id: str


class Shard:
    """One gallery shard: the identities hashed here, their subjects' samples in 1:N indexes, the pairs found here."""

    def __init__(self, number: int, records: Records | None = None, hot: int = HOT) -> None:
        """An empty shard; identities' records in ``records`` (memory if None), ``hot`` of them decoded at most."""
        self.number, self.hot_max = number, hot
        self.records = records if records is not None else Records()
        self.hot: dict[str, IdentityState] = {}  # decoded identities, least recently used first
        self.samples: dict[str, dict[tuple[str, str], Seen]] = {}  # a hot identity's samples, as indexed
        self.models: set[str] = set()
        self.galleries: dict[str, SampleIndex] = {}
        self.pairs: dict[str, dict[tuple[tuple[str, str], tuple[str, str]], PairRecord]] = {}  # identity key → pairs
        self._by_remote: dict[tuple[str, str], set[tuple[str, tuple[str, str]]]] = {}  # remote → (identity, local)
        self._by_remote_identity: dict[str, set[tuple[str, str]]] = {}  # remote identity key → remote samples

    def __len__(self) -> int:
        """Identities held (as of the last step: each step ends by writing its identities' records)."""
        return len(self.records)

    def __contains__(self, key: object) -> bool:
        """Whether the identity key is held here."""
        return key in self.hot or key in self.records

    def sample_count(self) -> int:
        """Samples in the indexes."""
        return sum(len(g) for g in self.galleries.values())

    def gallery(self, model: str, cfg: DedupConfig) -> SampleIndex:
        """The 1:N index of one model (created empty)."""
        if model not in self.galleries:
            self.galleries[model] = SampleIndex(cfg.dimension, cfg.exact_max, cfg.rerank, cfg.nprobe, cfg.store)
        return self.galleries[model]

    # -- identities: decoded while in use --------------------------------------------------------------------
    def state(self, key: str, cfg: DedupConfig) -> IdentityState | None:
        """The identity's state, read back from its record if it is not in memory; None if it is not held."""
        state = self.hot.pop(key, None)
        if state is None:
            raw = self.records.get(key)
            if raw is None:
                return None
            states, _ = decoded(cfg.sealer, [(key, read(IDENTITY_RECORD, raw))])
            if not states:
                self.records.drop(key)  # its key was destroyed meanwhile: never more than an erasure's leftover
                return None
            state = states[0]
            self._indexed(state, cfg)
        self.hot[key] = state
        return state

    def enrol(self, state: IdentityState) -> None:
        """A new identity (its record is written at the end of the step)."""
        self.hot[state.key] = state
        self.models.add(state.model)

    def erase(self, identity: str, cfg: DedupConfig) -> dict[str, int]:
        """Take an identity token's samples out of the indexes (every model): its keys here, each with its rows.

        Its rows are found in the index itself, not through its state: the person's key may be
        destroyed already, and then the record no longer opens.
        """
        keys = {}
        for model in sorted(self.models):
            key = identity_key(model, identity)
            if key in self:
                index = self.gallery(model, cfg)
                rows = index.owned(key)
                index.remove(rows)
                self.hot.pop(key, None)
                self.samples.pop(key, None)
                keys[key] = len(rows)
        return keys

    def rows_of(self, identity: str) -> int:
        """The identity token's samples still in the indexes, under any model (a scan: for an erasure's proof)."""
        return sum(len(index.owned(identity_key(model, identity))) for model, index in self.galleries.items())

    def written(self, key: str, value: bytes | None) -> None:
        """The identity's record as the step wrote it (None: gone)."""
        if value is None:
            self.records.drop(key)
            self.hot.pop(key, None)
            self.samples.pop(key, None)
        else:
            self.records.put(key, value)

    def cool(self) -> None:
        """Drop the least recently used decoded identities past ``hot`` (their records stay)."""
        while len(self.hot) > self.hot_max:
            key = next(iter(self.hot))
            del self.hot[key]
            self.samples.pop(key, None)

    def each(self, cfg: DedupConfig, chunk: int = 2000) -> Iterator[IdentityState]:
        """Every identity held, decoded (those not in memory are not kept): for offline readers."""
        keys = self.records.keys()
        for start in range(0, len(keys), chunk):
            cold = [(k, read(IDENTITY_RECORD, self.records.get(k) or b"")) for k in keys[start:start + chunk]
                    if k not in self.hot]
            states = {s.key: s for s in decoded(cfg.sealer, cold)[0]}
            for key in keys[start:start + chunk]:
                state = self.hot.get(key) or states.get(key)
                if state is not None:
                    yield state

    def _indexed(self, state: IdentityState, cfg: DedupConfig) -> None:
        """Note a state read back: its samples are those its index holds (set again if thresholds changed since)."""
        samples = state.samples(cfg.thresholds.for_model(state.model), cfg.namer(state))
        index = self.gallery(state.model, cfg)
        wanted = [(state.key, s) for s in samples]
        if not index.holds(state.key, wanted):
            index.remove(index.owned(state.key))
            if samples:
                index.add(wanted, np.stack([samples[s].template for s in samples]), [state.key] * len(samples))
        self.samples[state.key] = samples
        self.models.add(state.model)

    def set_samples(self, key: str, samples: dict[tuple[str, str], Seen], cfg: DedupConfig) -> None:
        """Make ``samples`` the (hot) identity's current samples in its model's index."""
        state = self.hot[key]
        old = self.samples.get(key, {})
        index = self.gallery(state.model, cfg)
        index.remove([(key, s) for s in old if s not in samples])
        fresh = [s for s in samples if s not in old]
        if fresh:
            index.add([(key, s) for s in fresh], np.stack([samples[s].template for s in fresh]), [key] * len(fresh))
        if samples:
            self.samples[key] = dict(samples)
        else:
            self.samples.pop(key, None)

    # -- pairs found here ------------------------------------------------------------------------------------
    def record_pair(self, owner: str, rec: PairRecord) -> bool:
        """Keep a pair under the identity of its local sample; False if it was kept already."""
        held = self.pairs.setdefault(owner, {})
        if (rec.local, rec.remote) in held:
            return False
        held[(rec.local, rec.remote)] = rec
        self._by_remote.setdefault(rec.remote, set()).add((owner, rec.local))
        self._by_remote_identity.setdefault(rec.remote_identity, set()).add(rec.remote)
        return True

    def drop_pairs(self, owner: str, local: tuple[str, str] | None = None) -> list[PairRecord]:
        """Forget the pairs kept under ``owner`` (only those of sample ``local`` if given)."""
        held = self.pairs.get(owner, {})
        gone = [r for k, r in held.items() if local is None or k[0] == local]
        for r in gone:
            self.drop_pair(owner, r)
        return gone

    def drop_pair(self, owner: str, rec: PairRecord) -> None:
        """Forget one pair kept under ``owner``."""
        held = self.pairs.get(owner, {})
        held.pop((rec.local, rec.remote), None)
        self._by_remote.get(rec.remote, set()).discard((owner, rec.local))
        if not held:
            self.pairs.pop(owner, None)

    def pairs_with(self, remote: tuple[str, str]) -> list[tuple[str, PairRecord]]:
        """(owner, pair) for every pair kept here with the remote sample ``remote``."""
        return [(owner, self.pairs[owner][(local, remote)]) for owner, local in sorted(self._by_remote.get(remote, ()))
                if (local, remote) in self.pairs.get(owner, {})]

    def remotes_of(self, identity: str) -> list[tuple[str, str]]:
        """Remote samples of an identity key that pairs here name."""
        return sorted(self._by_remote_identity.get(identity, ()))

    def forget_remote_identity(self, identity: str) -> None:
        """No pair here names the remote identity key any more."""
        self._by_remote_identity.pop(identity, None)

    def remote_identities(self) -> list[str]:
        """Remote identity keys that pairs here name."""
        return sorted(self._by_remote_identity)

# -- the shard's changelog: one record per identity ---------------------------------------------------------------
def _sealed(c: Seen) -> dict[str, Any]:
    return {"probe_id": c.probe_id, "event_id": c.event_id, "source": c.source, "post_id": c.post_id,
            "occurred_ms": c.occurred_ms, "quality": c.quality, "sealed_template": c.sealed}


def record_bytes(state: IdentityState, pairs: Iterable[PairRecord]) -> bytes:
    """The identity's IdentityRecord (templates stay as sealed by ingest)."""
    return avro_bytes(IDENTITY_RECORD, {
        "identity": state.identity, "identity_kind": state.kind, "model": state.model, "version": state.version,
        "seen": state.seen, "late": state.late, "cut_ms": state.cut[0] if state.cut else -1,
        "cut_probe": state.cut[1] if state.cut else "", "slid": state.slid,
        "base": [{"subject": s.subject, "samples": [_sealed(c) for c in s.samples]} for s in state.base],
        "window": [_sealed(c) for c in state.window],
        "pairs": [{"local_subject": r.local[0], "local_probe": r.local[1], "remote_subject": r.remote[0],
                   "remote_probe": r.remote[1], "remote_identity": r.remote_identity, "link_id": r.link_id}
                  for r in sorted(pairs, key=lambda r: (r.local, r.remote))],
    })


def decoded(sealer: SubjectSealer, records: Sequence[tuple[str, dict[str, Any]]]) -> tuple[list[IdentityState], int]:
    """The states of decoded IdentityRecords, templates opened in one call; (states, unreadable).

    An identity whose key was destroyed (erased) is left out, and so is one whose templates
    cannot be opened (counted).
    """
    captures = [[c for s in rec["base"] for c in s["samples"]] + rec["window"] for _, rec in records]
    opened = sealer.open([(c["sealed_template"], c["probe_id"]) for cs in captures for c in cs])
    states, unreadable, at = [], 0, 0
    for (key, rec), cs in zip(records, captures, strict=True):
        results, at = opened[at:at + len(cs)], at + len(cs)
        failed = [r for r in results if isinstance(r, SealError)]
        if failed:
            unreadable += any(not isinstance(r, KeyDestroyed) for r in failed)
            continue
        templates = [np.frombuffer(r, "<f4") for r in results if isinstance(r, bytes)]
        seen = {c["probe_id"]: Seen(c["probe_id"], c["event_id"], c["source"], c["post_id"], c["occurred_ms"],
                                    c["quality"], t, c["sealed_template"]) for c, t in zip(cs, templates, strict=True)}
        states.append(IdentityState(
            key, rec["identity"], rec["identity_kind"], rec["model"],
            base=[SubjectState(s["subject"], [seen[c["probe_id"]] for c in s["samples"]]) for s in rec["base"]],
            window=sorted((seen[c["probe_id"]] for c in rec["window"]), key=lambda c: c.order),
            version=rec["version"], seen=rec["seen"], slid=list(rec["slid"]), late=rec["late"],
            cut=(rec["cut_ms"], rec["cut_probe"]) if rec["cut_ms"] >= 0 else None))
    return states, unreadable


def load_records(shard: Shard, values: Iterable[tuple[bytes | None, bytes | None]], cfg: DedupConfig,
                 chunk: int = 2000) -> tuple[int, int]:
    """Rebuild a shard from its gallery partition: (key, record) oldest first; the highest version of a key wins.

    A tombstone removes what came before it. The records are kept (:class:`Records`), the
    samples indexed in chunks; no state stays decoded. An identity whose key was destroyed
    (erased) is skipped, and so is one whose templates cannot be opened (counted: the caller
    warns). Returns (identities loaded, unreadable records).
    """
    versions: dict[str, int] = {}
    for raw_key, value in values:
        name = (raw_key or b"").decode()
        if value is None:
            shard.records.drop(name)
            versions.pop(name, None)
            continue
        version = read(IDENTITY_RECORD, value, RECORD_HEAD)["version"]
        if version >= versions.get(name, version):
            shard.records.put(name, value)
            versions[name] = version
    del versions
    keys = shard.records.keys()
    loaded = unreadable = 0
    for start in range(0, len(keys), chunk):
        batch = [(k, read(IDENTITY_RECORD, shard.records.get(k) or b"")) for k in keys[start:start + chunk]]
        states, bad = decoded(cfg.sealer, batch)
        unreadable += bad
        kept = {s.key for s in states}
        for key, _ in batch:
            if key not in kept:
                shard.records.drop(key)
        by_model: dict[str, tuple[list[Any], list[np.ndarray], list[str]]] = {}
        for state in states:
            shard.models.add(state.model)
            samples = state.samples(cfg.thresholds.for_model(state.model), cfg.namer(state))
            keys_, vectors, owners = by_model.setdefault(state.model, ([], [], []))
            for s, c in samples.items():
                keys_.append((state.key, s))
                vectors.append(c.template)
                owners.append(state.key)
        for model, (keys_, vectors, owners) in sorted(by_model.items()):
            shard.gallery(model, cfg).add(keys_, np.stack(vectors), owners)
        for key, rec in batch:
            if key in kept:
                for p in rec["pairs"]:
                    shard.record_pair(key, PairRecord((p["local_subject"], p["local_probe"]),
                                                      (p["remote_subject"], p["remote_probe"]), p["remote_identity"],
                                                      p["link_id"]))
        loaded += len(states)
    return loaded, unreadable
