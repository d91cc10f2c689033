"""The ``lintas`` command line: one package, a module per command group.

Exit codes, the same for every command:

* 0: done;
* 1: done, and what it checked needs attention (bad lines refused by ``produce``, dedup drift,
  an unhealthy server, events still waiting in the spool, a schema change not yet frozen);
* 2: nothing done: a usage error, or a user error said in one line naming what is wrong and what to do
  (a missing file, a refused password, a server that cannot be reached, a bad rules file);
* 130: interrupted.

No user error prints a traceback; a bug still does (``--debug`` shows the traceback of a user error too).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from schemas.errors import LintasError
from streams.cli import analysis, console, events, posts, privacy, review, stack

DONE, ATTENTION, USER_ERROR, INTERRUPTED = 0, 1, 2, 130


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every ``lintas`` subcommand."""
    parser = argparse.ArgumentParser(prog="lintas", description="Lintas: border-crossing events, "
                                     "identity resolution and trafficking indicators for officers' review.")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (stack, events, posts, analysis, privacy, review, console):
        group.register(sub)
    return parser


def user_error(exc: BaseException) -> str | None:
    """One line for an error the user can fix, or ``None`` for a bug (which keeps its traceback)."""
    if isinstance(exc, LintasError):
        return f"[{exc.code}] {exc}"
    if isinstance(exc, FileNotFoundError):
        return f"[file_not_found] {exc.filename}: no such file"
    if isinstance(exc, PermissionError):
        return f"[permission_denied] {exc.filename}: permission denied"
    if isinstance(exc, IsADirectoryError):
        return f"[is_a_directory] {exc.filename}: a directory, not a file"
    from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

    if isinstance(exc, DatabaseError) and "AUTHENTICATION_FAILED" in str(exc):
        return ("[clickhouse_authentication_failed] ClickHouse refused the user name or password; check "
                "LINTAS_CLICKHOUSE_*_PASSWORD or the files in the state dir's secrets/")
    if isinstance(exc, OperationalError):
        return "[clickhouse_unreachable] ClickHouse cannot be reached; is the stack up (`lintas stack status`)?"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lintas`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return INTERRUPTED
    except Exception as exc:
        line = user_error(exc)
        if line is None or args.debug:
            raise
        print(f"lintas {args.command}: error {line}", file=sys.stderr)
        return USER_ERROR
