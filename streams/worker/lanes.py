"""Each agent's own I/O thread for blocking calls, and what the worker does while a server is away.

ClickHouse inserts and reads and schema-registry lookups block, so they run off the event loop,
each agent on a thread of its own: ingest's insert never queues behind the rules' or a lag
report (measured: half of ingest's time went there with one shared thread). A call that
raises :class:`~schemas.errors.Unavailable` (the server, not the request, is at fault) is tried
again with a capped, growing pause while the agent consumes nothing more, which is the
worker's backpressure. ClickHouse is waited for at most ``sink_max_retry_seconds``; after that
the error rises to the runtime, which stops the worker without committing (Kafka replays the
batch when it is back). The registry is waited for as long as it takes: without it nothing can
be decoded, and no message is at fault. Any other error rises at once.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from schemas.errors import Unavailable
from streams.settings import Settings
from streams.worker.sink import SinkUnavailable

log = logging.getLogger("lintas.lanes")
FIRST_PAUSE_S, LONGEST_PAUSE_S = 0.2, 5.0


class Lane:
    """One agent's I/O thread: ``await lane(fn, *args)`` runs ``fn`` there, waiting out an absent server."""

    def __init__(self, name: str, settings: Settings) -> None:
        """A lane for agent ``name`` (its thread is named after it)."""
        self.name, self.settings = name, settings
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"io-{name}")
        self.waited = 0.0  # seconds spent in calls, retries included (the agent's log line says them)

    def budget(self, exc: Unavailable) -> float:
        """How long one call may wait for the server ``exc`` names."""
        return self.settings.sink_max_retry_seconds if isinstance(exc, SinkUnavailable) else math.inf

    async def __call__(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on this lane's thread; an absent server is waited for (see the module doc)."""
        loop = asyncio.get_running_loop()
        t0 = time.monotonic()
        pause = FIRST_PAUSE_S
        try:
            while True:
                try:
                    return await loop.run_in_executor(self._thread, fn, *args)
                except Unavailable as exc:
                    if time.monotonic() - t0 + pause > self.budget(exc):
                        log.critical("%s: %s for %.0fs; stopping without committing", self.name, exc,
                                     time.monotonic() - t0)
                        raise
                    log.warning("%s: %s; trying again in %.1fs", self.name, exc, pause)
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, LONGEST_PAUSE_S)
        finally:
            self.waited += time.monotonic() - t0

    def close(self) -> None:
        """Stop the thread (a call in flight finishes)."""
        self._thread.shutdown(wait=False)


class Lanes:
    """Every agent's lane, made on first use (the same one each time asked)."""

    def __init__(self, settings: Settings) -> None:
        """No thread until a lane is asked for."""
        self.settings = settings
        self._lanes: dict[str, Lane] = {}

    def __call__(self, name: str) -> Lane:
        """Agent ``name``'s lane."""
        if name not in self._lanes:
            self._lanes[name] = Lane(name, self.settings)
        return self._lanes[name]
