"""Synthetic regional border traffic with planted trafficking patterns and their ground truth.

Deterministic for a seed. Ordinary traffic: trips along the region's real
corridors (exit at one post, entry at the next), daily and weekly rhythms,
nationality mixes per country, families, tour groups, daily commuters across the
Johor–Singapore causeway, and a population of returning travellers whose faces
are captured again with fresh noise. Planted, at realistic low base rates (well
under 1 % of travellers), each recorded in the ground truth with its subjects
and evidence event ids:

* ``multiple_identity``: one face enrolled under two documents and names;
* ``escort_fanout``: one escort moving many unrelated travellers;
* ``minor_unrelated_adult``: a minor travelling with an unrelated adult;
* ``shuttling``: one subject crossing back and forth with changing companions;
* ``document_reuse``: one document number carried by two different faces, and
  the same document at two distant posts within an impossible time;
* ``scam_route``: Riau islands → Singapore → Cambodia, tourist purpose, one way;
* ``middle_east_transit``: Indonesia → Malaysia/Singapore with a Middle-East destination;
* ``non_procedural_worker``: work exits without a placement id, or tourist-visa
  exits of working-age travellers through Entikong, Aruk or Nunukan;
* ``boat_landing``: boats landing in Aceh, Medan, Dumai or Riau.

Templates are unit vectors per identity plus capture noise, clustered by
population so that genuine and impostor similarities overlap as real ones do.
No real person's data is used anywhere: names are random combinations of
common names, document numbers random.
"""

from __future__ import annotations

import base64
import heapq
import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from schemas.geography import (
    CORRIDORS,
    FAMILY_NAMES,
    GIVEN_NAMES,
    HOURLY,
    LANDING_SITES,
    LOCAL_OFFSET_H,
    MIDDLE_EAST_STATES,
    NATIONALITY_MIX,
    POSTS,
    WEEKDAY,
    Corridor,
    distance_km,
)
from streams.sim.faces import ClusteredFaces, FaceModel

if TYPE_CHECKING:
    from agents.pseudonymise import Tokeniser
    from agents.trafficking.facts import Fact

TRAVEL_TIME = {"FLIGHT": timedelta(hours=2, minutes=30), "VESSEL": timedelta(hours=1, minutes=20),
               "VEHICLE": timedelta(minutes=40)}
FLIGHT_SPEED_KMH, FLIGHT_OVERHEAD = 750.0, timedelta(minutes=45)  # gate to gate, incl. taxi and climb
# An ordinary traveller's trips are at least this far apart (commuters: a return the same day), so nobody
# ordinary is at two posts at once.
TRIP_GAP, COMMUTER_GAP = timedelta(hours=12), timedelta(hours=3)
# Planted patterns per 10,000 trips: well under 1 % of travellers in total.
RATES_PER_10K = {
    "multiple_identity": 4, "escort_fanout": 1, "minor_unrelated_adult": 3, "shuttling": 1,
    "document_reuse": 2, "scam_route": 2, "middle_east_transit": 2, "non_procedural_worker": 4,
}
# About 3 in 1,000 entries are refused, for ordinary reasons.
REFUSAL_RATE = 0.003
REFUSAL_REASONS = ["NO_VISA_OR_PERMIT", "INSUFFICIENT_MEANS", "INVALID_DOCUMENT", "PRIOR_OVERSTAY", "OTHER"]
# Ordinary look-alikes that rules must not flag: families, tour groups, commuters, licensed placements.
FAMILY_SHARE, TOUR_GROUP_SHARE, COMMUTER_SHARE, PLACED_WORKER_SHARE = 0.05, 0.01, 0.12, 0.01
PURPOSES = {"TOURISM": 55.0, "BUSINESS": 20.0, "FAMILY_VISIT": 12.0, "RETURNING_RESIDENT": 10.0, "STUDY": 3.0}


