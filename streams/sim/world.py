"""The simulated world's facts: base rates, people and their documents, and the ground truth of a simulation."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np

from schemas.geography import Corridor

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

