"""The console's pages: sign-in, the queue, a case with its indicators, and the decide and disclose forms.

A reviewer sees only the cases of their posts; any other case is "not found" (404), exactly like a
case that does not exist, so a case id says nothing about another post's work. Decisions are sent as
``ReviewDecision`` records (:func:`streams.ops.review.send_decision`); the case agent applies them. The
identity behind a token is shown once, on the response to a disclose form that states a purpose, and
the disclosure is audited (:func:`streams.ops.privacy.resolve_identity`); it is never stored or logged.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from agents.cases import DISMISS_REASONS, PATHWAYS, SEVERITY_RANK, allowed_actions
from agents.sealing import KeyDestroyed
from schemas.errors import InvalidMessage, LintasError
from streams.console.accounts import Login, Officer, OfficerStore
from streams.console.nonces import FormNonces
from streams.ops import privacy, review
from streams.settings import Settings

log = logging.getLogger("lintas.console")
pages = Blueprint("console", __name__)

CASE_ID = re.compile(r"^C[0-9a-f]{31}$")  # agents.cases.case_id: anything else is not found without a query
PERSON_KINDS = ("doc",)  # case keys that are a person's token (vessels, sponsors, sites are not in the vault)
DISCLOSE = "disclose"
PURPOSE_MIN = 10
ACTION_LABELS = {
    "START_REVIEW": "Start review",
    "RELEASE": "Release to the queue",
    "CONFIRM": "Confirm the indicators",
    "DISMISS": "Dismiss",
    "REFER": "Refer",
}
REFUSED = "Sign-in refused: wrong user name or password."
LOCKED = ("Sign-in refused: this account is locked after too many failed attempts. Try again later or ask a "
          "supervisor to unlock it.")

View = TypeVar("View", bound=Callable[..., Any])


@dataclass(frozen=True)
class ConsoleServices:
    """What the pages use, built once on start: settings, accounts, form nonces, a ClickHouse client factory."""

    settings: Settings
    officers: OfficerStore
    nonces: FormNonces
    clickhouse: Callable[[], AbstractContextManager[Any]]



def _services() -> ConsoleServices:
    return cast(ConsoleServices, current_app.extensions["lintas_console"])


def _officer() -> Officer:
    return cast(Officer, g.officer)


@pages.before_app_request
def _load_officer() -> None:
    g.officer = None
    session_id = session.get("sid")
    if session_id:
        g.officer = _services().officers.session_officer(session_id)
        if g.officer is None:
            session.clear()


def signed_in(view: View) -> View:
    """Only for a signed-in officer; anyone else goes to the sign-in page."""
    @functools.wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if g.officer is None:
            return redirect(url_for("console.login"), 303)
        return view(*args, **kwargs)
    return cast(View, guarded)


@pages.get("/")
def home() -> Response:
    """The queue (or the sign-in page)."""
    return redirect(url_for("console.queue"), 303)


@pages.route("/login", methods=["GET", "POST"])
def login() -> Response | str | tuple[str, int]:
    """Sign in; a lockout is said as such, whatever the password."""
    if request.method == "GET":
        return render_template("login.html")
    officers = _services().officers
    outcome, officer = officers.authenticate(request.form.get("username", "").strip().lower()[:64],
                                             request.form.get("password", "")[:1024])
    if outcome is not Login.OK or officer is None:
        return render_template("login.html", error=LOCKED if outcome is Login.LOCKED else REFUSED), 401
    session.clear()  # a new session id and a new CSRF token: nothing carried over from before sign-in
    session.permanent = True
    session["sid"] = officers.open_session(officer.username)
    return redirect(url_for("console.queue"), 303)


@pages.post("/logout")
def logout() -> Response:
    """End the session on the server and in the browser."""
    session_id = session.get("sid")
    if session_id:
        _services().officers.close_session(session_id)
        if g.officer is not None:
            log.info("signed out: %s", _officer().username)
    session.clear()
    return redirect(url_for("console.login"), 303)


def visible_posts(officer: Officer) -> list[str] | None:
    """The posts whose cases the officer sees (``None``: every post)."""
    return None if officer.sees_all else list(officer.posts)


def is_visible(officer: Officer, case: dict[str, Any]) -> bool:
    """Whether the officer may see the case."""
    return officer.sees_all or bool(set(officer.posts) & set(case.get("post_ids") or ()))


@pages.get("/queue")
@signed_in
def queue() -> str:
    """Open and in-review cases of the officer's posts, highest severity first, then the oldest."""
    officer = _officer()
    with _services().clickhouse() as client:
        cases = review.queue(client, visible_posts(officer))
    return render_template("queue.html", cases=[c for c in cases if is_visible(officer, c)])


def _visible_case(case_id: str) -> dict[str, Any]:
    """The case's detail, or 404 whether it is missing or another post's."""
    if not CASE_ID.match(case_id):
        abort(404)
    officer = _officer()
    with _services().clickhouse() as client:
        detail = review.case_detail(client, case_id, visible_posts(officer))
    if detail is None or not is_visible(officer, detail["case"]):
        abort(404)
    return detail


