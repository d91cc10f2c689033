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

import heapq
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from schemas.geography import CORRIDORS, LANDING_SITES, MIDDLE_EAST_STATES
from streams.sim.trips import Trips
from streams.sim.world import COMMUTER_GAP, COMMUTER_SHARE


class Simulator(Trips):
    """Generates crossing and landing events in time order: ordinary traffic, planted patterns, landings."""

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

