"""``lintas posts add | list``: the posts and landing sites Lintas knows, and provisioning a new one.

``add`` registers a post (a new version of the deployment's registry file) and makes its signing key;
on the local stack ``lintas stack add-post`` does the same and also gives it its Kafka principal and
ACLs. A post is refused by the gateway and the worker until it is registered.
"""

from __future__ import annotations

import argparse
from typing import Any

from streams.cli.common import UsageError, settings_of


def post_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that describe a post or landing site to register (``stack add-post`` takes them too)."""
    parser.add_argument("post_id", metavar="POST_ID")
    parser.add_argument("--name", help="its name (default: the id)")
    parser.add_argument("--type", dest="post_type", choices=["LAND", "SEA", "AIR"],
                        help="a border post's type (needed for a post that is not registered yet)")
    parser.add_argument("--site", action="store_true", help="a maritime landing site, not a border post")
    parser.add_argument("--country", help="ICAO 3-letter code, e.g. IDN (needed for one not registered yet)")
    parser.add_argument("--lat", type=float, default=0.0, help="latitude, WGS84 degrees")
    parser.add_argument("--lon", type=float, default=0.0, help="longitude, WGS84 degrees")


def post_of(args: argparse.Namespace) -> Any:
    """The registered post ``args`` names, or the new one they describe."""
    from agents.posts import entry
    from streams.posts import load_registry

    held = load_registry(settings_of(args)).get(args.post_id)
    described = args.post_type or args.site or args.country or args.name
    if held is not None and not described:
        return held
    if args.country is None or (args.post_type is None and not args.site):
        raise UsageError(f"{args.post_id} is not registered: give --country and --type (or --site) to register it")
    return entry({"post_id": args.post_id, "name": args.name or args.post_id, "kind": "site" if args.site else "post",
                  "post_type": "" if args.site else args.post_type, "country": args.country,
                  "latitude": args.lat, "longitude": args.lon})


def _cmd_add(args: argparse.Namespace) -> int:
    from streams.posts import add_post

    settings = settings_of(args)
    post = post_of(args)
    new = add_post(settings, post)
    print(f"{post.post_id}: {'registered' if new else 'registered already'} in {settings.posts_path}; signing key in "
          f"{settings.post_keys_dir}. On the Kafka cluster, its principal post-{post.post_id} needs the grants of "
          "streams.topics.grants(Role.POST)")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from streams.posts import load_registry

    registry = load_registry(settings_of(args))
    for post in sorted(registry.posts.values(), key=lambda p: (p.country, p.post_id)):
        print(f"{post.post_id:<12} {post.kind:<4} {post.post_type or '-':<4} {post.country}  {post.name}")
    print(f"registry {registry.version}: {len(registry.posts)} posts and sites")
    return 0


def register(sub: Any) -> None:
    """Add this group's commands to the ``lintas`` parser."""
    posts = sub.add_parser("posts", help="the posts and landing sites Lintas knows; provision a new one")
    posts_sub = posts.add_subparsers(dest="action", required=True)
    add = posts_sub.add_parser("add", help="register a post (or --site) and make its signing key")
    post_arguments(add)
    add.set_defaults(func=_cmd_add)
    posts_sub.add_parser("list", help="every registered post and site").set_defaults(func=_cmd_list)
