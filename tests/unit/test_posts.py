"""A post is registered before it may send: the registry, the gateway's refusal, and no key made on the fly."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fastavro
import pytest

from agents.posts import PostRegistryError, RegisteredPost, entry, sender_problems
from schemas.contracts import DEAD_LETTER
from schemas.geography import LANDING_SITES, POSTS
from schemas.validation import FieldError
from streams.post.producer import ProduceReport, accept_lines
from streams.post.spool import Spool
from streams.posts import RegistryFile, add_post, load_registry, post_key, register
from streams.settings import SecretMissing, Settings
from streams.sim.files import to_json_line
from streams.sim.simulator import Simulator

NEW = RegisteredPost("ID-XNEW", "A new land crossing", "post", "LAND", "IDN", 1.0, 110.0)


def _settings(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path)


def test_the_packaged_registry_is_the_region_s_posts_and_landing_sites(tmp_path: Path) -> None:
    registry = load_registry(_settings(tmp_path))
    assert set(registry.posts) == {*POSTS, *(s.site_id for s in LANDING_SITES)}
    assert registry.version == "region-1+0"
    assert registry.get("ID-BTH") == RegisteredPost("ID-BTH", POSTS["ID-BTH"].name, "post", "SEA", "IDN", 1.13, 104.05)
    assert registry.get("ID-AC-LSM").kind == "site"  # type: ignore[union-attr]


def test_registering_a_post_makes_a_new_version_and_a_running_reader_sees_it_at_once(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    running = RegistryFile(settings)
    assert running.current().get("ID-XNEW") is None
    registry, new = register(settings, NEW)
    assert new and registry.version == "region-1+1" and registry.get("ID-XNEW") == NEW
    assert running.current().get("ID-XNEW") == NEW, "one stat per call: no restart"
    assert register(settings, NEW) == (registry, False), "the same post again changes nothing"
    assert stat.S_IMODE(settings.posts_path.stat().st_mode) == 0o644, "reference data, not a secret"
    with pytest.raises(PostRegistryError, match="ID-XNEW: registered already with other details"):
        register(settings, RegisteredPost("ID-XNEW", "Elsewhere", "post", "SEA", "MYS"))
    with pytest.raises(PostRegistryError, match="ID-BTH: a packaged post or site; it cannot be changed"):
        register(settings, RegisteredPost("ID-BTH", "Batam", "post", "LAND", "IDN"))
    assert load_registry(settings).version == "region-1+1", "a refused change writes nothing"


@pytest.mark.parametrize(("raw", "message"), [
    ({"post_id": "../etc", "name": "x", "post_type": "LAND", "country": "IDN"}, "post_id: 1 to 64"),
    ({"post_id": "ZZ-1", "name": "x", "post_type": "RIVER", "country": "IDN"}, "ZZ-1: post_type: one of LAND"),
    ({"post_id": "ZZ-1", "name": "x", "kind": "site", "post_type": "SEA", "country": "IDN"}, "a landing site has none"),
    ({"post_id": "ZZ-1", "name": "x", "post_type": "LAND", "country": "Indonesia"}, "ZZ-1: country: a 3-letter"),
    ({"post_id": "ZZ-1", "name": "", "post_type": "LAND", "country": "IDN"}, "ZZ-1: name: 1 to 120"),
    ({"post_id": "ZZ-1", "name": "x", "post_type": "LAND", "country": "IDN", "latitude": 95}, "within ±90"),
])
def test_a_bad_entry_is_refused_naming_the_field(raw: dict[str, object], message: str) -> None:
    with pytest.raises(PostRegistryError, match=message):
        entry(raw)


def test_a_damaged_registry_file_keeps_a_running_reader_on_its_last_good_version(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    register(settings, NEW)
    running = RegistryFile(settings)
    settings.posts_path.write_text("{not json")
    assert running.current().get("ID-XNEW") == NEW
    with pytest.raises(PostRegistryError, match="not JSON"):
        load_registry(settings)


def _crossing(**post: str) -> dict[str, object]:
    record = next(r for kind, r in Simulator(seed=5, dim=8, population=20).events(4, landings=0) if kind == "crossing")
    return {**record, "post": {**record["post"], **post}}  # type: ignore[dict-item]


def test_who_sent_an_event_is_checked_against_the_registry() -> None:
    registry = load_registry(Settings())
    good = _crossing()
    assert sender_problems("CrossingEvent", good, registry) == []
    assert sender_problems("CrossingEvent", _crossing(post_id="ZZ-NOPE"), registry) == [FieldError(
        "post.post_id", "unknown_post", "no such post (register it with lintas stack add-post, or lintas posts add "
                                        "in production)")]
    post_id = good["post"]["post_id"]  # type: ignore[index]
    wrong = {"LAND": "SEA", "SEA": "AIR", "AIR": "LAND"}[POSTS[post_id].post_type]
    assert [(p.field, p.code) for p in sender_problems("CrossingEvent", _crossing(post_type=wrong, country="THA"),
                                                        registry)] == [("post.post_type", "post_mismatch"),
                                                                       ("post.country", "post_mismatch")]
    site = {"site": {"site_id": "ID-BTH", "country": "IDN"}}  # a border post is not a landing site
    assert sender_problems("LandingEvent", site, registry)[0].code == "unknown_post"


def test_the_gateway_refuses_an_unknown_post_line_by_line_dead_letters_it_and_makes_no_key(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    records = [r for kind, r in Simulator(seed=8, dim=8, population=20, end=datetime.now(UTC) - timedelta(hours=1)
                                          ).events(6, landings=0) if kind == "crossing"]
    lines = [to_json_line(r) for r in records]
    lines[2] = to_json_line({**records[2], "post": {**records[2]["post"], "post_id": "ZZ-NOPE"}})
    spool, report, said = Spool(tmp_path / "outbox.sqlite"), ProduceReport(), []
    accept_lines(lines, "crossing", spool, report, load_registry(settings),
                 on_bad=lambda n, errors: said.extend(f"line {n}: {e.field}: {e.reason} [{e.code}]" for e in errors))
    assert said == ["line 3: post.post_id: no such post (register it with lintas stack add-post, or lintas posts add "
                    "in production) [unknown_post]"]
    assert (report.accepted, len(report.bad)) == (len(lines) - 1, 1)
    spooled = spool.after(0, 100)
    [letter] = [e for e in spooled if e.contract == DEAD_LETTER.name]
    assert (letter.topic, letter.key) == ("crossing_events.dlq", b"gateway")
    envelope = fastavro.schemaless_reader(__import__("io").BytesIO(letter.payload), DEAD_LETTER.parsed, None)
    assert (envelope["source_partition"], envelope["source_offset"], envelope["error_code"],
            envelope["error_field"]) == (-1, 3, "unknown_post", "post.post_id")
    assert json.loads(envelope["payload"])["post"]["post_id"] == "ZZ-NOPE", "kept whole for repair"
    assert not settings.post_keys_dir.exists() or not list(settings.post_keys_dir.iterdir()), "no key made"
    with pytest.raises(SecretMissing):
        post_key(settings, "ZZ-NOPE")  # and the forwarder would not make one either: it only reads keys


def test_provisioning_a_post_registers_it_and_makes_its_key(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert add_post(settings, NEW) and not add_post(settings, NEW)
    assert len(post_key(settings, "ID-XNEW")) == 32
    assert stat.S_IMODE((settings.post_keys_dir / "ID-XNEW.key").stat().st_mode) == 0o600
    assert load_registry(settings).get("ID-XNEW") == NEW
