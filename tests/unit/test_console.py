"""The review console without servers: Flask's test client, ClickHouse and Kafka stubbed at streams.ops.review."""

from __future__ import annotations

import io
import logging
import re
import stat
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from agents.cases import case_id
from schemas.errors import InvalidMessage
from streams.console.accounts import OfficerStore
from streams.console.app import REFERRAL_NOTICE, create_app
from streams.ops import privacy, review
from streams.settings import Settings

RIGHT = "correct horse battery"  # synthetic
BTM_CASE = case_id("doc:tok-btm")
ENT_CASE = case_id("doc:tok-ent")
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _case(cid: str, post: str, severity: str, token: str, version: int = 3) -> dict[str, Any]:
    return {"case_id": cid, "key_kind": "doc", "key_token": token, "status": "OPEN", "severity": severity,
            "score": 2.5, "threshold": 2.0, "policy_version": "p1", "indicator_ids": ["A1"],
            "rules": ["minor_unrelated_adult"], "families": ["trafficking"], "post_ids": [post], "subjects": [token],
            "evidence_event_ids": ["e1"], "summary": "[HIGH] minor_unrelated_adult: a minor with an unrelated adult",
            "first_seen": NOW, "last_seen": NOW, "opened_at": NOW - timedelta(hours=5), "reviewer_token": "",
            "reason_code": "", "pathways": [], "decided_at": None, "reopened": 0, "decisions": 0, "key_id": "k1",
            "version": version, "updated_at": NOW}


CASES = {BTM_CASE: _case(BTM_CASE, "ID-BTM", "HIGH", "tok-btm"), ENT_CASE: _case(ENT_CASE, "ID-ENT", "MEDIUM", "tok-ent")}


def _visible(case: dict[str, Any], posts: Any) -> bool:
    return posts is None or bool(set(case["post_ids"]) & set(posts))


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """streams.ops.review and resolve_identity stubbed; what the console asked of them."""
    seen: dict[str, list[Any]] = {"queue": [], "decisions": [], "disclosures": []}

    def queue(client: Any, posts: Any, statuses: Any = ("OPEN", "IN_REVIEW"), limit: int = 200) -> list[dict]:
        seen["queue"].append(posts)
        return [c for c in CASES.values() if _visible(c, posts)]

    def case_detail(client: Any, cid: str, posts: Any) -> dict | None:
        case = CASES.get(cid)
        if case is None or not _visible(case, posts):
            return None
        return {"case": case, "indicators": [{"alert_id": "A1", "rule_id": "minor_unrelated_adult", "family": "trafficking",
                                              "severity": "HIGH", "explanation": "A minor crossed with an adult not related",
                                              "features": {"age": 12.0}, "evidence_event_ids": ["e1"], "evidence_count": 1,
                                              "post_ids": case["post_ids"], "first_seen": NOW, "last_seen": NOW,
                                              "indicators": []}],
                "crossings": [{"occurred_at": NOW, "post_id": case["post_ids"][0], "direction": "EXIT",
                               "document_token": case["key_token"], "age_band": "10-14", "is_minor": 1,
                               "nationality": "IDN", "travel_purpose": "TOURISM", "escort_tokens": ["tok-esc"],
                               "sponsor_token": "", "refused": 0, "refusal_reason": ""}],
                "decisions": []}

    def send_decision(settings: Settings, **form: Any) -> str:
        if form["action"] == "DISMISS" and not form.get("reason_code"):
            raise InvalidMessage("missing_reason", "reason_code", "a dismissal needs one of the policy's reason codes")
        seen["decisions"].append(form)
        return f"d-{len(seen['decisions'])}"

    def resolve_identity(settings: Settings, token: str, case: str, *, purpose: str = "") -> dict:
        seen["disclosures"].append((token, case, purpose))
        return {"surname": "SYNTHETICA", "given_names": "TESTA", "document": {"number": "X0000001"}}

    monkeypatch.setattr(review, "queue", queue)
    monkeypatch.setattr(review, "case_detail", case_detail)
    monkeypatch.setattr(review, "send_decision", send_decision)
    monkeypatch.setattr(privacy, "resolve_identity", resolve_identity)
    return seen


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path / "state")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(settings: Settings, clock: Clock) -> OfficerStore:
    store = OfficerStore(settings.officers_path, attempts=5, lockout_minutes=15, clock=clock)
    store.add("rita", RIGHT, "reviewer", ("ID-BTM",))
    store.add("sam", RIGHT, "supervisor", ())
    return store


@pytest.fixture
def app(settings: Settings, store: OfficerStore, calls: dict) -> Flask:
    return create_app(settings, clickhouse=lambda: nullcontext(object()), officers=store)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def _token(html: str, name: str = "csrf_token", form: str | None = None) -> str:
    if form is not None:
        html = re.search(rf'<form[^>]*id="{form}".*?</form>', html, re.S).group(0)
    return re.search(rf'name="{name}" value="([^"]+)"', html).group(1)


def _login(client: FlaskClient, username: str = "rita", typed: str = RIGHT) -> Any:
    csrf = _token(client.get("/login").text)
    return client.post("/login", data={"csrf_token": csrf, "username": username, "password": typed})


