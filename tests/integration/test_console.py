"""The officers' review console in a real browser (headless Chromium, Playwright) against the session stack.

Two synthetic cases (one at ID-BTM, one at ID-ENT) with their alerts and crossings are written
straight to ClickHouse, an identity is sealed into the vault the way the worker does it, officers
are made with `lintas officers add`, and `lintas console` runs as a real process. A reviewer of
ID-BTM signs in, reads the queue and the case, discloses the identity (audited in processing_log),
refers the case (a ReviewDecision on review.decisions) and signs out; the other post's case is
neither listed nor reachable; a replayed form, a form without its CSRF token and a sixth sign-in
after five wrong passwords are refused. Screenshots go to .lintas/artifacts/.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from confluent_kafka import Consumer, TopicPartition
from playwright.sync_api import Browser, Page, sync_playwright

from infra.stack import Stack
from schemas.contracts import REVIEW_DECISION
from schemas.wire import SchemaIds, decode
from streams import clients
from streams.clients import clickhouse_client, kafka_config
from streams.settings import Settings
from streams.topics import IDENTITY_VAULT, REVIEW_DECISIONS, Role
from tests.conftest import REPO, settings_env

pytestmark = pytest.mark.integration

ARTIFACTS = REPO / ".lintas" / "artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
RIGHT = "synthetic passphrase for tests"
SURNAME = "SYNTHETIKA"  # the synthetic identity in the vault
T = TypeVar("T")
EXPLANATIONS = {
    "minor_unrelated_adult": "A minor crossed at {post} with an adult who is not a relative or guardian",
    "escort_fanout": "One escort document accompanied 4 travellers not declared as close family in 7 days at {post}",
}


def until(what: str, check: Callable[[], T | None], timeout_s: float = 60.0) -> T:
    """Poll ``check`` until it returns something truthy, or fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout_s:.0f}s")


@dataclass(frozen=True)
class World:
    """The stack, the console's address, and what was seeded."""

    settings: Settings
    url: str
    log: Path
    btm_case: str
    ent_case: str
    person: str  # the operations token of the disclosed traveller
    btm_version: int


def _free_port(settings: Settings) -> int:
    """A free port within the session stack's own range (its base is the Kafka port - 92)."""
    base = settings.kafka_port - 92
    for port in range(base + 180, base + 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no free port in {base + 180}-{base + 199}")


def _lintas(settings: Settings, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).parent / "lintas"), *args], input=stdin, capture_output=True,
                          text=True, timeout=120, env={**os.environ, **settings_env(settings)}, cwd=REPO, check=False)


def _operations_token(settings: Settings, number: str) -> str:
    from agents.keys import tokeniser
    from agents.pseudonymise import document_token
    from streams.keystores import FileKeyring

    return document_token(tokeniser(FileKeyring(settings.keyring_path), "operations"), "IDN", number)


def _vault(settings: Settings, token: str, identity: dict[str, Any]) -> None:
    """Seal the identity under the person's own key and publish it to the vault, as the worker does."""
    from agents.sealing import SubjectSealer
    from agents.vault import sealed_entries
    from streams.keystores import SqliteSubjectKeys

    store = SqliteSubjectKeys(settings.subject_keys_path)
    try:
        entries = sealed_entries({token: identity}, SubjectSealer(store))
    finally:
        store.close()
    producer = clients.producer(settings, Role.ADMIN, **clients.SAME_PARTITION_AS_FAUST)
    for key, value in entries:
        producer.produce(IDENTITY_VAULT.name, key=key.encode(), value=value)
    assert producer.flush(30) == 0


def _case_row(cid: str, token: str, post: str, severity: str, alerts: list[str], events: list[str],
              opened: datetime) -> dict[str, Any]:
    return {"case_id": cid, "key_kind": "doc", "key_token": token, "status": "OPEN", "severity": severity,
            "score": 3.0 if severity == "HIGH" else 1.5, "threshold": 1.0, "policy_version": "test-1",
            "indicator_ids": alerts, "rules": ["minor_unrelated_adult", "escort_fanout"][:len(alerts)],
            "families": ["trafficking"], "post_ids": [post], "subjects": [token], "evidence_event_ids": events,
            "summary": f"[{severity}] minor_unrelated_adult: a minor crossed at {post} with an adult not related",
            "first_seen": opened - timedelta(hours=2), "last_seen": opened, "opened_at": opened,
            "reviewer_token": "", "reason_code": "", "pathways": [], "decided_at": None, "reopened": 0,
            "decisions": 0, "key_id": "test", "version": 4, "updated_at": opened}


