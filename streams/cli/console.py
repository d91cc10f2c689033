"""``lintas console`` and ``lintas officers``: the officers' review console and its accounts."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from schemas.errors import LintasError
from streams.cli.common import settings_of

ROLES = ("reviewer", "supervisor")  # streams.console.accounts.ROLES, kept here so the parser imports nothing


class ConsolePortTaken(LintasError):
    """The console's address is already in use."""

    code = "console_port_in_use"


def _cmd_console(args: argparse.Namespace) -> int:
    import logging

    from waitress import create_server

    from streams.console.app import create_app

    settings = settings_of(args)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the registry client's every request: noise, not events
    app = create_app(settings)
    try:
        server = create_server(app, host=settings.console_host, port=settings.console_port, threads=8, ident="")
    except OSError as err:
        raise ConsolePortTaken(f"{settings.console_host}:{settings.console_port}: {err.strerror}; set "
                               "LINTAS_CONSOLE_PORT to a free port") from None
    print(f"review console: http://{settings.console_host}:{settings.console_port}/ (Ctrl-C stops it)", flush=True)
    server.run()
    return 0


def _password(args: argparse.Namespace) -> str:
    """The new account's password: one line of stdin, or typed twice without echo."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise LintasError("password: the two entries differ; nothing was created")
    return first


def _cmd_officers(args: argparse.Namespace) -> int:
    from streams.console.accounts import OfficerStore

    store = OfficerStore.from_settings(settings_of(args))
    if args.officers_action == "add":
        posts = tuple(p.strip().upper() for p in args.posts.split(",") if p.strip())
        officer = store.add(args.username, _password(args), args.role, posts)
        print(f"{officer.username}: {officer.role} account created for "
              f"{', '.join(officer.posts) or 'every post'}")
    elif args.officers_action == "unlock":
        store.unlock(args.username)
        print(f"{args.username}: unlocked")
    else:
        for o in store.officers():
            state = "locked" if store.is_locked(o) else f"{o.failed} failed" if o.failed else "ok"
            print(f"{o.username:<24} {o.role:<11} {','.join(o.posts) or '(all posts)':<30} {state}")
    return 0


def register(sub: Any) -> None:
    """Add this group's commands to the ``lintas`` parser."""
    console = sub.add_parser("console", help="serve the officers' review console (LINTAS_CONSOLE_HOST/PORT)")
    console.set_defaults(func=_cmd_console)
    officers = sub.add_parser("officers", help="the review console's accounts: add, list, unlock")
    action = officers.add_subparsers(dest="officers_action", required=True)
    add = action.add_parser("add", help="a new officer account")
    add.add_argument("username")
    add.add_argument("--role", choices=ROLES, required=True, help="reviewer: their posts' cases; supervisor: all")
    add.add_argument("--posts", default="", help="comma-separated post ids, e.g. ID-BTM,ID-ENT (a reviewer needs one)")
    add.add_argument("--password-stdin", action="store_true", help="read the password from one line of stdin")
    action.add_parser("list", help="every account: role, posts, lockout (never a hash)")
    unlock = action.add_parser("unlock", help="lift a lockout")
    unlock.add_argument("username")
    officers.set_defaults(func=_cmd_officers)