def _form(client: FlaskClient, cid: str, form: str) -> dict[str, str]:
    page = client.get(f"/cases/{cid}").text
    return {"csrf_token": _token(page, form=form), "nonce": _token(page, "nonce", form=form)}


def test_login_opens_the_queue_of_the_officers_posts(client: FlaskClient, calls: dict) -> None:
    assert client.get("/queue").headers["Location"].endswith("/login")
    done = _login(client)
    assert done.status_code == 303 and done.headers["Location"].endswith("/queue")
    page = client.get("/queue")
    assert page.status_code == 200 and BTM_CASE in page.text and ENT_CASE not in page.text
    assert calls["queue"] == [["ID-BTM"]]
    assert REFERRAL_NOTICE in page.text


def test_a_wrong_password_is_refused_and_never_logged(client: FlaskClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "lintas.console")
    done = _login(client, typed="wrong password 1")
    assert done.status_code == 401 and "wrong user name or password" in done.text
    assert _login(client, username="nobody-secret-typed-here").status_code == 401
    assert "wrong password 1" not in caplog.text and "nobody-secret" not in caplog.text and RIGHT not in caplog.text
    assert "rita" in caplog.text  # who failed is logged, what they typed is not


def test_five_wrong_passwords_lock_the_account_even_for_the_right_one(client: FlaskClient, store: OfficerStore,
                                                                      clock: Clock) -> None:
    for n in range(4):
        assert "wrong user name or password" in _login(client, typed=f"wrong {n} xxxxxxxx").text
    assert "locked" in _login(client, typed="wrong 5 xxxxxxxx").text
    locked = _login(client)
    assert locked.status_code == 401 and "locked" in locked.text and "wrong" not in locked.text
    assert store.is_locked(store.get("rita"))
    clock.now += 15 * 60 + 1
    assert _login(client).status_code == 303, "the lockout ends after console_lockout_minutes"


def test_a_success_resets_the_count_and_unlock_lifts_a_lockout(client: FlaskClient, store: OfficerStore) -> None:
    for n in range(4):
        _login(client, typed=f"wrong {n} xxxxxxxx")
    assert _login(client).status_code == 303
    assert store.get("rita").failed == 0
    for n in range(5):
        _login(client, typed=f"wrong {n} xxxxxxxx")
    assert "locked" in _login(client).text
    store.unlock("rita")
    assert _login(client).status_code == 303


def test_a_post_without_csrf_token_is_refused(client: FlaskClient, calls: dict) -> None:
    assert client.post("/login", data={"username": "rita", "password": RIGHT}).status_code == 400
    _login(client)
    form = _form(client, BTM_CASE, "form-start_review")
    done = client.post(f"/cases/{BTM_CASE}/decide", data={"nonce": form["nonce"], "action": "START_REVIEW"})
    assert done.status_code == 400 and calls["decisions"] == []


def test_a_replayed_form_is_refused_even_with_a_valid_csrf_token(client: FlaskClient, calls: dict) -> None:
    _login(client)
    form = {**_form(client, BTM_CASE, "form-refer"), "action": "REFER", "pathway": "CHILD_PROTECTION"}
    first = client.post(f"/cases/{BTM_CASE}/decide", data=form)
    assert first.status_code == 303 and len(calls["decisions"]) == 1
    again = client.post(f"/cases/{BTM_CASE}/decide", data=form)
    assert again.status_code == 409 and len(calls["decisions"]) == 1
    sent = calls["decisions"][0]
    assert sent == {"target_kind": "CASE", "target_id": BTM_CASE, "action": "REFER", "officer_id": "rita",
                    "officer_role": "reviewer", "post_id": "ID-BTM", "reason_code": None,
                    "pathway": "CHILD_PROTECTION", "case_version": 3}


def test_a_nonce_is_bound_to_its_form_and_case(client: FlaskClient, calls: dict) -> None:
    _login(client)
    form = _form(client, BTM_CASE, "form-start_review")
    assert client.post(f"/cases/{BTM_CASE}/decide", data={**form, "action": "CONFIRM"}).status_code == 409
    assert client.post(f"/cases/{BTM_CASE}/decide", data={**form, "action": "START_REVIEW",
                                                          "nonce": "made-up"}).status_code == 409
    assert calls["decisions"] == []


def test_an_invalid_decision_names_the_field(client: FlaskClient, calls: dict) -> None:
    _login(client)
    form = {**_form(client, BTM_CASE, "form-dismiss"), "action": "DISMISS", "reason_code": ""}
    done = client.post(f"/cases/{BTM_CASE}/decide", data=form)
    assert done.status_code == 400 and "reason_code" in done.text and calls["decisions"] == []


