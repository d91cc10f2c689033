"""The local ClickHouse: chDB served over the ClickHouse HTTP interface (see clickhouse_http)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import urllib.request
from pathlib import Path

from infra.process import ManagedProcess
from streams import clients
from streams.settings import Settings, ensure_secret


class LocalClickHouse:
    """The chDB HTTP server of the local stack."""

    def __init__(self, settings: Settings) -> None:
        """Lay out data, users file and log under the state dir."""
        self.settings = settings
        self.state = settings.state_dir.resolve()
        self.root = self.state / "clickhouse"

    def prepare(self) -> None:
        """Write the users file: a read-write pipeline user and a read-only dashboard user."""
        users = {
            self.settings.clickhouse_user: {
                "password_sha256_hex": _sha256(ensure_secret(self.settings, "clickhouse_password")),
                "readonly": False,
            },
            self.settings.clickhouse_readonly_user: {
                "password_sha256_hex": _sha256(ensure_secret(self.settings, "clickhouse_readonly_password")),
                "readonly": True,
            },
        }
        self.root.mkdir(parents=True, exist_ok=True)
        users_file = self.root / "users.json"
        fd = os.open(users_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(users, f, indent=2)

    def process(self) -> ManagedProcess:
        """The managed server process."""
        host, port = self.settings.clickhouse_host, self.settings.clickhouse_port
        return ManagedProcess(
            name="clickhouse",
            command=[
                sys.executable, "-m", "infra.clickhouse_http",
                "--data-dir", str(self.root / "data"),
                "--users-file", str(self.root / "users.json"),
                "--host", host, "--port", str(port),
            ],
            ports=[port],
            log_file=self.state / "logs" / "clickhouse.log",
            pid_file=self.state / "run" / "clickhouse.pid",
            health=lambda: _http_ok(f"http://{host}:{port}/ping", b"Ok."),
            host=host,
            cwd=Path(__file__).resolve().parent.parent,
        )

    def create_database(self) -> None:
        """Create the pipeline's database if missing."""
        with clients.clickhouse_client(self.settings, database="default") as client:
            client.command(f"CREATE DATABASE IF NOT EXISTS {self.settings.clickhouse_database}")


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _http_ok(url: str, expect: bytes, timeout: float = 1.0) -> bool:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback URL built from settings
        return resp.status == 200 and resp.read().startswith(expect)
