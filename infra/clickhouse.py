"""The local ClickHouse: chDB served over the ClickHouse HTTP interface (see clickhouse_http)."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from infra.errors import StackError
from infra.process import ManagedProcess
from infra.serving import http_ok
from infra.tls import server_pem
from streams import clients
from streams.settings import Settings, ensure_secret, write_private

# Each user of the local server: its name's setting, its password's secret and its role (clickhouse_http)
USERS = (
    ("clickhouse_migrate_user", "clickhouse_migrate_password", "migrate"),  # migrations: DDL
    ("clickhouse_user", "clickhouse_password", "pipeline"),  # the worker and the lintas commands: rows
    ("clickhouse_readonly_user", "clickhouse_readonly_password", "readonly"),  # dashboards
)


class LocalClickHouse:
    """The chDB HTTP server of the local stack."""

    def __init__(self, settings: Settings) -> None:
        """Lay out data, users file and log under the state dir."""
        self.settings = settings
        self.state = settings.state_dir.resolve()
        self.root = self.state / "clickhouse"
        self.users_file = self.root / "users.json"

    def prepare(self) -> None:
        """Write the users file: the migration user (DDL), the pipeline's (rows) and the dashboards' (reads)."""
        self._write_users()

    def rotate(self) -> None:
        """New passwords for the three users; the running server reads its users file again (no restart).

        Clients built before the rotation keep the old password and get AUTHENTICATION_FAILED (516) until rebuilt.
        """
        from_env = [secret for _, secret, _ in USERS if getattr(self.settings, secret) is not None]
        if from_env:  # the environment's value wins over the file's: a new file would change nothing
            raise StackError("clickhouse", f"{', '.join(from_env)} set in the environment (LINTAS_...): rotate "
                                           "those where they are set")
        for _, secret, _ in USERS:
            ensure_secret(self.settings, secret, rotate=True)
        self._write_users()

    def _write_users(self) -> None:
        names = [getattr(self.settings, user) for user, _, _ in USERS]
        if len(set(names)) != len(names):
            raise StackError("clickhouse", f"the migration, pipeline and read-only users need three names, not "
                                           f"{', '.join(names)}")
        # "readonly" too, for an adapter started before roles: it reads that field only
        users = {getattr(self.settings, user): {"password_sha256_hex": _sha256(ensure_secret(self.settings, secret)),
                                                "role": role, "readonly": role == "readonly"}
                 for user, secret, role in USERS}
        # replaced at once: the running server reads the new file when its mtime changes, never half of it
        write_private(self.users_file, json.dumps(users, indent=2))

    def process(self) -> ManagedProcess:
        """The managed server process (https when secure)."""
        host, port = self.settings.clickhouse_host, self.settings.clickhouse_port
        command = [
            sys.executable, "-m", "infra.clickhouse_http",
            "--data-dir", str(self.root / "data"),
            "--users-file", str(self.users_file),
            "--host", host, "--port", str(port),
        ]
        if self.settings.secure:
            command += ["--tls-cert", str(server_pem(self.settings))]
        return ManagedProcess(
            name="clickhouse",
            command=command,
            ports=[port],
            log_file=self.state / "logs" / "clickhouse.log",
            pid_file=self.state / "run" / "clickhouse.pid",
            health=lambda: http_ok(f"{self.settings.clickhouse_url}/ping", self.settings.tls_ca_file, b"Ok."),
            host=host,
            cwd=Path(__file__).resolve().parent.parent,
        )

    def create_database(self) -> None:
        """Create the pipeline's database if missing (as the migration user: the others cannot)."""
        with clients.clickhouse_client(self.settings, migrate=True, database="default") as client:
            client.command(f"CREATE DATABASE IF NOT EXISTS {self.settings.clickhouse_database}")


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
