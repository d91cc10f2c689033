"""What the worker's handlers share, built from the settings when the worker starts (never at import).

The registry cache, the pseudonymisation keys, the per-person key store and sealer, the vault's
recent-identity cache, the template policy, this worker's copy of the watchlists, the registered
posts and their keys, the dedup thresholds file, the ClickHouse sink and each agent's I/O lane. A test builds the same
object over in-memory stand-ins (:mod:`streams.worker.testing`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from agents.dedup import ThresholdSet
from agents.ingest import TemplatePolicy
from agents.keys import Purposes
from agents.posts import PostRegistry
from agents.pseudonymise import Tokeniser
from agents.sealing import SubjectSealer
from agents.vault import Recent
from schemas.wire import SchemaIds
from streams import clients
from streams.keystores import FileKeyring, SqliteSubjectKeys
from streams.posts import PostKeys, RegistryFile
from streams.settings import Settings
from streams.topics import Role
from streams.watchlist_replica import Replica
from streams.worker.lanes import Lanes
from streams.worker.sink import ClickHouseSink

log = logging.getLogger("lintas.worker")


class Sink(Protocol):
    """Where rows go, and the few reads a handler makes (:class:`~streams.worker.sink.ClickHouseSink`)."""

    def write(self, table: str, rows: list[dict[str, Any]]) -> None:
        """Insert the rows in one block, or raise."""

    def query(self, sql: str, parameters: dict[str, Any]) -> list[dict[str, Any]]:
        """The rows of a read."""


class Lists(Protocol):
    """This worker's copy of the watchlists (:class:`~streams.watchlist_replica.Replica`)."""

    ready: Any

    def start(self) -> None:
        """Start following the list topics."""

    def lookup(self, token: str) -> Any:
        """The entries listed under a document token."""

    def sizes(self) -> dict[str, int]:
        """Entries per list."""


class ThresholdsFile:
    """The dedup thresholds in force: the calibrated file if there is one, else the packaged ones; re-read on change.

    ``lintas dedup calibrate`` writes a new version; :meth:`current` notices it (one stat per call) so
    running workers take it up at their next batch, and every decision records the version it used.
    """

    def __init__(self, path: Path) -> None:
        """Read ``path`` now: a bad file stops the worker at start."""
        self.path = path
        self._stamp: tuple[float, int] | None = None
        self._thresholds = self._read()

    def _stat(self) -> tuple[float, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_mtime, st.st_size

    def _read(self) -> ThresholdSet:
        calibrated = self.path if self.path.is_file() else None
        self._stamp = self._stat()
        thresholds = ThresholdSet.load(calibrated)
        log.info("dedup thresholds %s (%s): %s", thresholds.version, "calibrated" if calibrated else "packaged",
                 ", ".join(f"{m} verify {t.verify:.3f} yellow {t.yellow:.3f} red {t.red:.3f}"
                           for m, t in sorted(thresholds.models.items())) or "no model calibrated")
        return thresholds

    def current(self) -> ThresholdSet:
        """The thresholds now (the same object until the file changes)."""
        if self._stat() != self._stamp:
            self._thresholds = self._read()
        return self._thresholds


@dataclass
class Services:
    """What the handlers share."""

    settings: Settings
    ids: SchemaIds
    keyring: FileKeyring
    keys: Purposes
    sink: Sink
    lanes: Lanes
    sealer: SubjectSealer
    vaulted: Recent
    templates: TemplatePolicy
    watchlists: Lists
    post_keys: Callable[[str], bytes | None]  # each post's signing key (streams/posts.py)
    posts: Callable[[], PostRegistry]  # the registered posts now (streams/posts.py: RegistryFile.current)
    thresholds: ThresholdsFile

    @property
    def tok(self) -> Tokeniser:
        """The operations tokeniser: dedup, links, facts and alerts."""
        return self.keys.operations

    def refresh_keys(self) -> None:
        """Pick up a rotation made by ``lintas keys rotate`` (one stat per batch)."""
        if self.keyring.reload_if_changed():
            self.keys = Purposes.from_provider(self.keyring)
            log.info("pseudonymisation keys now: operations %s, analytics %s, regional %s",
                     self.keys.operations.key_id, self.keys.analytics.key_id, self.keys.regional.key_id)


def build_services(settings: Settings) -> Services:
    """Open what the handlers share: the keyring (created on first use), the subject key store, the clients."""
    keyring = FileKeyring(settings.keyring_path)
    return Services(
        settings=settings, ids=SchemaIds(clients.registry(settings, Role.WORKER)), keyring=keyring,
        keys=Purposes.from_provider(keyring), sink=ClickHouseSink(settings), lanes=Lanes(settings),
        sealer=SubjectSealer(SqliteSubjectKeys(settings.subject_keys_path)), vaulted=Recent(),
        templates=TemplatePolicy(settings.dedup_dimension, settings.dedup_quality_floor),
        watchlists=Replica(settings), post_keys=PostKeys(settings.post_keys_dir),
        posts=RegistryFile(settings).current, thresholds=ThresholdsFile(settings.dedup_thresholds_path),
    )
