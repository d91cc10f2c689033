"""``lintas export|keys|erase|identity|breach-report|watchlist``: what the data-protection law asks of ops."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path
from typing import Any

from streams.cli.common import settings_of


def _cmd_export(args: argparse.Namespace) -> int:
    from streams.ops.privacy import regional_export

    settings = settings_of(args)
    out = args.out or settings.state_dir / "exports" / f"regional-{args.destination}-{args.start}-{args.end}.json"
    manifest = regional_export(settings, args.destination, args.consent_basis, args.start, args.end, out)["manifest"]
    print(f"regional export to {manifest['destination']} (basis: {manifest['basis']}; policy "
          f"{manifest['policy_version']}, k={manifest['k']}): " + ", ".join(
              f"{name} {n} cells ({manifest['suppressed'][name]} suppressed)" for name, n in manifest["cells"].items())
          + f"; written {out}")
    return 0


def _cmd_keys(args: argparse.Namespace) -> int:
    from streams.keystores import FileKeyring

    settings = settings_of(args)
    ring = FileKeyring(settings.keyring_path)
    if args.action == "rotate":
        if not args.purpose:
            raise SystemExit("lintas keys rotate: --purpose is required")
        print(f"{args.purpose}: new active key {ring.rotate(args.purpose)}; workers switch at their next batch")
    elif args.action == "retire":
        if not args.key_id:
            raise SystemExit("lintas keys retire: --key-id is required")
        ring.retire(args.key_id)
        print(f"retired {args.key_id}: tokens it made can no longer be recomputed")
    for key in ring.describe():
        print(f"{key['id']:<16} {key['purpose']:<11} {key['state']:<9} created {key['created']}")
    return 0


def _cmd_erase(args: argparse.Namespace) -> int:
    import sys

    from streams.ops.erasure import erase

    person = sys.stdin.readline().strip() if args.person == "-" else args.person
    proof = erase(settings_of(args), person, args.basis, args.proof_dir, wait_s=args.wait)
    where = (args.proof_dir or settings_of(args).state_dir / "erasures") / f"{proof['erasure_id']}.json"
    rows = sum(proof["clickhouse_rows_before"].values())
    remaining, index = proof["remaining_until_retention"], proof["gallery_index"]
    print(f"erased {proof['person_reference_sha256'][:12]}…: {sum(proof['keys_destroyed'].values())} key(s) "
          f"destroyed, {proof['biometric_subjects']} biometric subject(s), {rows} ClickHouse row(s) deleted or "
          f"anonymised, {index['rows_removed']} gallery index row(s) removed ({index['shards_confirmed']} of "
          f"{index['shards']} shards confirmed), verified {proof['verified']}; {remaining['messages']} raw "
          f"message(s) on {remaining['topic']} until {remaining['deleted_by']}; proof {where}")
    return 0


def _cmd_identity(args: argparse.Namespace) -> int:
    import json

    from streams.ops.privacy import resolve_identity

    print(json.dumps(resolve_identity(settings_of(args), args.token, args.case), indent=2, sort_keys=True))
    return 0


def _cmd_breach_report(args: argparse.Namespace) -> int:
    import json

    from streams.ops.breach import breach_report, render

    report = breach_report(settings_of(args), args.start, args.end)
    print(render(report))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"written {args.out}")
    return 0


def _cmd_watchlist(args: argparse.Namespace) -> int:
    from agents.watchlist import ListFileError
    from streams.ops import watchlist
    from streams.watchlist_replica import Replica

    settings = settings_of(args)
    if args.action != "show" and not args.list:
        raise SystemExit(f"lintas watchlist {args.action}: --list is required")
    try:
        if args.action == "load":
            if args.file is None:
                raise SystemExit("lintas watchlist load: FILE is required")
            done = watchlist.load(settings, args.file, args.list, replace=args.replace)
        elif args.action == "remove":
            if (args.file is None) == (args.document is None):
                raise SystemExit("lintas watchlist remove: give FILE or --document STATE:NUMBER (one of them)")
            document = sys.stdin.readline().strip() if args.document == "-" else args.document
            done = watchlist.remove(settings, args.list, watchlist.removal_rows(args.file, document, args.list))
        else:
            replica = Replica(settings)
            replica.start()
            replica.wait(timeout_s=300)
            replica.stop()
            for name, n in replica.sizes().items():
                print(f"{name:<16} {n:>9} entries")
            return 0
    except ListFileError as err:
        print(f"lintas: {args.list}: {len(err.errors)} bad row(s); nothing was published", file=sys.stderr)
        for line, column, reason in err.errors:
            print(f"  line {line}: {column}: {reason}", file=sys.stderr)
        return 2
    print(f"{done.list}: {done.published} entr{'y' if done.published == 1 else 'ies'} published, {done.removed} "
          f"removed, in one transaction ({args.action} {done.load_id}, operations key {done.key_id}); workers "
          "apply it within seconds")
    return 0


def register(sub: Any) -> None:
    """Add this group's commands to the ``lintas`` parser."""
    export = sub.add_parser("export", help="regional aggregates for a partner state (k-suppressed, adequacy-checked)")
    export.add_argument("--destination", required=True, help="ISO 3166-1 alpha-3 code of the receiving state")
    export.add_argument("--consent-basis", default=None,
                        help="reference of the recorded consent or binding safeguards (needed off the adequacy list)")
    export.add_argument("--from", dest="start", type=date.fromisoformat, required=True, help="first day, YYYY-MM-DD")
    export.add_argument("--to", dest="end", type=date.fromisoformat, required=True, help="last day, YYYY-MM-DD")
    export.add_argument("--out", type=Path, default=None)
    export.set_defaults(func=_cmd_export)
    keys = sub.add_parser("keys", help="pseudonymisation keys per purpose: list, rotate, retire")
    keys.add_argument("action", choices=["list", "rotate", "retire"])
    keys.add_argument("--purpose", choices=["operations", "analytics", "regional"])
    keys.add_argument("--key-id", default=None)
    keys.set_defaults(func=_cmd_keys)
    erase = sub.add_parser("erase", help="erase one person: destroy their keys, delete or blank their rows, prove it")
    erase.add_argument("person", help="STATE:NUMBER of their document, name:GIVEN/SURNAME without one, or - to read "
                                      "it from stdin (keeps it out of shell history and ps)")
    erase.add_argument("--basis", default=None,
                       help="legal basis, required when the person is the subject of an alert (a possible case)")
    erase.add_argument("--proof-dir", type=Path, default=None, help="default <state_dir>/erasures/")
    erase.add_argument("--wait", type=float, default=120.0, metavar="SECONDS",
                       help="how long to wait for every gallery shard to confirm (the workers must be running)")
    erase.set_defaults(func=_cmd_erase)
    identity = sub.add_parser("identity", help="operations: the identity behind a person token (audited disclosure)")
    identity.add_argument("token", help="operations person token, e.g. an alert's key_token or subject")
    identity.add_argument("--case", required=True, help="the alert or case it is for (recorded in the audit)")
    identity.set_defaults(func=_cmd_identity)
    breach = sub.add_parser("breach-report", help="data classes and people affected by a breach in a time window")
    breach.add_argument("--from", dest="start", type=date.fromisoformat, required=True, help="first day, YYYY-MM-DD")
    breach.add_argument("--to", dest="end", type=date.fromisoformat, required=True, help="last day, YYYY-MM-DD")
    breach.add_argument("--out", type=Path, default=None, help="also write the report as JSON")
    breach.set_defaults(func=_cmd_breach_report)
    wl = sub.add_parser("watchlist", help="lost/stolen documents, notices, national alerts: load, remove, show",
                        description="A list file is CSV with the header issuing_state,number,reason,valid_from,"
                                    "valid_until,source (removal: issuing_state,number). The whole file is checked "
                                    "first; one bad row and nothing is published.")
    wl.add_argument("action", choices=["load", "remove", "show"])
    wl.add_argument("file", nargs="?", type=Path, default=None)
    wl.add_argument("--list", default=None, help="lost_stolen, notices or national_alerts")
    wl.add_argument("--replace", action="store_true", help="load: the file is the whole list; remove the rest")
    wl.add_argument("--document", default=None, help="remove: one STATE:NUMBER, or - to read it from stdin")
    wl.set_defaults(func=_cmd_watchlist)
