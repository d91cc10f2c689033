"""The local schema registry of the stack (see schema_registry for why it is ours)."""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path

from infra.process import ManagedProcess
from streams.settings import Settings


class SchemaRegistry:
    """The Confluent-compatible registry process, storing schemas under the state dir."""

    def __init__(self, settings: Settings) -> None:
        """Lay out the registry's data and log under the state dir."""
        self.settings = settings
        self.state = settings.state_dir.resolve()
        self.root = self.state / "registry"

    def install(self) -> bool:
        """Nothing to fetch: the registry is part of this package."""
        return False

    def prepare(self) -> None:
        """Create the data directory."""
        self.root.mkdir(parents=True, exist_ok=True)

    def process(self) -> ManagedProcess:
        """The managed server process."""
        host, port = self.settings.schema_registry_host, self.settings.schema_registry_port
        return ManagedProcess(
            name="registry",
            command=[sys.executable, "-m", "infra.schema_registry", "--data-dir", str(self.root),
                     "--host", host, "--port", str(port)],
            ports=[port],
            log_file=self.state / "logs" / "registry.log",
            pid_file=self.state / "run" / "registry.pid",
            health=lambda: _answers(f"http://{host}:{port}/subjects"),
            host=host,
            cwd=Path(__file__).resolve().parent.parent,
        )


def _answers(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - loopback URL built from settings
        return resp.status == 200
