"""The local schema registry of the stack (see schema_registry for why it is ours)."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

from infra.process import ManagedProcess
from infra.registry_auth import ACCESS_LEVELS, Access, write_users_file
from infra.serving import http_ok
from infra.tls import server_pem
from streams.clients import registry_user
from streams.settings import Settings, ensure_credential


class SchemaRegistry:
    """The Confluent-compatible registry process, storing schemas under the state dir."""

    def __init__(self, settings: Settings) -> None:
        """Lay out the registry's data, users file and log under the state dir."""
        self.settings = settings
        self.state = settings.state_dir.resolve()
        self.root = self.state / "registry"
        self.users_file = self.root / "users.json"

    def install(self) -> bool:
        """Nothing to fetch: the registry is part of this package."""
        return False

    def prepare(self) -> None:
        """Create the data directory and, when secure, the users file from the local credentials."""
        self.root.mkdir(parents=True, exist_ok=True)
        if self.settings.secure:
            self._write_users(rotate=False)

    def rotate(self) -> None:
        """New passwords for the read, write and admin users; the running server reloads the users file.

        Clients built before the rotation keep the old password and get 401 until they are rebuilt.
        """
        self._write_users(rotate=True)

    def _write_users(self, *, rotate: bool) -> None:
        users: dict[str, tuple[str, Access]] = {}
        for access in ACCESS_LEVELS:
            user = registry_user(access)
            users[user] = (ensure_credential(self.settings, "registry", user, rotate=rotate), access)
        write_users_file(self.users_file, users)

    def process(self) -> ManagedProcess:
        """The managed server process (https and basic auth when secure)."""
        host, port = self.settings.schema_registry_host, self.settings.schema_registry_port
        command = [sys.executable, "-m", "infra.schema_registry", "--data-dir", str(self.root),
                   "--host", host, "--port", str(port)]
        if self.settings.secure:
            command += ["--users-file", str(self.users_file), "--tls-cert", str(server_pem(self.settings))]
        return ManagedProcess(
            name="registry",
            command=command,
            ports=[port],
            log_file=self.state / "logs" / "registry.log",
            pid_file=self.state / "run" / "registry.pid",
            health=self._answers,
            host=host,
            cwd=Path(__file__).resolve().parent.parent,
        )

    def _answers(self) -> bool:
        # https exactly when settings.schema_registry_url is, but always this local server's address (an
        # external URL may be set); the read user's password is read per probe, so a rotation applies at once
        host, port = self.settings.schema_registry_host, self.settings.schema_registry_port
        if not self.settings.secure:
            return http_ok(f"http://{host}:{port}/subjects", None)
        user = registry_user("read")
        token = base64.b64encode(f"{user}:{self.settings.credential('registry', user)}".encode()).decode()
        return http_ok(f"https://{host}:{port}/subjects", self.settings.tls_ca_file,
                       headers={"Authorization": f"Basic {token}"})
