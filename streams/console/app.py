"""The review console's Flask app: built from settings on start (importing this module opens nothing).

Security that holds for every page: CSRF on every POST (Flask-WTF), a session cookie that is
HttpOnly and SameSite=Strict holding only a random server-side session id, a strict Content
Security Policy (no script at all), no framing, and ``no-store`` on every page (case pages show
tokens and, once, an identity). Nothing here logs personal data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask, Response, render_template, request
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException

from schemas.errors import Unavailable
from streams.console.accounts import OfficerStore
from streams.console.nonces import FormNonces
from streams.console.views import ConsoleServices, pages
from streams.settings import Settings, ensure_secret

log = logging.getLogger("lintas.console")
SECRET_FIELD = "console_secret_key"  # noqa: S105 - the setting's name, not a secret
REFERRAL_NOTICE = "A referral is to protection and assistance. It never triggers refusal, detention or return."
CSP = ("default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
REFUSALS = {
    400: "The form was refused. Reload the page and try again.",
    404: "There is no such page or case.",
    409: "This form was already sent (or it expired). Reload the page to see the case as it is now.",
    503: "A server the console needs cannot be reached now. Try again in a minute; nothing was sent.",
}


def signing_key(settings: Settings) -> str:
    """The session signing key: the setting, else generated once into the secrets dir (mode 0600)."""
    return ensure_secret(settings, SECRET_FIELD)


def _default_clickhouse(settings: Settings) -> Callable[[], AbstractContextManager[Any]]:
    from streams.clients import clickhouse_client

    return lambda: clickhouse_client(settings)


def create_app(settings: Settings, *, clickhouse: Callable[[], AbstractContextManager[Any]] | None = None,
               officers: OfficerStore | None = None) -> Flask:
    """The console app; ``clickhouse`` makes a client per request (a test passes a stub)."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=signing_key(settings), SESSION_COOKIE_NAME="lintas_console", SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict", PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
        MAX_CONTENT_LENGTH=64 * 1024, WTF_CSRF_SSL_STRICT=True, TEMPLATES_AUTO_RELOAD=False,
    )
    CSRFProtect(app)
    store = officers or OfficerStore.from_settings(settings)
    app.extensions["lintas_console"] = ConsoleServices(settings, store, FormNonces(store.path, clock=store.clock),
                                                clickhouse or _default_clickhouse(settings))

    app.register_blueprint(pages)
    app.after_request(_secure_headers)
    app.register_error_handler(CSRFError, _csrf_refused)
    app.register_error_handler(HTTPException, _refused)
    from clickhouse_connect.driver.exceptions import OperationalError

    for unreachable in (OperationalError, Unavailable):
        app.register_error_handler(unreachable, _unavailable)
    app.context_processor(lambda: {"referral_notice": REFERRAL_NOTICE})
    app.add_template_filter(when, "when")
    app.add_template_filter(age, "age")
    return app


def _secure_headers(response: Response) -> Response:
    response.headers.update(HEADERS)
    if not request.path.startswith("/static/"):
        response.headers["Cache-Control"] = "no-store"
        response.headers["Pragma"] = "no-cache"
    return response


def _csrf_refused(err: CSRFError) -> tuple[str, int]:
    return render_template("refused.html", status=400, message=f"{REFUSALS[400]} ({err.description})"), 400


def _refused(err: HTTPException) -> tuple[str, int] | HTTPException:
    status = err.code or 500
    if status not in REFUSALS:
        return err
    return render_template("refused.html", status=status, message=REFUSALS[status]), status


def _unavailable(err: Exception) -> tuple[str, int]:
    log.warning("a server is unavailable: %s", type(err).__name__)
    return render_template("refused.html", status=503, message=REFUSALS[503]), 503


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def when(value: datetime | None) -> str:
    """A time as officers read it: ``2025-03-01 14:05 UTC``."""
    return _utc(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if value else "–"


def age(value: datetime | None) -> str:
    """How long ago: ``3 d 4 h``, ``5 h 12 min`` or ``7 min``."""
    if not value:
        return "–"
    minutes = max(0, int((datetime.now(UTC) - _utc(value)).total_seconds() // 60))
    days, hours = minutes // 1440, minutes % 1440 // 60
    if days:
        return f"{days} d {hours} h"
    return f"{hours} h {minutes % 60} min" if hours else f"{minutes} min"
