"""How simulated people travel: their documents and faces, crossings and trips along the region's corridors.

:class:`Trips` holds the simulation's state (its random streams, the window, the population, the
events pushed so far in time order) and the mechanics every trip shares; :class:`~streams.sim.simulator.
Simulator` decides who travels when: ordinary traffic, planted patterns, landings.
"""

from __future__ import annotations

import heapq
import random
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np

from schemas.geography import (
    CORRIDORS,
    FAMILY_NAMES,
    GIVEN_NAMES,
    HOURLY,
    LOCAL_OFFSET_H,
    NATIONALITY_MIX,
    POSTS,
    WEEKDAY,
    Corridor,
    distance_km,
)
from streams.sim.faces import ClusteredFaces, FaceModel
from streams.sim.world import (
    COMMUTER_GAP,
    FLIGHT_OVERHEAD,
    FLIGHT_SPEED_KMH,
    RATES_PER_10K,
    REFUSAL_RATE,
    REFUSAL_REASONS,
    TRAVEL_TIME,
    TRIP_GAP,
    Identity,
    Mix,
    Person,
    Truth,
)


class Trips:
    """A simulation's state and the mechanics of people, documents, captures, crossings and trips."""

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

    def _corridor(self, exit_post: str, entry_post: str) -> Corridor:
        for c in CORRIDORS:
            if (c.exit_post, c.entry_post) == (exit_post, entry_post):
                return c
        raise KeyError((exit_post, entry_post))

