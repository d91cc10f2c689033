"""``lintas review list|show|decide``: the officers' review queue for ops, what the review console does."""

from __future__ import annotations

import argparse
import json
from typing import Any

from agents.cases import DISMISS_REASONS, PATHWAYS, TRANSITIONS
from streams.cli.common import UsageError, settings_of

REFERRAL_NOTE = "A referral is to protection, assistance or investigation; it never triggers refusal, detention or " \
                "return."


def _cmd_list(args: argparse.Namespace) -> int:
    from streams.clients import clickhouse_client
    from streams.ops.review import queue

    statuses = args.status.split(",") if args.status else ("OPEN", "IN_REVIEW")
    with clickhouse_client(settings_of(args), readonly=True) as client:
        cases = queue(client, args.post.split(",") if args.post else None, statuses, args.limit)
    for c in cases:
        print(f"{c['case_id']}  {c['status']:<9} {c['severity']:<6} score {c['score']:>5.1f}  "
              f"opened {c['opened_at']:%Y-%m-%d %H:%M}  posts {','.join(c['post_ids']) or '-'}  "
              f"{','.join(c['rules'])}")
    print(f"{len(cases)} case(s)")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from streams.clients import clickhouse_client
    from streams.ops.review import case_detail

    with clickhouse_client(settings_of(args), readonly=True) as client:
        detail = case_detail(client, args.case_id, None)
    if detail is None:
        raise UsageError(f"case_id: no case {args.case_id}")
    print(json.dumps(detail, indent=2, default=_plain, sort_keys=True))
    return 0


def _cmd_decide(args: argparse.Namespace) -> int:
    from streams.ops.review import send_decision

    target = "LINK" if args.action in ("CONFIRM_LINK", "REJECT_LINK") else "CASE"
    decision_id = send_decision(settings_of(args), target_kind=target, target_id=args.target_id, action=args.action,
                                officer_id=args.officer, officer_role="ops", post_id=args.post,
                                reason_code=args.reason, pathway=args.pathway)
    print(f"decision {decision_id} sent: {args.action} on {target.lower()} {args.target_id}; the case agent applies "
          f"it (lintas review show {args.target_id})")
    if args.action == "REFER":
        print(REFERRAL_NOTE)
    return 0


def _plain(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def register(sub: Any) -> None:
    """Add the ``review`` command and its actions."""
    review = sub.add_parser("review", help="officers' review: the case queue, a case, a decision (ops)",
                            description="Cases collect a person's, escort's, sponsor's or vessel's indicators. "
                                        + REFERRAL_NOTE)
    actions = review.add_subparsers(dest="action_command", required=True)
    listing = actions.add_parser("list", help="cases to review, the most severe and oldest first")
    listing.add_argument("--post", default=None, help="only cases at these posts (comma-separated)")
    listing.add_argument("--status", default=None, help="default OPEN,IN_REVIEW")
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(func=_cmd_list)
    show = actions.add_parser("show", help="one case: indicators, crossings (tokens), decisions, as JSON")
    show.add_argument("case_id")
    show.set_defaults(func=_cmd_show)
    decide = actions.add_parser("decide", help="send a decision on a case or a link to review.decisions")
    decide.add_argument("target_id", help="a case id (C...) or a link id")
    decide.add_argument("action", choices=[*TRANSITIONS, "CONFIRM_LINK", "REJECT_LINK"])
    decide.add_argument("--officer", required=True, help="the account deciding (tokenised before analytics)")
    decide.add_argument("--reason", choices=sorted(DISMISS_REASONS), default=None, help="DISMISS: why")
    decide.add_argument("--pathway", choices=sorted(PATHWAYS), default=None, help="REFER: to whom")
    decide.add_argument("--post", default=None)
    decide.set_defaults(func=_cmd_decide)