def disclosable_tokens(detail: dict[str, Any]) -> list[str]:
    """The person tokens of a case an officer may ask the identity of: its key, subjects, travellers."""
    case = detail["case"]
    tokens = [case["key_token"]] if case.get("key_kind") in PERSON_KINDS else []
    tokens += list(case.get("subjects") or ())
    tokens += [c["document_token"] for c in detail.get("crossings") or () if c.get("document_token")]
    return list(dict.fromkeys(t for t in tokens if t))


def _at(row: dict[str, Any], field: str) -> str:
    """A row's time as a sort key (ISO text sorts in time order; a missing one first)."""
    return str(row.get(field) or "")


def ordered(detail: dict[str, Any]) -> dict[str, Any]:
    """Indicators by severity (highest first) then age; crossings and decisions oldest first."""
    return {**detail,
            "indicators": sorted(detail.get("indicators") or (),
                                 key=lambda a: (-SEVERITY_RANK.get(a.get("severity", ""), -1), _at(a, "first_seen"))),
            "crossings": sorted(detail.get("crossings") or (), key=lambda c: _at(c, "occurred_at")),
            "decisions": sorted(detail.get("decisions") or (), key=lambda d: _at(d, "decided_at"))}


def _case_page(detail: dict[str, Any], *, identity: dict[str, Any] | None = None, disclosed: str = "",
               error: str = "", status: int = 200) -> tuple[str, int]:
    """The case page with a fresh one-time nonce for each form on it."""
    case, officer = detail["case"], _officer()
    actions = allowed_actions(case["status"])
    nonces = {form: _services().nonces.issue(officer.username, case["case_id"], form, int(case.get("version") or 0))
              for form in (*actions, DISCLOSE)}
    return render_template("case.html", detail=ordered(detail), case=case, actions=actions, nonces=nonces,
                           labels=ACTION_LABELS, pathways=PATHWAYS, reasons=DISMISS_REASONS,
                           tokens=disclosable_tokens(detail), identity=identity, disclosed=disclosed,
                           error=error), status


@pages.get("/cases/<case_id>")
@signed_in
def case_page(case_id: str) -> tuple[str, int]:
    """A case: summary, indicators in words, related crossings (tokens), decision history, forms."""
    return _case_page(_visible_case(case_id))


def _redeem(case_id: str, form: str) -> int:
    """The case version the form was issued for; 409 if its nonce was used, expired or never issued."""
    claim = _services().nonces.redeem(request.form.get("nonce", ""), _officer().username, case_id, form)
    if claim is None:
        log.info("form refused: its nonce was used, expired or not issued (case %s, %s)", case_id, form)
        abort(409)
    return claim.case_version


def _post_for(officer: Officer, case: dict[str, Any]) -> str | None:
    """The officer's first post among the case's posts (a supervisor may have none)."""
    return next((p for p in officer.posts if p in (case.get("post_ids") or ())), None)


@pages.post("/cases/<case_id>/decide")
@signed_in
def decide(case_id: str) -> Response | tuple[str, int]:
    """Send the officer's decision on the case; the case agent applies it."""
    detail, officer = _visible_case(case_id), _officer()
    action = request.form.get("action", "")
    version = _redeem(case_id, action)
    if action not in allowed_actions(detail["case"]["status"]):
        abort(409)
    try:
        decision_id = review.send_decision(
            _services().settings, target_kind="CASE", target_id=case_id, action=action,
            officer_id=officer.username, officer_role=officer.role, post_id=_post_for(officer, detail["case"]),
            reason_code=request.form.get("reason_code") or None, pathway=request.form.get("pathway") or None,
            case_version=version,
        )
    except InvalidMessage as err:
        return _case_page(detail, error=f"{err.field}: {err.reason}", status=400)
    log.info("decision sent: %s on case %s by %s (%s)", action, case_id, officer.username, decision_id)
    flash(f"{ACTION_LABELS[action]}: decision {decision_id} sent. The case shows it once the case agent has "
          "applied it.")
    return redirect(url_for("console.case_page", case_id=case_id), 303)


@pages.post("/cases/<case_id>/disclose")
@signed_in
def disclose(case_id: str) -> tuple[str, int]:
    """The identity behind one of the case's tokens, for a stated purpose: shown once, audited."""
    detail, officer = _visible_case(case_id), _officer()
    _redeem(case_id, DISCLOSE)
    token, purpose = request.form.get("token", ""), " ".join(request.form.get("purpose", "").split())
    if token not in disclosable_tokens(detail):
        return _case_page(detail, error="token: not a person of this case", status=400)
    if len(purpose) < PURPOSE_MIN:
        return _case_page(detail, error=f"purpose: say why you need the identity (at least {PURPOSE_MIN} "
                                        "characters)", status=400)
    try:
        identity = privacy.resolve_identity(_services().settings, token, case_id, purpose=purpose)
    except (privacy.NotInVault, KeyDestroyed):
        return _case_page(detail, error="No identity can be disclosed for this person: never vaulted, or erased.")
    except LintasError as err:
        log.warning("disclosure failed for case %s: %s", case_id, err.code)
        abort(503)
    log.info("identity disclosed for case %s to %s (audited)", case_id, officer.username)
    return _case_page(detail, identity=identity, disclosed=token)