def test_another_posts_case_is_not_found_like_a_missing_one(client: FlaskClient, calls: dict) -> None:
    _login(client)
    other, missing = client.get(f"/cases/{ENT_CASE}"), client.get(f"/cases/{case_id('doc:nobody')}")
    assert other.status_code == missing.status_code == 404
    assert other.text == missing.text
    assert client.get("/cases/not-a-case-id").status_code == 404
    page = client.get(f"/cases/{BTM_CASE}").text
    csrf = _token(page)
    done = client.post(f"/cases/{ENT_CASE}/decide", data={"csrf_token": csrf, "action": "REFER",
                                                          "pathway": "HEALTH", "nonce": _token(page, "nonce", "form-refer")})
    assert done.status_code == 404 and calls["decisions"] == []


def test_a_supervisor_sees_every_post_and_decides_as_supervisor(client: FlaskClient, calls: dict) -> None:
    _login(client, "sam")
    page = client.get("/queue").text
    assert BTM_CASE in page and ENT_CASE in page and calls["queue"] == [None]
    assert page.index(BTM_CASE) < page.index(ENT_CASE), "HIGH before MEDIUM, as review.queue ordered them"
    form = {**_form(client, ENT_CASE, "form-confirm"), "action": "CONFIRM"}
    assert client.post(f"/cases/{ENT_CASE}/decide", data=form).status_code == 303
    assert calls["decisions"][0]["officer_role"] == "supervisor" and calls["decisions"][0]["post_id"] is None


def test_disclosure_needs_a_purpose_shows_the_identity_once_and_logs_none_of_it(
        client: FlaskClient, calls: dict, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    _login(client)
    form = {**_form(client, BTM_CASE, "form-disclose"), "token": "tok-btm", "purpose": "short"}
    refused = client.post(f"/cases/{BTM_CASE}/disclose", data=form)
    assert refused.status_code == 400 and "purpose" in refused.text and calls["disclosures"] == []
    form = {**_form(client, BTM_CASE, "form-disclose"), "token": "tok-btm", "purpose": "interview before referral"}
    shown = client.post(f"/cases/{BTM_CASE}/disclose", data=form)
    assert shown.status_code == 200 and "SYNTHETICA" in shown.text
    assert shown.headers["Cache-Control"] == "no-store"
    assert calls["disclosures"] == [("tok-btm", BTM_CASE, "interview before referral")]
    assert "SYNTHETICA" not in client.get(f"/cases/{BTM_CASE}").text, "shown on that response only"
    assert client.post(f"/cases/{BTM_CASE}/disclose", data=form).status_code == 409
    assert "SYNTHETICA" not in caplog.text and "X0000001" not in caplog.text


def test_a_token_not_of_the_case_is_not_disclosed(client: FlaskClient, calls: dict) -> None:
    _login(client)
    form = {**_form(client, BTM_CASE, "form-disclose"), "token": "tok-ent", "purpose": "curiosity about others"}
    assert client.post(f"/cases/{BTM_CASE}/disclose", data=form).status_code == 400
    assert calls["disclosures"] == []


def test_security_headers_and_cookie_flags(client: FlaskClient) -> None:
    login = client.get("/login")
    assert "default-src 'self'" in login.headers["Content-Security-Policy"]
    assert login.headers["X-Frame-Options"] == "DENY"
    cookie = login.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    _login(client)
    case = client.get(f"/cases/{BTM_CASE}")
    assert case.headers["Cache-Control"] == "no-store"
    assert REFERRAL_NOTICE in case.text and case.text.count(REFERRAL_NOTICE) == 2, "by the refer form and in the footer"
    assert "<script" not in case.text


def test_logout_ends_the_session_on_the_server(client: FlaskClient) -> None:
    _login(client)
    kept = client.get_cookie("lintas_console").value
    page = client.get("/queue").text
    assert client.post("/logout", data={"csrf_token": _token(page)}).status_code == 303
    client.set_cookie("lintas_console", kept)  # the old cookie, replayed
    assert client.get("/queue").status_code == 303


def test_secrets_and_accounts_are_private_files(settings: Settings, app: Flask) -> None:
    for path in (settings.officers_path, settings.secret_path("console_secret_key")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert b"rita" in settings.officers_path.read_bytes() and RIGHT.encode() not in settings.officers_path.read_bytes()
    assert app.config["SECRET_KEY"] == settings.secret_path("console_secret_key").read_text().strip()


def test_officers_cli_adds_lists_and_unlocks(settings: Settings, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from streams import cli
    from streams.cli import console

    monkeypatch.setattr(console, "settings_of", lambda args: settings)
    monkeypatch.setattr("sys.stdin", io.StringIO(RIGHT + "\n"))
    assert cli.main(["officers", "add", "nadia", "--role", "reviewer", "--posts", "id-btm,ID-ENT",
                     "--password-stdin"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert cli.main(["officers", "add", "omar", "--role", "reviewer", "--posts", "ID-BTM", "--password-stdin"]) == 2
    assert cli.main(["officers", "list"]) == 0
    out = capsys.readouterr()
    assert "nadia" in out.out and "ID-BTM,ID-ENT" in out.out and "argon2" not in out.out
    assert "password: at least 12 characters" in out.err
    assert cli.main(["officers", "unlock", "nadia"]) == 0
    assert cli.main(["officers", "unlock", "nobody"]) == 2
