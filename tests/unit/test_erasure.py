"""Erasure's pure parts: naming a person, their references under every live key, the vault's sealing."""

from __future__ import annotations

from datetime import date

import pytest

from agents.erasure import MUTATIONS, ErasureRequestError, ErasureTarget, Refs, parameters
from agents.pseudonymise import Tokeniser, person_token
from agents.sealing import KeyDestroyed, SubjectSealer, person_key
from agents.vault import Recent, identities, open_entry, sealed_entries
from streams.keystores import SqliteSubjectKeys

OPS = [Tokeniser(b"unit-ops-key-1-not-a-secret-0001", "operations-1")]
ANALYTICS = [Tokeniser(b"unit-analytics-1-not-a-secret-01", "analytics-1"),
             Tokeniser(b"unit-analytics-2-not-a-secret-02", "analytics-2")]
TRAVELLER = {"document": {"document_type": "PASSPORT", "number": "X0000001", "issuing_state": "IDN",
                          "expiry_date": None},
             "given_names": "Synthetic", "surname": "Person", "date_of_birth": date(1990, 1, 2), "sex": "F",
             "nationality": "IDN"}


def test_a_person_is_named_by_document_or_name_and_bad_requests_say_why_without_the_value() -> None:
    assert ErasureTarget.parse(" idn:X0000001 ") == ErasureTarget("document", ("IDN", "X0000001"))
    assert ErasureTarget.parse("name:Siti Nur/Aminah") == ErasureTarget("name", ("Siti Nur", "Aminah"))
    for bad, reason in [("X0000001", "STATE:NUMBER"), ("ID:X0000001", "3-letter"), ("IDN:", "STATE:NUMBER"),
                        ("name:OnlyGiven", "GIVEN/SURNAME")]:
        with pytest.raises(ErasureRequestError, match=reason) as err:
            ErasureTarget.parse(bad)
        assert "X0000001" not in str(err.value) and "OnlyGiven" not in str(err.value)


def test_references_are_the_tokens_the_pipeline_made_under_every_live_key() -> None:
    refs = Refs.of(ErasureTarget.parse("IDN:x0000001"), OPS, ANALYTICS)
    assert refs.operations == (person_token(OPS[0], TRAVELLER),)
    assert refs.analytics == tuple(person_token(t, TRAVELLER) for t in ANALYTICS)  # rotation overlap: both keys
    landed = {**TRAVELLER, "document": None}
    assert Refs.of(ErasureTarget.parse("name:synthetic/PERSON"), OPS, ANALYTICS).operations == (person_token(OPS[0], landed),)
    refs = Refs(refs.operations, refs.analytics, ("S1",))
    assert refs.keys() == [person_key(refs.operations[0]), "subject:S1"]
    assert refs.operations[0] not in refs.reference()
    params = parameters(refs)
    for m in MUTATIONS:  # every parameter a mutation names is provided
        names = {part.split(":")[0] for part in m.where.split("{")[1:]}
        assert names <= set(params), m
        assert m.sql().startswith("ALTER TABLE") and "mutations_sync" in m.sql()


def test_the_vault_opens_for_operations_until_the_person_is_erased() -> None:
    store = SqliteSubjectKeys(":memory:")
    sealer = SubjectSealer(store)
    people = identities({"traveller": TRAVELLER}, "crossing", OPS[0])
    [(token, sealed)] = sealed_entries(people, sealer)
    assert b"X0000001" not in sealed and b"Synthetic" not in sealed
    assert open_entry(sealer, token, sealed)["document"]["number"] == "X0000001"
    recent = Recent()
    assert recent.fresh(people, keyed={token}) == people
    assert recent.fresh(people, keyed={token}) == {}  # vaulted lately: not again
    store.destroy([person_key(token)])
    with pytest.raises(KeyDestroyed):
        open_entry(sealer, token, sealed)
    assert recent.fresh(people, keyed=set()) == people  # no key any more (erased, back again): vaulted anew
    landing = {"persons": [{"traveller": {**TRAVELLER, "document": None}}, {"traveller": TRAVELLER}]}
    assert len(identities(landing, "landing", OPS[0])) == 2
