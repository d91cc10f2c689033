"""Which border posts and landing sites may send events: the registry, and the check every event passes against it.

A post is reference data before it is a sender. The registry holds each post and landing site
Lintas knows: its id, name, kind (a crossing ``post`` or a landing ``site``), type (LAND, SEA,
AIR; none for a site), country and coordinates. The region's own are packaged
(:mod:`schemas.geography`); a deployment adds its others to a versioned file
(``lintas stack add-post`` locally, ``lintas posts add`` in production). The gateway refuses an
event whose post is not in the registry, or whose post type or country is not the registered
one, line by line; the worker refuses the same as a dead letter if such an event arrives anyway.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from agents.signing import POST_ID, SENDERS
from schemas.errors import LintasError
from schemas.geography import LANDING_SITES, POSTS
from schemas.validation import FieldError

PACKAGED_VERSION = "region-1"  # the packaged posts and sites (schemas/geography.py); bump when they change
KINDS = ("post", "site")
POST_TYPES = ("LAND", "SEA", "AIR")
_COUNTRY = re.compile(r"^[A-Z]{3}$")
REGISTER_HINT = "register it with lintas stack add-post, or lintas posts add in production"


class PostRegistryError(LintasError):
    """A registry entry that is not a post Lintas can take; names the field and why."""

    code = "post_registry_invalid"


@dataclass(frozen=True, slots=True)
class RegisteredPost:
    """One post or landing site in the registry."""

    post_id: str
    name: str
    kind: str  # "post": a border crossing point; "site": a maritime landing site
    post_type: str  # LAND, SEA or AIR for a post; "" for a site
    country: str  # ICAO 3-letter code
    latitude: float = 0.0
    longitude: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The entry as the registry file holds it."""
        return asdict(self)


@dataclass(frozen=True)
class PostRegistry:
    """The posts and sites in force, and the version of the registry they come from."""

    version: str
    posts: Mapping[str, RegisteredPost]

    def get(self, post_id: str) -> RegisteredPost | None:
        """The registered post or site of that id, or None."""
        return self.posts.get(post_id)


def entry(raw: Mapping[str, Any]) -> RegisteredPost:
    """A registry entry checked whole; :class:`PostRegistryError` names the first field at fault."""
    post_id = str(raw.get("post_id", ""))
    if not POST_ID.match(post_id):
        raise PostRegistryError("post_id: 1 to 64 letters, digits, '.', '_' or '-' (it names the post's key file)")
    kind = str(raw.get("kind", "post"))
    if kind not in KINDS:
        raise PostRegistryError(f"{post_id}: kind: one of {', '.join(KINDS)}")
    post_type = str(raw.get("post_type") or "")
    if kind == "post" and post_type not in POST_TYPES:
        raise PostRegistryError(f"{post_id}: post_type: one of {', '.join(POST_TYPES)} for a post")
    if kind == "site" and post_type:
        raise PostRegistryError(f"{post_id}: post_type: a landing site has none")
    country = str(raw.get("country", ""))
    if not _COUNTRY.match(country):
        raise PostRegistryError(f"{post_id}: country: a 3-letter ICAO code in capitals, e.g. IDN")
    name = str(raw.get("name") or "").strip()
    if not name or len(name) > 120:
        raise PostRegistryError(f"{post_id}: name: 1 to 120 characters")
    try:
        latitude, longitude = float(raw.get("latitude") or 0.0), float(raw.get("longitude") or 0.0)
    except (TypeError, ValueError):
        raise PostRegistryError(f"{post_id}: latitude and longitude: numbers (WGS84 degrees)") from None
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        raise PostRegistryError(f"{post_id}: latitude and longitude: within ±90 and ±180 degrees")
    return RegisteredPost(post_id, name, kind, post_type, country, latitude, longitude)


def packaged() -> dict[str, RegisteredPost]:
    """The region's posts and landing sites, as Lintas ships them."""
    posts = {p.post_id: RegisteredPost(p.post_id, p.name, "post", p.post_type, p.country, p.latitude, p.longitude)
             for p in POSTS.values()}
    sites = {s.site_id: RegisteredPost(s.site_id, s.name, "site", "", "IDN", s.latitude, s.longitude)
             for s in LANDING_SITES}
    return {**posts, **sites}


def registry(added: Sequence[RegisteredPost], added_version: int) -> PostRegistry:
    """The packaged posts and the ones a deployment added (version ``added_version`` of its file).

    A deployment may add posts and sites, never change a packaged one: a packaged id with other
    details is refused, since events already in the pipeline name it as it is.
    """
    posts = packaged()
    for post in added:
        if post.post_id in posts and posts[post.post_id] != post:
            raise PostRegistryError(f"{post.post_id}: a packaged post or site; it cannot be changed")
        posts[post.post_id] = post
    return PostRegistry(f"{PACKAGED_VERSION}+{added_version}", posts)


def sender_problems(contract: str, record: Mapping[str, Any], posts: PostRegistry) -> list[FieldError]:
    """What is wrong with who an event says sent it: an unknown post or site, or not the registered type or country."""
    part, key = SENDERS[contract]
    sender = record[part]
    post = posts.get(str(sender[key]))
    if post is None or post.kind != ("post" if part == "post" else "site"):
        what = "post" if part == "post" else "landing site"
        return [FieldError(f"{part}.{key}", "unknown_post", f"no such {what} ({REGISTER_HINT})")]
    problems = []
    if part == "post" and sender.get("post_type") != post.post_type:
        problems.append(FieldError(f"{part}.post_type", "post_mismatch",
                                   f"not the type registered for this post ({post.post_type})"))
    if sender.get("country") != post.country:
        problems.append(FieldError(f"{part}.country", "post_mismatch",
                                   f"not the country registered for this {part} ({post.country})"))
    return problems
