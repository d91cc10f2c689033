"""The posts Lintas knows and their signing keys: the registry file (agents/posts.py) and one key file per post.

A post is registered before it may send, and only provisioning makes its key (``lintas stack up`` and
``lintas stack add-post`` locally, ``lintas posts add`` in production); the gateway and a post's own
process only read it. The registry is the packaged region plus the posts a deployment added to its
file (``<state_dir>/posts.json``, ``LINTAS_POSTS_FILE``), a new version at each change; readers take
a change up at once (one stat per batch). In production a post holds only its own key and the worker
reads every post's from the directory its secret store mounts (``LINTAS_POST_KEYS``).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agents.posts import PostRegistry, PostRegistryError, RegisteredPost, entry, packaged, registry
from agents.signing import POST_ID
from streams.settings import SecretMissing, Settings, write_private, write_secret_file

log = logging.getLogger("lintas.posts")


def key_path(settings: Settings, post_id: str) -> Path:
    """The file of one post's key."""
    if not POST_ID.match(post_id):
        raise ValueError("post id: letters, digits, '.', '_' or '-' only (it names the post's key file)")
    return _key_file(settings.post_keys_dir, post_id)


def _key_file(directory: Path, post_id: str) -> Path:
    return directory / f"{post_id}.key"


def _read_key(path: Path) -> bytes:
    """A key file's 32 bytes (hex); FileNotFoundError if it has none, ValueError if it is not a key."""
    return bytes.fromhex(path.read_text().strip())


def post_key(settings: Settings, post_id: str) -> bytes:
    """A post's own key, which must exist (a post's process never makes one: the stack's admin does)."""
    path = key_path(settings, post_id)
    try:
        return _read_key(path)
    except FileNotFoundError:
        raise SecretMissing(f"signing key of post {post_id}", path, "LINTAS_POST_KEYS") from None


def ensure_post_key(settings: Settings, post_id: str) -> bytes:
    """A post's key, made (32 random bytes) if it has none yet: for provisioning only."""
    path = key_path(settings, post_id)
    if not path.is_file():
        write_secret_file(path, secrets.token_hex(32))
    return _read_key(path)


class PostKeys:
    """Every post's key as the worker reads them: each file once.

    A post without one is looked for again each time, never remembered as missing: a post provisioned a
    moment ago must not be refused because of when its first event came.
    """

    def __init__(self, directory: Path) -> None:
        """Read keys from ``directory`` on first use."""
        self.directory = directory
        self._keys: dict[str, bytes] = {}

    def __call__(self, post_id: str) -> bytes | None:
        """The post's key, or None if it has none."""
        key = self._keys.get(post_id)
        if key is None:
            try:
                key = self._keys[post_id] = _read_key(_key_file(self.directory, post_id))
            except (FileNotFoundError, ValueError):
                return None
        return key


def _read_file(path: Path) -> tuple[int, list[RegisteredPost]]:
    """(version, added posts) of a registry file; (0, []) if there is none."""
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return 0, []
    except json.JSONDecodeError as exc:
        raise PostRegistryError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    return int(doc.get("version", 0)), [entry(raw) for raw in doc.get("posts", [])]


def load_registry(settings: Settings) -> PostRegistry:
    """The registry in force: the packaged posts and sites, and the deployment's file."""
    version, added = _read_file(settings.posts_path)
    return registry(added, version)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with os.fdopen(os.open(path.with_suffix(".lock"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def register(settings: Settings, post: RegisteredPost) -> tuple[PostRegistry, bool]:
    """Add ``post`` to the deployment's registry file (a new version); whether it was new.

    The same post registered again changes nothing; other details for a registered id are refused.
    """
    path = settings.posts_path
    with _locked(path):
        version, added = _read_file(path)
        current = registry(added, version)
        held = current.get(post.post_id)
        if held == post:
            return current, False
        if held is not None:
            why = "a packaged post or site; it cannot be changed" if post.post_id in packaged() else \
                "registered already with other details"
            raise PostRegistryError(f"{post.post_id}: {why}")
        added.append(post)
        updated = registry(added, version + 1)  # refuses what the packaged posts do not allow
        write_private(path, json.dumps({"version": version + 1, "posts": [p.to_json() for p in added]}, indent=1),
                      mode=0o644)
    return updated, True


def add_post(settings: Settings, post: RegisteredPost) -> bool:
    """Provision a post: register it (if it is not yet) and make its signing key (if it has none); whether it was new.

    What ``lintas posts add`` does in production; ``lintas stack add-post`` also gives it its Kafka
    principal and ACLs on the local stack.
    """
    _, new = register(settings, post)
    ensure_post_key(settings, post.post_id)
    return new


class RegistryFile:
    """The registry as a running process sees it: read again when the file changes (one stat per call)."""

    def __init__(self, settings: Settings) -> None:
        """Read it now: a bad file stops the process at start."""
        self.settings = settings
        self._stamp = self._stat()
        self._registry = load_registry(settings)

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = self.settings.posts_path.stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_ino

    def current(self) -> PostRegistry:
        """The registry now; a file made unreadable keeps the last good reading (logged) until it changes again."""
        stamp = self._stat()
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self._registry = load_registry(self.settings)
                log.info("posts registry %s: %d posts and sites", self._registry.version, len(self._registry.posts))
            except (OSError, PostRegistryError) as exc:
                log.error("posts registry %s unreadable (%s); keeping version %s", self.settings.posts_path, exc,
                          self._registry.version)
        return self._registry