@dataclass(frozen=True)
class Mix:
    """The traffic's base rates, to test rules and budgets on other worlds than the default one.

    ``corridor_weights``: a factor per post on the volume of every corridor touching it (e.g. the
    land border posts); ``purposes``: weights of ordinary trips' purposes; ``planted_factor``: every
    planted pattern's rate times this; the shares are of ordinary trips.
    """

    corridor_weights: dict[str, float] = field(default_factory=dict)
    purposes: dict[str, float] = field(default_factory=lambda: dict(PURPOSES))
    planted_factor: float = 1.0
    family_share: float = FAMILY_SHARE
    tour_group_share: float = TOUR_GROUP_SHARE
    placed_worker_share: float = PLACED_WORKER_SHARE

    def weight(self, corridor: Corridor) -> float:
        """The corridor's relative volume in this mix."""
        return corridor.weight * self.corridor_weights.get(corridor.exit_post, 1.0) * \
            self.corridor_weights.get(corridor.entry_post, 1.0)


@dataclass
class Identity:
    """A document and the biographic identity on it."""

    number: str
    document_type: str
    issuing_state: str
    expiry: date
    given_names: str
    surname: str
    date_of_birth: date
    sex: str
    nationality: str


@dataclass
class Person:
    """A synthetic subject: one face, one or more identities."""

    subject: int
    identities: list[Identity]
    face: np.ndarray
    next_identity: int = 0

    def identity(self) -> Identity:
        """The identity used on this trip (alternates for multiple-identity subjects)."""
        ident = self.identities[self.next_identity % len(self.identities)]
        self.next_identity += 1
        return ident


@dataclass
class Truth:
    """Ground truth of a simulation: planted scenarios and the true subject of every capture."""

    seed: int
    scenarios: list[dict[str, Any]] = field(default_factory=list)
    event_subject: dict[str, int] = field(default_factory=dict)
    crossings: int = 0
    landings: int = 0
    persons: int = 0

    def add(self, kind: str, subjects: list[int], event_ids: list[str], **details: Any) -> None:
        """Record one planted pattern instance."""
        self.scenarios.append({"scenario": kind, "subjects": subjects, "event_ids": event_ids, **details})

    def to_json(self) -> dict[str, Any]:
        """Serialisable summary (the per-event subjects go to a CSV)."""
        counts: dict[str, int] = {}
        for s in self.scenarios:
            counts[s["scenario"]] = counts.get(s["scenario"], 0) + 1
        return {"seed": self.seed, "crossings": self.crossings, "landings": self.landings,
                "persons": self.persons, "scenario_counts": counts, "scenarios": self.scenarios}