def _alert_row(alert_id: str, rule: str, severity: str, token: str, post: str, events: list[str],
               at: datetime) -> dict[str, Any]:
    return {"alert_id": alert_id, "family": "trafficking", "rule_id": rule, "rule_version": 1, "rules_version": "t1",
            "indicators": [rule], "severity": severity, "key_kind": "doc", "key_token": token, "subjects": [token],
            "evidence_event_ids": events, "evidence_count": len(events), "post_ids": [post],
            "explanation": EXPLANATIONS[rule].format(post=post),
            "features": {"minor_age": 12.0, "companions": 1.0}, "first_seen": at - timedelta(hours=2),
            "last_seen": at, "key_id": "test", "version": 1, "detected_at": at}


def _crossing_row(event_id: str, token: str, post: str, at: datetime) -> dict[str, Any]:
    return {"event_id": uuid.UUID(event_id), "occurred_at": at, "post_id": post, "post_type": "SEA",
            "post_country": "IDN", "direction": "EXIT", "document_token": token, "document_type": "PASSPORT",
            "issuing_state": "IDN", "name_token": "name-tok-" + event_id[:8], "age_band": "10-14", "is_minor": 1,
            "sex": "F", "nationality": "IDN", "travel_purpose": "TOURISM", "escort_tokens": ["esc-tok-1"],
            "companion_relationships": ["UNRELATED"], "origin_country": "IDN", "destination_country": "MYS",
            "key_id": "test", "produced_at": at, "ingested_at": at}


def _insert(client: Any, table: str, rows: list[dict[str, Any]]) -> None:
    client.insert(table, [list(r.values()) for r in rows], column_names=list(rows[0]))


def _seed(settings: Settings) -> tuple[str, str, str, int]:
    """Two cases (ID-BTM, ID-ENT), their alerts and crossings, and the ID-BTM traveller's vaulted identity."""
    from agents.cases import case_id, case_key
    from streams.ops.migrate import migrate

    migrate(clickhouse_client(settings, migrate=True))
    client = clickhouse_client(settings)
    number = f"X{uuid.uuid4().hex[:7].upper()}"
    person, other = _operations_token(settings, number), _operations_token(settings, number + "9")
    now = datetime.now(UTC).replace(microsecond=0)
    btm, ent = case_id(case_key("doc", person)), case_id(case_key("doc", other))
    btm_events, ent_events = [str(uuid.uuid4()) for _ in range(2)], [str(uuid.uuid4())]
    run = uuid.uuid4().hex[:8]
    _insert(client, "cases", [
        _case_row(btm, person, "ID-BTM", "HIGH", [f"A-{run}-1", f"A-{run}-2"], btm_events, now - timedelta(hours=3)),
        _case_row(ent, other, "ID-ENT", "MEDIUM", [f"A-{run}-3"], ent_events, now - timedelta(hours=6)),
    ])
    _insert(client, "alerts", [
        _alert_row(f"A-{run}-1", "minor_unrelated_adult", "HIGH", person, "ID-BTM", btm_events[:1],
                   now - timedelta(hours=3)),
        _alert_row(f"A-{run}-2", "escort_fanout", "MEDIUM", person, "ID-BTM", btm_events, now - timedelta(hours=3)),
        _alert_row(f"A-{run}-3", "minor_unrelated_adult", "MEDIUM", other, "ID-ENT", ent_events,
                   now - timedelta(hours=6)),
    ])
    _insert(client, "crossings", [_crossing_row(e, person, "ID-BTM", now - timedelta(hours=i + 3))
                                  for i, e in enumerate(btm_events)]
            + [_crossing_row(ent_events[0], other, "ID-ENT", now - timedelta(hours=6))])
    _vault(settings, person, {
        "document": {"document_type": "PASSPORT", "issuing_state": "IDN", "number": number,
                     "expiry_date": "2031-01-31"},
        "given_names": "SARI", "surname": SURNAME, "date_of_birth": "2013-04-02", "sex": "F", "nationality": "IDN",
    })
    return btm, ent, person, 4


def _start_console(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **settings_env(settings), "LINTAS_CONSOLE_PORT": str(settings.console_port)}
    return subprocess.Popen([str(Path(sys.executable).parent / "lintas"), "console"], cwd=REPO, env=env,
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)


def _serving(url: str, proc: subprocess.Popen[bytes], log: Path) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"lintas console exited {proc.returncode}:\n{log.read_text()[-3000:]}")
    try:
        with urllib.request.urlopen(url + "login", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="module")
def world(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    settings = stack.settings.model_copy(update={"console_port": _free_port(stack.settings)})
    btm, ent, person, version = _seed(settings)
    for name, role, posts in (("rita", "reviewer", "ID-BTM"), ("lena", "reviewer", "ID-BTM"),
                              ("enzo", "reviewer", "ID-ENT")):
        made = _lintas(settings, "officers", "add", name, "--role", role, "--posts", posts, "--password-stdin",
                       stdin=RIGHT + "\n")
        assert made.returncode == 0, made.stderr
    log = tmp_path_factory.mktemp("console") / "console.log"
    proc = _start_console(settings, log)
    url = f"http://127.0.0.1:{settings.console_port}/"
    try:
        until("the console answers", lambda: _serving(url, proc, log))
        yield World(settings, url, log, btm, ent, person, version)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(20_000)
    try:
        yield tab
    finally:
        context.close()


def _sign_in(page: Page, world: World, username: str = "rita", typed: str = RIGHT) -> None:
    page.goto(world.url + "login")
    page.fill("#username", username)
    page.fill("#password", typed)
    page.click("#sign-in")
    page.wait_for_load_state()


def _decisions(settings: Settings, case: str) -> list[dict[str, Any]]:
    """Every ReviewDecision on review.decisions for the case, decoded with the registry's writer schemas."""
    consumer = Consumer({**kafka_config(settings, Role.ADMIN), "group.id": f"probe-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    ids = SchemaIds(clients.registry(settings, Role.ADMIN))
    try:
        topic = REVIEW_DECISIONS.name
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in parts}
        consumer.assign([TopicPartition(topic, p, lo) for p, (lo, hi) in ends.items() if hi > lo])
        left = {p for p, (lo, hi) in ends.items() if hi > lo}
        found = []
        deadline = time.monotonic() + 60
        while left and time.monotonic() < deadline:
            msg = consumer.poll(1)
            if msg is None or msg.error():
                continue
            record = decode(msg.value(), REVIEW_DECISION, ids)
            if record["target_id"] == case:
                found.append(record)
            if msg.offset() + 1 >= ends[msg.partition()][1]:
                left.discard(msg.partition())
        assert not left, f"{topic}: partitions {left} not read to the end"
        return found
    finally:
        consumer.close()


def _disclosures(settings: Settings, case: str) -> int:
    client = clickhouse_client(settings)
    return int(client.query("SELECT count() FROM processing_log WHERE activity = 'disclose' AND "
                            "component = 'identity_vault' AND position(detail, {c:String}) > 0",
                            parameters={"c": f"case {case}"}).result_rows[0][0])


def test_a_reviewer_reads_discloses_refers_and_signs_out(world: World, page: Page) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    _sign_in(page, world)
    page.wait_for_url("**/queue")
    row = page.locator(f"tr[data-case='{world.btm_case}']")
    assert row.is_visible() and "HIGH" in row.inner_text() and "ID-BTM" in row.inner_text()
    assert page.locator(f"tr[data-case='{world.ent_case}']").count() == 0
    page.screenshot(path=str(ARTIFACTS / "console-queue.png"), full_page=True)

    row.locator("a").click()
    page.wait_for_url(f"**/cases/{world.btm_case}")
    assert page.locator("article.indicator").count() == 2
    assert "not a relative or guardian" in page.locator("article.indicator").first.inner_text(), "HIGH first"
    assert world.person in page.locator("#crossings").inner_text() and SURNAME not in page.content()
    assert "It never triggers refusal, detention or return" in page.locator("#referral-notice").inner_text()
    page.screenshot(path=str(ARTIFACTS / "console-case.png"), full_page=True)

    page.select_option("#form-disclose select[name=token]", world.person)
    page.fill("#form-disclose input[name=purpose]", "interview at the post before a referral")
    page.click("#form-disclose button")
    assert SURNAME in page.locator("#disclosed").inner_text()
    until("the disclosure is audited in processing_log", lambda: _disclosures(world.settings, world.btm_case))
    assert SURNAME not in world.log.read_text(), "the identity is never logged"

    page.select_option("#form-refer select[name=pathway]", "VICTIM_ASSISTANCE")
    with page.expect_response(lambda r: r.url.endswith("/decide") and r.request.method == "POST") as sent:
        page.click("#form-refer button")
    assert sent.value.status == 303
    assert "decision" in page.locator("p.notice").inner_text()
    refer = until("the REFER decision on review.decisions",
                  lambda: [d for d in _decisions(world.settings, world.btm_case) if d["action"] == "REFER"])
    assert refer[0] | {"decision_id": "", "decided_at": None} == {
        "decision_id": "", "target_kind": "CASE", "target_id": world.btm_case, "action": "REFER",
        "reason_code": None, "pathway": "VICTIM_ASSISTANCE", "officer_id": "rita", "officer_role": "reviewer",
        "post_id": "ID-BTM", "case_version": world.btm_version, "decided_at": None}

    page.click("#logout")
    page.wait_for_url("**/login")
    page.goto(world.url + "queue")
    assert page.url.endswith("/login"), "signed out: the queue asks for a sign-in again"


def test_another_posts_case_is_not_listed_and_not_found(world: World, page: Page) -> None:
    _sign_in(page, world, "enzo")
    page.wait_for_url("**/queue")
    assert page.locator(f"tr[data-case='{world.ent_case}']").count() == 1
    assert page.locator(f"tr[data-case='{world.btm_case}']").count() == 0
    other = page.goto(world.url + f"cases/{world.btm_case}")
    assert other is not None and other.status == 404
    text = page.locator("main").inner_text()
    missing = page.goto(world.url + "cases/C" + "0" * 31)
    assert missing is not None and missing.status == 404 and page.locator("main").inner_text() == text


def test_a_replayed_form_and_a_form_without_csrf_token_are_refused(world: World, page: Page) -> None:
    _sign_in(page, world)
    case_url = world.url + f"cases/{world.btm_case}"
    page.goto(case_url)
    used = page.locator("#form-start_review input[name=nonce]").get_attribute("value")
    with page.expect_response(lambda r: r.url.endswith("/decide") and r.request.method == "POST") as first:
        page.click("#form-start_review button")
    assert first.value.status == 303

    page.goto(case_url)  # the same form again, carrying the nonce already used (a resend, a copied request)
    page.locator("#form-start_review input[name=nonce]").evaluate("(el, v) => el.value = v", used)
    with page.expect_response(lambda r: r.url.endswith("/decide") and r.request.method == "POST") as replay:
        page.click("#form-start_review button")
    assert replay.value.status == 409 and "already sent" in page.locator("#refusal").inner_text()

    page.goto(case_url)
    page.locator("#form-confirm input[name=csrf_token]").evaluate("el => el.remove()")
    with page.expect_response(lambda r: r.url.endswith("/decide") and r.request.method == "POST") as bare:
        page.click("#form-confirm button")
    assert bare.value.status == 400
    sent = [d["action"] for d in _decisions(world.settings, world.btm_case)]
    assert sent.count("START_REVIEW") == 1 and "CONFIRM" not in sent


def test_five_wrong_passwords_lock_the_account_until_unlocked(world: World, page: Page) -> None:
    for n in range(5):
        _sign_in(page, world, "lena", f"not the password {n}")
        assert page.url.endswith("/login")
    assert "locked" in page.locator("#login-error").inner_text()
    _sign_in(page, world, "lena")
    assert page.url.endswith("/login") and "locked" in page.locator("#login-error").inner_text()
    assert "not the password" not in world.log.read_text() and RIGHT not in world.log.read_text()
    listed = _lintas(world.settings, "officers", "list")
    assert "lena" in listed.stdout and "locked" in listed.stdout and "argon2" not in listed.stdout
    assert _lintas(world.settings, "officers", "unlock", "lena").returncode == 0
    _sign_in(page, world, "lena")
    page.wait_for_url("**/queue")