class Simulator:
    """Generates crossing and landing events in time order."""

    def __init__(self, seed: int = 7, dim: int = 512, days: float = 1.0, end: datetime | None = None,
                 population: int = 5000, faces: FaceModel | None = None, returning_share: float | None = None,
                 rates_per_10k: dict[str, float] | None = None, mix: Mix | None = None) -> None:
        """A population of ``population`` travellers over ``days`` ending at ``end`` (default: now).

        ``faces``: the template model of every capture (default :class:`ClusteredFaces`).
        ``returning_share``: the share of ordinary trips made by someone from the population
        (who may travel again); the rest are first-time travellers seen once. ``None``: every
        trip draws from the population. ``rates_per_10k``: planted patterns per 10,000 trips,
        replacing :data:`RATES_PER_10K` for the kinds it names. ``mix``: the base rates (:class:`Mix`).
        """
        self.rng = random.Random(seed)  # noqa: S311 - synthetic data, reproducible by seed, not security
        self.np = np.random.default_rng(seed)
        self.dim = dim
        self.faces: FaceModel = faces or ClusteredFaces(dim=dim)
        self.returning_share = returning_share
        self.mix = mix or Mix()
        self.rates = {k: v * self.mix.planted_factor for k, v in {**RATES_PER_10K, **(rates_per_10k or {})}.items()}
        self._corridor_weights = [self.mix.weight(c) for c in CORRIDORS]
        self.end = (end or datetime.now(UTC)).replace(microsecond=0)
        self.start = self.end - timedelta(days=days)
        self.truth = Truth(seed=seed)
        self._centers = {nat: self._unit(self.np.standard_normal(dim)) for nat in
                         [*NATIONALITY_MIX, "XXA", "OTHER", *[n for mix in NATIONALITY_MIX.values() for n in mix]]}
        span_h = max(1, int((self.end - self.start).total_seconds() // 3600))
        self._hours = [self.start + timedelta(hours=h) for h in range(span_h)]
        self._hour_weights = [
            HOURLY[(t.hour + LOCAL_OFFSET_H) % 24] * WEEKDAY[(t + timedelta(hours=LOCAL_OFFSET_H)).weekday()]
            for t in self._hours
        ]
        self._heap: list[tuple[datetime, int, str, dict[str, Any]]] = []
        self._tick = 0
        self._pushed_crossings = 0
        self._numbers: set[str] = set()  # document numbers issued: unique, as real ones are
        self._trips: dict[int, list[tuple[datetime, timedelta]]] = {}  # subject → (departure, gap) of each trip
        self.people = [self._new_person(self._nationality("IDN" if i % 2 else "MYS")) for i in range(population)]

    # -- people -----------------------------------------------------------------------------------------------
    @staticmethod
    def _unit(v: np.ndarray) -> np.ndarray:
        return (v / np.linalg.norm(v)).astype(np.float32)

    def _nationality(self, country: str) -> str:
        mix = NATIONALITY_MIX.get(country, NATIONALITY_MIX["IDN"])
        return self.rng.choices(list(mix), weights=list(mix.values()))[0]

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _identity(self, nationality: str, sex: str, born: date) -> Identity:
        pool = nationality if nationality in GIVEN_NAMES else "OTHER"
        given = self.rng.choice(GIVEN_NAMES[pool][0 if sex == "M" else 1])
        surname = self.rng.choice(FAMILY_NAMES[pool])
        number = ""
        while not number or number in self._numbers:
            number = f"{self.rng.choice('ABCEXT')}{self.rng.randrange(10**7):07d}"
        self._numbers.add(number)
        return Identity(
            number=number, document_type="PASSPORT",
            issuing_state=nationality if nationality != "XXA" else "MMR",
            expiry=self.start.date() + timedelta(days=self.rng.randrange(30, 3650)),
            given_names=given, surname=surname, date_of_birth=born, sex=sex, nationality=nationality,
        )

    def _new_person(self, nationality: str, age: tuple[int, int] = (18, 70), sex: str | None = None) -> Person:
        sex = sex or self.rng.choice("MF")
        years = self.rng.uniform(*age)
        born = self.start.date() - timedelta(days=int(years * 365.25))
        face = self.faces.face(self.np, self._centers.get(nationality, self._centers["OTHER"]))
        self.truth.persons += 1
        return Person(subject=self.truth.persons, identities=[self._identity(nationality, sex, born)], face=face)

    def _capture(self, person: Person, quality: float | None = None) -> dict[str, Any]:
        q = quality if quality is not None else min(1.0, max(0.2, self.rng.gauss(0.75, 0.15)))
        vec = self.faces.capture(self.np, self.rng, person.face, q)
        device = self.rng.choice(["EGATE-V3", "DESK-CAM-2", "MOBILE-K1"])
        return {"modality": "FACE", "template": vec.astype("<f4").tobytes(), "dimension": self.dim,
                "quality": round(float(q), 3), "capture_device": device, "model": self.faces.model_id}

    # -- events -----------------------------------------------------------------------------------------------
    def _crossing(self, person: Person, post_id: str, direction: str, at: datetime, *, purpose: str = "TOURISM",
                  origin: str, destination: str, carrier: tuple[str, str] | None = None,
                  companions: list[dict[str, Any]] | None = None, visa: str | None = None,
                  placement: str | None = None, sponsor: dict[str, Any] | None = None,
                  identity: Identity | None = None, capture: bool | None = None) -> dict[str, Any]:
        post = POSTS[post_id]
        at = at.replace(microsecond=at.microsecond // 1000 * 1000)  # Avro timestamp-millis: what a post can send
        ident = identity or person.identity()
        event_id = self._uuid()
        take = capture if capture is not None else self.rng.random() < post.biometric_rate
        refused = direction == "ENTRY" and self.rng.random() < REFUSAL_RATE
        reason = self.rng.choice(REFUSAL_REASONS) if refused else None
        record = {
            "event_id": event_id,
            "post": {"post_id": post.post_id, "post_type": post.post_type, "country": post.country},
            "direction": direction, "occurred_at": at,
            "traveller": {
                "document": {"document_type": ident.document_type, "number": ident.number,
                             "issuing_state": ident.issuing_state, "expiry_date": ident.expiry},
                "given_names": ident.given_names, "surname": ident.surname, "date_of_birth": ident.date_of_birth,
                "sex": ident.sex, "nationality": ident.nationality,
            },
            "travel_purpose": purpose, "visa_type": visa, "placement_id": placement, "sponsor": sponsor,
            "companions": companions or [],
            "carrier": {"mode": carrier[0], "identifier": carrier[1]} if carrier else None,
            "origin_country": origin, "destination_country": destination,
            "refused": refused, "refusal_reason": reason,
            "officer_id": f"OFF-{post.country}-{self.rng.randrange(1, 400):04d}",
            "biometric": self._capture(person) if take else None,
        }
        if take:
            self.truth.event_subject[event_id] = person.subject
        self._push(at, "crossing", record)
        return record

    def _push(self, at: datetime, kind: str, record: dict[str, Any]) -> None:
        self._tick += 1
        self._pushed_crossings += kind == "crossing"
        heapq.heappush(self._heap, (at, self._tick, kind, record))

    def _carrier(self, corridor: Corridor) -> tuple[str, str]:
        if corridor.carrier_mode == "FLIGHT":
            airline = self.rng.choice(["GA", "QZ", "JT", "MH", "AK", "SQ", "TR", "FD"])
            return "FLIGHT", f"{airline}{self.rng.randrange(100, 999)}"
        if corridor.carrier_mode == "VESSEL":
            ferries = ["MV Batam Fast 3", "MV Sindo 7", "MV Majestic 2", "KM Nusa Jaya", "MV Dumai Express"]
            return "VESSEL", self.rng.choice(ferries)
        return "VEHICLE", f"BUS-{self.rng.randrange(1, 60):02d}"

    def _trip(self, person: Person, corridor: Corridor, at: datetime, reverse: bool = False,
              **kw: Any) -> list[dict[str, Any]]:
        """An exit at one post and the entry at the other: two events, the same identity."""
        exit_post, entry_post = (corridor.entry_post, corridor.exit_post) if reverse else (
            corridor.exit_post, corridor.entry_post)
        origin = kw.pop("origin", POSTS[exit_post].country)
        destination = kw.pop("destination", POSTS[entry_post].country)
        ident = kw.pop("identity", None) or person.identity()
        carrier = self._carrier(corridor)
        out = self._crossing(person, exit_post, "EXIT", at, origin=origin, destination=destination, carrier=carrier,
                             identity=ident, **kw)
        gap = COMMUTER_GAP if kw.get("visa") == "COMMUTER_PASS" else TRIP_GAP
        self._trips.setdefault(person.subject, []).append((at, gap))
        arrive = at + self._travel_time(corridor) + timedelta(minutes=self.rng.randrange(0, 40))
        entry = self._crossing(person, entry_post, "ENTRY", arrive, origin=origin, destination=destination,
                               carrier=carrier, identity=ident, **kw)
        return [out, entry]

    @staticmethod
    def _travel_time(corridor: Corridor) -> timedelta:
        """Flights take longer the farther they go; ferries and road crossings a fixed time."""
        if corridor.carrier_mode != "FLIGHT":
            return TRAVEL_TIME[corridor.carrier_mode]
        km = distance_km(POSTS[corridor.exit_post], POSTS[corridor.entry_post])
        return FLIGHT_OVERHEAD + timedelta(hours=km / FLIGHT_SPEED_KMH)

    def _free(self, candidates: list[Person], at: datetime, gap: timedelta) -> Person:
        """A random candidate with no other trip within ``gap`` of ``at``; a new traveller if all are busy."""
        for _ in range(20):
            person = self.rng.choice(candidates)
            if all(abs(t - at) >= max(gap, other) for t, other in self._trips.get(person.subject, ())):
                return person
        person = self._new_person(self._nationality("IDN" if self.rng.random() < 0.5 else "MYS"))
        self.people.append(person)
        return person

    def _traveller(self, at: datetime) -> Person:
        """Who makes an ordinary trip: someone of the population, or (``returning_share``) a first-timer."""
        if self.returning_share is not None and self.rng.random() >= self.returning_share:
            return self._new_person(self._nationality("IDN" if self.rng.random() < 0.5 else "MYS"))
        return self._free(self.people, at, TRIP_GAP)

    def _random_time(self) -> datetime:
        """A moment in the window, following hourly and weekday rhythms (local time)."""
        hour = self.rng.choices(self._hours, weights=self._hour_weights)[0]
        return hour + timedelta(seconds=self.rng.randrange(3600))

    def _companion(self, person: Person, relationship: str, escort: bool) -> dict[str, Any]:
        ident = person.identities[0]
        return {"document_number": ident.number, "document_issuing_state": ident.issuing_state,
                "relationship": relationship, "is_escort": escort}

    # -- traffic ----------------------------------------------------------------------------------------------
    def _ordinary_trip(self) -> None:
        corridor = self.rng.choices(CORRIDORS, weights=self._corridor_weights)[0]
        mix = self.mix
        at = self._random_time()
        reverse = self.rng.random() < 0.5
        roll = self.rng.random()
        if corridor.exit_post == "MY-JBC" and roll < COMMUTER_SHARE * 4:
            # Causeway commuters: the same people cross every working day; shuttling that is normal.
            person = self._free(self.people[:200], at, COMMUTER_GAP)
            self._trip(person, corridor, at, reverse, purpose="BUSINESS", visa="COMMUTER_PASS")
            return
        person = self._traveller(at)
        if roll < mix.family_share:
            parent, kids = person, [self._new_person(person.identities[0].nationality, (2, 17))
                                    for _ in range(self.rng.randint(1, 3))]
            self._trip(parent, corridor, at, reverse, purpose="FAMILY_VISIT")
            for kid in kids:
                self._trip(kid, corridor, at + timedelta(seconds=30), reverse, purpose="FAMILY_VISIT",
                           companions=[self._companion(parent, "PARENT", False)])
        elif roll < mix.family_share + mix.tour_group_share:
            guide = person
            self._trip(guide, corridor, at, reverse, purpose="BUSINESS")
            for _ in range(self.rng.randint(8, 25)):
                tourist = self._traveller(at)
                self._trip(tourist, corridor, at + timedelta(seconds=self.rng.randrange(20, 600)), reverse,
                           purpose="TOURISM", companions=[self._companion(guide, "TOUR_GUIDE", False)])
        elif (roll < mix.family_share + mix.tour_group_share + mix.placed_worker_share
              and corridor.exit_post.startswith("ID-")):
            self._trip(person, corridor, at, purpose="WORK", visa="C312",
                       placement=f"P2MI-{self.rng.randrange(10**8):08d}",
                       sponsor={"kind": "RECRUITMENT_AGENCY", "name": "PT Mitra Karya Licensed",
                                "registration_id": f"P3MI-{self.rng.randrange(1000):03d}", "contact": None})
        else:
            purpose = self.rng.choices(list(mix.purposes), weights=list(mix.purposes.values()))[0]
            self._trip(person, corridor, at, reverse, purpose=purpose, visa=self.rng.choice([None, "VISA_FREE", "VOA"]))

    def _corridor(self, exit_post: str, entry_post: str) -> Corridor:
        for c in CORRIDORS:
            if (c.exit_post, c.entry_post) == (exit_post, entry_post):
                return c
        raise KeyError((exit_post, entry_post))

    # -- planted patterns -------------------------------------------------------------------------------------
    def _plant(self, kind: str) -> None:
        getattr(self, f"_plant_{kind}")()

    def _plant_multiple_identity(self) -> None:
        person = self._new_person(self._nationality("IDN"))
        alias = self._identity(person.identities[0].nationality, person.identities[0].sex,
                               person.identities[0].date_of_birth - timedelta(days=self.rng.randrange(200, 2000)))
        person.identities.append(alias)
        ids = []
        for _ in range(self.rng.randint(2, 3)):
            corridor = self.rng.choice([c for c in CORRIDORS if c.exit_post.startswith("ID-")])
            ids += [e["event_id"] for e in self._trip(person, corridor, self._random_time(), capture=True)]
        self.truth.add("multiple_identity", [person.subject], ids)

    def _plant_escort_fanout(self) -> None:
        escort = self._new_person("IDN", (28, 50))
        route = self.rng.choice([("ID-ETK", "MY-TBD"), ("ID-NNK", "MY-TWU"), ("ID-BTH", "SG-HBF")])
        corridor = self._corridor(*route)
        ids, subjects = [], [escort.subject]
        base = self._random_time()
        for i in range(self.rng.randint(6, 12)):
            victim = self._new_person("IDN", (16, 30), sex=self.rng.choice("FFM"))
            at = base + timedelta(hours=i * self.rng.uniform(2, 10))
            at = min(at, self.end - timedelta(hours=4))
            relationship = self.rng.choice(["UNRELATED", "FRIEND", "EMPLOYER", "OTHER_RELATIVE"])
            ids += [e["event_id"] for e in self._trip(
                victim, corridor, at, purpose=self.rng.choice(["TOURISM", "FAMILY_VISIT"]), visa="VISA_FREE",
                companions=[self._companion(escort, relationship, True)], destination="MYS")]
            subjects.append(victim.subject)
        self.truth.add("escort_fanout", subjects, ids, escort=escort.subject)

    def _plant_minor_unrelated_adult(self) -> None:
        adult = self._new_person(self._nationality("IDN"), (25, 55))
        minor = self._new_person(adult.identities[0].nationality, (11, 17))
        corridor = self.rng.choice([c for c in CORRIDORS if c.exit_post.startswith("ID-")])
        at = self._random_time()
        ids = [e["event_id"] for e in self._trip(adult, corridor, at)]
        ids += [e["event_id"] for e in self._trip(minor, corridor, at + timedelta(seconds=40), purpose="TOURISM",
                                                  companions=[self._companion(adult, self.rng.choice(
                                                      ["UNRELATED", "FRIEND", "UNKNOWN"]), True)])]
        self.truth.add("minor_unrelated_adult", [minor.subject, adult.subject], ids)

    def _plant_shuttling(self) -> None:
        runner = self._new_person("IDN", (25, 45))
        corridor = self._corridor("ID-BTH", "SG-HBF")
        ids, subjects = [], [runner.subject]
        at = self.start + timedelta(hours=self.rng.uniform(0, 4))
        while at < self.end - timedelta(hours=3):
            companion = self._new_person("IDN", (17, 28), sex="F")
            ids += [e["event_id"] for e in self._trip(runner, corridor, at, purpose="TOURISM")]
            ids += [e["event_id"] for e in self._trip(companion, corridor, at + timedelta(seconds=50),
                                                      purpose="TOURISM",
                                                      companions=[self._companion(runner, "FRIEND", True)])]
            ids += [e["event_id"] for e in self._trip(runner, corridor, at + timedelta(hours=3), reverse=True)]
            subjects.append(companion.subject)
            at += timedelta(hours=self.rng.uniform(5, 9))
        self.truth.add("shuttling", subjects, ids, runner=runner.subject)

    def _plant_document_reuse(self) -> None:
        owner = self._new_person(self._nationality("IDN"))
        impostor = self._new_person(owner.identities[0].nationality)
        impostor.identities = [owner.identities[0]]  # borrowed or forged copy of the same document
        corridor_a = self.rng.choice([c for c in CORRIDORS if c.exit_post.startswith("ID-")])
        corridor_b = self._corridor("ID-ETK", "MY-TBD")
        at = self._random_time()
        ids = [e["event_id"] for e in self._trip(owner, corridor_a, at, capture=True)]
        # The same document crosses at a distant post an hour later: impossible travel.
        ids += [e["event_id"] for e in self._trip(impostor, corridor_b, at + timedelta(hours=1), capture=True)]
        self.truth.add("document_reuse", [owner.subject, impostor.subject], ids)

    def _plant_scam_route(self) -> None:
        person = self._new_person("IDN", (19, 35))
        at = self._random_time()
        at = min(at, self.end - timedelta(hours=10))
        ids = [e["event_id"] for e in self._trip(person, self._corridor("ID-BTH", "SG-HBF"), at, purpose="TOURISM",
                                                 visa="VISA_FREE", destination="KHM")]
        ids += [e["event_id"] for e in self._trip(person, self._corridor("SG-SIN", "KH-PNH"),
                                                  at + timedelta(hours=self.rng.uniform(4, 7)), purpose="TOURISM",
                                                  visa="VOA", origin="IDN", destination="KHM")]
        self.truth.add("scam_route", [person.subject], ids)

    def _plant_middle_east_transit(self) -> None:
        person = self._new_person("IDN", (20, 40), sex="F")
        corridor = self.rng.choice([self._corridor("ID-CGK", "MY-KUL"), self._corridor("ID-CGK", "SG-SIN")])
        ids = [e["event_id"] for e in self._trip(person, corridor, self._random_time(), purpose="TOURISM",
                                                 visa="VISA_FREE", destination=self.rng.choice(MIDDLE_EAST_STATES))]
        self.truth.add("middle_east_transit", [person.subject], ids)

    def _plant_non_procedural_worker(self) -> None:
        person = self._new_person("IDN", (18, 40))
        corridor = self.rng.choice([self._corridor("ID-ETK", "MY-TBD"), self._corridor("ID-ARU", "MY-BRH"),
                                    self._corridor("ID-NNK", "MY-TWU")])
        variant = "work" if self.rng.random() < 0.5 else "tourist"
        if variant == "work":
            kw: dict[str, Any] = {"purpose": "WORK", "sponsor": {"kind": "EMPLOYER", "name": "Ladang Sawit Sdn Bhd",
                                                                 "registration_id": None, "contact": None}}
        else:
            kw = {"purpose": "TOURISM", "visa": "VISA_FREE"}
        ids = [e["event_id"] for e in self._trip(person, corridor, self._random_time(), **kw)]
        self.truth.add("non_procedural_worker", [person.subject], ids, variant=variant)

    def _landing(self, at: datetime, large: bool) -> None:
        site = self.rng.choice(LANDING_SITES)
        at = at.replace(microsecond=at.microsecond // 1000 * 1000)
        adults = self.rng.randint(40, 150) if large else self.rng.randint(4, 15)
        minors = int(adults * self.rng.uniform(0.3, 0.8)) if large else self.rng.randint(0, 3)
        unaccompanied = int(minors * self.rng.uniform(0.05, 0.3)) if large else 0
        persons = []
        for _ in range(min(12, adults + minors)):
            p = self._new_person("XXA", (1, 60))
            ident = p.identities[0]
            persons.append({
                "traveller": {"document": None, "given_names": ident.given_names, "surname": ident.surname,
                              "date_of_birth": ident.date_of_birth, "sex": ident.sex, "nationality": "XXA"},
                "unaccompanied_minor": False,
                "biometric": self._capture(p) if self.rng.random() < 0.7 else None,
            })
        landing_id = self._uuid()
        record = {
            "landing_id": landing_id,
            "site": {"site_id": site.site_id, "name": site.name, "province": site.province, "country": "IDN",
                     "latitude": site.latitude, "longitude": site.longitude},
            "occurred_at": at,
            "vessel": {"name": self.rng.choice([None, "KM Harapan", "Bot Kayu 12"]), "registration": None,
                       "flag_state": self.rng.choice([None, "MMR", "BGD"]), "vessel_type": "WOODEN_BOAT"},
            "landing_kind": self.rng.choice(["ARRIVAL", "RESCUE"]),
            "adults": adults, "minors": minors, "unaccompanied_minors": unaccompanied,
            "nationalities": ["XXA"] if large else self.rng.sample(["XXA", "BGD", "MMR"], 2),
            "persons": persons,
            "officer_id": f"OFF-IDN-{self.rng.randrange(1, 400):04d}",
        }
        self._push(at, "landing", record)
        if large:
            self.truth.add("boat_landing", [], [landing_id], site=site.site_id)

    # -- the stream -------------------------------------------------------------------------------------------
    def events(self, n_crossings: int, landings: int = 3) -> Iterator[tuple[str, dict[str, Any]]]:
        """About ``n_crossings`` crossing events (exactly that many) and some landings, in time order."""
        trips = max(1, n_crossings // 2)
        for kind, per_10k in self.rates.items():
            expected = trips * per_10k / 10_000
            count = int(expected) + (1 if self.rng.random() < expected - int(expected) else 0)
            for _ in range(count):
                self._plant(kind)
        for i in range(landings):
            self._landing(self._random_time(), large=i % 3 == 0)
        while self._pushed_crossings < n_crossings:
            self._ordinary_trip()
        emitted: set[str] = set()
        while self._heap:
            at, _, kind, record = heapq.heappop(self._heap)
            if kind == "crossing":
                if len(emitted) >= n_crossings:
                    self.truth.event_subject.pop(record["event_id"], None)
                    continue
                emitted.add(record["event_id"])
                self.truth.crossings += 1
            else:
                self.truth.landings += 1
            yield kind, record
        # Planted evidence trimmed by the exact count is dropped from the truth too.
        self._trim_truth(emitted)

    def _trim_truth(self, emitted: set[str]) -> None:
        for s in self.truth.scenarios:
            planted = s["event_ids"]
            s["event_ids"] = [e for e in planted if e in emitted or s["scenario"] == "boat_landing"]
            # a pattern cut by the end of the stream is not all there: recall counts complete ones only
            s["complete"] = len(s["event_ids"]) == len(planted)


def to_json_line(record: dict[str, Any]) -> str:
    """One record in the JSONL form ``lintas produce`` reads (ISO times, base64 templates)."""
    def default(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if isinstance(value, date):
            return value.isoformat()
        if isinstance(value, bytes):
            return base64.b64encode(value).decode()
        raise TypeError(type(value).__name__)

    return json.dumps(record, default=default, separators=(",", ":"))


def write_files(sim: Simulator, n_crossings: int, out_dir: Path, landings: int = 3) -> dict[str, Path]:
    """Write crossings.jsonl, landings.jsonl, truth.json and truth_subjects.csv into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"crossing": out_dir / "crossings.jsonl", "landing": out_dir / "landings.jsonl"}
    with open(paths["crossing"], "w") as crossings, open(paths["landing"], "w") as landing_file:
        for kind, record in sim.events(n_crossings, landings):
            (crossings if kind == "crossing" else landing_file).write(to_json_line(record) + "\n")
    write_truth(sim.truth, out_dir)
    return {**paths, "truth": out_dir / "truth.json"}


def write_truth(truth: Truth, out_dir: Path) -> None:
    """Ground truth next to the data: scenarios as JSON, the subject of each capture as CSV."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "truth.json").write_text(json.dumps(truth.to_json(), indent=1))
    with open(out_dir / "truth_subjects.csv", "w") as f:
        f.write("event_id,subject\n")
        for event_id, subject in truth.event_subject.items():
            f.write(f"{event_id},{subject}\n")


def simulated_facts(sim: Simulator, crossings: int, landings: int, tok: Tokeniser) -> Iterator[Fact]:
    """The trafficking facts the pipeline would make from a simulation, in event order.

    Biometric subjects come from the ground truth (a perfect dedup): each document's face is
    its subject, a second face under a document is another subject, and one face under a
    second document is a confirmed link. For measuring and training the rules on their own.
    """
    from agents.pseudonymise import crossing_row, landing_row, person_token
    from agents.trafficking.facts import crossing_facts, decision_facts, landing_facts, link_facts

    documents: dict[int, list[str]] = {}  # true person → the documents they were seen with, first first
    first_event: dict[tuple[int, str], str] = {}  # (person, document) → the first crossing under it
    for kind, record in sim.events(crossings, landings):
        if kind == "landing":
            yield from landing_facts(record, landing_row(record, tok), tok)
            continue
        row = crossing_row(record, tok)
        yield from crossing_facts(record, row, tok)
        person = sim.truth.event_subject.get(record["event_id"])
        if person is None:
            continue
        identity = person_token(tok, record["traveller"])
        subject = tok.token("subject", str(person), identity)
        yield from decision_facts({"subject_id": subject, "identity_token": identity, "event_id": record["event_id"],
                                   "occurred_at": row["occurred_at"], "post_id": row["post_id"]})
        seen = documents.setdefault(person, [])
        if identity not in seen:
            seen.append(identity)
            first_event[(person, identity)] = str(record["event_id"])
            if len(seen) > 1:  # a confirmed link between this document's subject and the first one's
                first = tok.token("subject", str(person), seen[0])
                a, b = sorted([(first, seen[0]), (subject, identity)])
                # the evidence: each document's first crossing (the pipeline's link facts name the link instead)
                yield from link_facts({"key": f"subject:{a[0]}", "event_id": first_event[(person, side[1])],
                                       "occurred_at": row["occurred_at"], "post_id": row["post_id"],
                                       "traveller": side[1], "subject": other[0], "score": 1.0,
                                       "thresholds_version": "truth", "revision": 1}
                                      for side, other in ((a, b), (b, a)))
