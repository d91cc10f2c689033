"""The one settings object of Lintas (pydantic-settings, env prefix ``LINTAS_``).

Every component reads its configuration from :func:`load_settings`; nothing else
reads ``os.environ``. Every default path derives from ``state_dir``. Secrets are
``SecretStr`` so they never print, and are read only through :meth:`Settings.secret`:
the environment's value if set, else the file the local stack generated into
``<state_dir>/secrets`` (mode 0600). Reading settings writes nothing.
"""

from __future__ import annotations

import functools
import os
import secrets
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.errors import LintasError


class SecretMissing(LintasError):
    """A secret is neither in the environment nor in the secrets directory."""

    code = "secret_missing"

    def __init__(self, field: str, path: Path, env: str | None = None) -> None:
        """Name the setting and the file looked at, never a value."""
        self.field, self.path = field, path
        super().__init__(f"{field}: not set; set {env or 'LINTAS_' + field.upper()} or run `lintas stack up` to "
                         f"generate the local stack's secrets into {path.parent}")


class Settings(BaseSettings):
    """Configuration for the local stack, the pipeline and its clients."""

    model_config = SettingsConfigDict(env_prefix="LINTAS_", extra="ignore")

    state_dir: Path = Field(
        default=Path(".lintas"),
        description="All server state, logs, PID files and installed distributions; every default path is under it.",
    )

    dist: Path | None = Field(
        default=None, description="Installed server jars; default <state_dir>/dist (tests share one across stacks).",
    )

    spool: Path | None = Field(
        default=None, description="A post's durable outbox (accepted events wait here until Kafka has them); "
                                  "default <state_dir>/spool.",
    )

    @property
    def dist_dir(self) -> Path:
        """Where the server distributions are installed."""
        return self.dist or self.state_dir / "dist"

    @property
    def spool_dir(self) -> Path:
        """Where ``lintas produce`` keeps its outbox."""
        return self.spool or self.state_dir / "spool"

    # Security: TLS and authentication on every server and client (docs/security.md)
    secure: bool = Field(default=True, description="TLS and authentication everywhere: Kafka SASL_SSL (SCRAM) with "
                                                   "ACLs, the registry over https with basic auth, ClickHouse over "
                                                   "https. Off only to measure what they cost.")
    tls_ca: Path | None = Field(default=None, description="CA certificate the clients trust; default the local "
                                                          "stack's own, <state_dir>/tls/ca.pem.")

    @property
    def tls_dir(self) -> Path:
        """Where the local stack keeps its CA and server certificate (keys mode 0600)."""
        return self.state_dir / "tls"

    @property
    def tls_ca_file(self) -> Path:
        """The CA certificate clients verify servers against."""
        return self.tls_ca or self.tls_dir / "ca.pem"

    # Kafka
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"
    kafka_admin_sasl_mechanism: str = Field(default="PLAIN", description="The local admin is declared in the "
                                                                         "brokers' own config (PLAIN over TLS) so "
                                                                         "its password never passes an argv.")
    kafka_username: str | None = Field(default=None, description="Production: this process's Kafka principal "
                                                                 "(with LINTAS_KAFKA_PASSWORD). Locally each command "
                                                                 "uses its role's generated credential.")
    kafka_password: SecretStr | None = None
    kafka_host: str = "127.0.0.1"
    kafka_port: int = Field(default=9092, description="Port of broker 1; broker n uses port + 10*(n-1).")
    kafka_controller_port: int = 9093
    kafka_brokers: int = Field(default=1, ge=1, le=3, description="1, or 3 for fault tests.")
    kafka_heap: str = "-Xms128m -Xmx512m"

    # Schema registry (Confluent REST API; infra/schema_registry.py locally)
    schema_registry_host: str = "127.0.0.1"
    schema_registry_port: int = 8081
    schema_registry_external_url: str | None = Field(
        default=None,
        description="Use an external Confluent-compatible registry instead of the local one.",
    )
    schema_registry_username: str | None = Field(default=None, description="Production: this process's registry "
                                                                          "user (with LINTAS_SCHEMA_REGISTRY_PASSWORD);"
                                                                          " locally, its role's generated one.")
    schema_registry_password: SecretStr | None = None

    # ClickHouse (chDB served over the ClickHouse HTTP interface locally)
    clickhouse_host: str = "127.0.0.1"
    clickhouse_port: int = 8123
    clickhouse_database: str = "lintas"
    clickhouse_user: str = "lintas"
    clickhouse_password: SecretStr | None = None
    clickhouse_readonly_user: str = "grafana"
    clickhouse_readonly_password: SecretStr | None = None
    clickhouse_migrate_user: str = Field(default="lintas_migrate", description="Runs migrations (DDL); the "
                                                                              "pipeline's user cannot.")
    clickhouse_migrate_password: SecretStr | None = None

    # The posts Lintas knows, and their signing keys (streams/posts.py): one key per post or landing site
    post_id: str | None = Field(default=None, description="This process is that post: `lintas produce` sends its "
                                                          "events only, as its own Kafka principal, signed with "
                                                          "its key. Unset locally: one gateway for every post.")
    post_keys: Path | None = Field(default=None, description="Posts' signing keys, one file per post (mode "
                                                             "0600); default <state_dir>/secrets/posts/.")

    posts_file: Path | None = Field(default=None, description="The posts and landing sites a deployment added to "
                                                               "the packaged ones (JSON, versioned); default "
                                                               "<state_dir>/posts.json.")

    @property
    def post_keys_dir(self) -> Path:
        """Where each post's signing key is (the worker reads every post's; a post only its own)."""
        return self.post_keys or self.secrets_dir / "posts"

    @property
    def posts_path(self) -> Path:
        """The deployment's registry of added posts and sites (readable by every process; not a secret)."""
        return self.posts_file or self.state_dir / "posts.json"

    # Pseudonymisation keys per purpose (agents/keys.py): a key file, created on first use
    keyring: Path | None = Field(
        default=None, description="Key file of the purposes' token keys (mode 0600); default <state_dir>/secrets/.",
    )

    @property
    def keyring_path(self) -> Path:
        """The key file the pipeline and ``lintas keys`` use."""
        return self.keyring or self.secrets_dir / "keyring.json"

    # Per-subject keys (agents/sealing.py): templates and vaulted identities are sealed per person
    subject_keys: Path | None = Field(
        default=None, description="Per-subject key store (SQLite, 0600); default <state_dir>/secrets/. Stands in "
                                  "for a KMS; destroying a key is how lintas erase crypto-shreds.",
    )

    @property
    def subject_keys_path(self) -> Path:
        """The per-subject key store the pipeline and ``lintas erase`` use."""
        return self.subject_keys or self.secrets_dir / "subject_keys.sqlite3"

    # Biometric deduplication: 1:1 verification per identity, 1:N link evidence between identities
    dedup_dimension: int = Field(default=512, ge=8, description="Float32 values per template.")
    dedup_quality_floor: float = Field(default=0.3, ge=0.0, le=1.0, description="Captures below it are rejected.")
    dedup_thresholds: Path | None = Field(
        default=None, description="Thresholds per template model (lintas dedup calibrate writes it); default "
                                  "<state_dir>/dedup/thresholds.json if it exists, else the packaged defaults.",
    )
    dedup_window: int = Field(default=256, ge=1, description="Recent captures per identity decided again when one "
                                                            "arrives out of order.")
    dedup_exact_max: int = Field(default=250_000, ge=0, description="Samples per model and shard searched exactly; "
                                                                    "past it, the coded index.")
    dedup_rerank: int = Field(default=1000, ge=1, description="Coded-index candidates re-ranked by their 8-bit codes.")
    dedup_nprobe: int = Field(default=1024, ge=1, description="Coded-index cells scanned per search.")
    dedup_hot_identities: int = Field(default=20_000, ge=0, description="Identities a shard keeps decoded.")
    dedup_auto_confirm_red: bool = Field(default=False, description="Red links confirm themselves (recorded as "
                                                                    "decided_by auto); off: an officer decides.")
    dedup_monitor_seconds: float = Field(default=60.0, gt=0, description="Seconds between accuracy checks.")
    dedup_batch_size: int = 1000

    @property
    def dedup_thresholds_path(self) -> Path:
        """Where calibrated thresholds are written and looked for."""
        return self.dedup_thresholds or self.state_dir / "dedup" / "thresholds.json"

    @property
    def gallery_dir(self) -> Path:
        """Where gallery shards keep identity records and a coded index's templates (nameless files, 0600)."""
        return self.state_dir / "gallery"

    # Trafficking-pattern rules
    trafficking_rules: Path | None = Field(
        default=None, description="Rules file (thresholds, windows); default agents/trafficking/rules.toml.",
    )
    trafficking_batch_size: int = 2000
    trafficking_model: Path | None = Field(
        default=None, description="Anomaly model (lintas trafficking train); default <state_dir>/models/.",
    )

    stay_rules: Path | None = Field(
        default=None, description="Stay rules (days per country, nationality, visa); default agents/stay_rules.toml.",
    )

    @property
    def anomaly_model_path(self) -> Path:
        """Where ``lintas trafficking train`` writes the model and the worker looks for it."""
        return self.trafficking_model or self.state_dir / "models" / "trafficking-anomaly.joblib"

    # Officers' review (agents/cases.py, streams/ops/review.py, the review console)
    review_policy: Path | None = Field(
        default=None, description="Case policy (indicator weights, case threshold, budget); default "
                                  "agents/review_policy.toml.",
    )
    review_budget_per_10k: float = Field(default=10.0, gt=0, description="Review capacity: cases per 10,000 "
                                                                         "crossings the case threshold is "
                                                                         "calibrated to (lintas review calibrate).")
    console_host: str = Field(default="127.0.0.1", description="The review console binds here (local only by "
                                                               "default; put a TLS proxy in front for posts).")
    console_port: int = 8480
    console_secret_key: SecretStr | None = None
    console_lockout_attempts: int = Field(default=5, ge=1, description="Wrong passwords in a row that lock an "
                                                                      "officer's account.")
    console_lockout_minutes: float = Field(default=15.0, gt=0)

    @property
    def officers_path(self) -> Path:
        """The review console's accounts (argon2 hashes, roles, posts, lockouts): SQLite, mode 0600."""
        return self.secrets_dir / "officers.sqlite3"

    # Pipeline
    sink_batch_size: int = 5000
    sink_batch_seconds: float = Field(default=0.2, gt=0, description="How long an agent waits to fill a batch: "
                                                                     "the latency floor at low rates.")
    sink_max_retry_seconds: float = 300.0
    worker_web_port: int = 6066
    worker_processes: int | None = Field(default=None, ge=1, description="Worker processes `lintas worker` runs "
                                                                         "(members of each agent's group); default "
                                                                         "one per core.")
    worker_member: int = Field(default=0, ge=0, description="This worker process's number among them (set by "
                                                            "`lintas worker` for each process it starts).")
    worker_session_timeout_s: float = Field(default=10.0, gt=0, description="A worker that stops heartbeating "
                                                                           "this long leaves its groups.")
    worker_max_batch_seconds: float = Field(default=600.0, gt=0, description="The longest one batch may take "
                                                                            "(a gallery shard read back included) "
                                                                            "before the group moves its partitions.")
    worker_prefetch_kbytes: int = Field(default=16_384, ge=1024, description="What each agent's consumer reads "
                                                                           "ahead, at most (KiB).")
    worker_lag_seconds: float = Field(default=5.0, gt=0, description="How often each agent records its "
                                                                    "consumer lag (table consumer_lag).")
    worker_stats_seconds: float = Field(default=30.0, gt=0, description="How often each busy agent logs where "
                                                                       "its time went.")

    # Health checks
    start_timeout_s: float = 90.0

    @property
    def kafka_bootstrap(self) -> str:
        """Bootstrap servers of every local broker, comma-separated."""
        return ",".join(f"{self.kafka_host}:{port}" for port in self.kafka_ports)

    @property
    def kafka_ports(self) -> list[int]:
        """Client ports of the local brokers."""
        return [self.kafka_port + 10 * i for i in range(self.kafka_brokers)]

    @property
    def schema_registry_url(self) -> str:
        """Base URL of the Confluent-compatible registry API."""
        if self.schema_registry_external_url:
            return self.schema_registry_external_url
        return f"{self._scheme}://{self.schema_registry_host}:{self.schema_registry_port}"

    @property
    def clickhouse_url(self) -> str:
        """HTTP(S) URL of ClickHouse."""
        return f"{self._scheme}://{self.clickhouse_host}:{self.clickhouse_port}"

    @property
    def _scheme(self) -> str:
        return "https" if self.secure else "http"

    def credential(self, service: str, user: str) -> str:
        """The password of ``user`` at ``service`` (kafka, registry).

        The environment's for this process's own configured user, else the file the local stack generated,
        ``<secrets_dir>/<service>/<user>``.
        """
        configured = {"kafka": (self.kafka_username, self.kafka_password),
                      "registry": (self.schema_registry_username, self.schema_registry_password)}.get(service)
        if configured and configured[0] == user and configured[1] is not None:
            return configured[1].get_secret_value()
        path = self.credential_path(service, user)
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            env = {"kafka": "LINTAS_KAFKA_USERNAME/_PASSWORD",
                   "registry": "LINTAS_SCHEMA_REGISTRY_USERNAME/_PASSWORD"}.get(service)
            raise SecretMissing(f"{service} password of {user}", path, env) from None

    def credential_path(self, service: str, user: str) -> Path:
        """The file a generated credential lives in."""
        return self.secrets_dir / service / user

    def secret(self, field: str) -> str:
        """A secret's value: from the environment, else from ``<secrets_dir>/<field>`` (reads only, writes nothing).

        The local stack generates its secrets into that directory on ``lintas stack up``; for a production
        cluster set them in the environment (``LINTAS_CLICKHOUSE_PASSWORD``, ...).
        """
        configured = getattr(self, field)
        if configured is not None:
            return str(configured.get_secret_value())
        path = self.secret_path(field)
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            raise SecretMissing(field, path) from None

    def secret_path(self, field: str) -> Path:
        """The file a secret is read from when the environment does not set it."""
        return self.secrets_dir / field

    def as_env(self) -> dict[str, str]:
        """The ``LINTAS_*`` environment that gives a child process the same stack (no secret: they are files)."""
        return {
            "LINTAS_STATE_DIR": str(self.state_dir.resolve()),
            "LINTAS_DIST": str(self.dist_dir.resolve()),
            "LINTAS_SPOOL": str(self.spool_dir.resolve()),
            "LINTAS_KAFKA_PORT": str(self.kafka_port),
            "LINTAS_KAFKA_CONTROLLER_PORT": str(self.kafka_controller_port),
            "LINTAS_KAFKA_BROKERS": str(self.kafka_brokers),
            "LINTAS_SCHEMA_REGISTRY_PORT": str(self.schema_registry_port),
            "LINTAS_CLICKHOUSE_PORT": str(self.clickhouse_port),
            "LINTAS_SECURE": "1" if self.secure else "0",
        }

    @property
    def secrets_dir(self) -> Path:
        """Where the local stack keeps generated secrets (mode 0700)."""
        return self.state_dir / "secrets"


def ensure_secret(settings: Settings, field: str, *, rotate: bool = False) -> str:
    """The secret's value; for the local stack, generated into the secrets dir (mode 0600) if missing.

    ``rotate``: a new one in its place. The one place a secret is written (the stack's, the review
    console's signing key); reading settings never writes.
    """
    if getattr(settings, field) is None and (rotate or not settings.secret_path(field).is_file()):
        write_secret_file(settings.secret_path(field), secrets.token_urlsafe(32), replace=rotate)
    return settings.secret(field)


def ensure_credential(settings: Settings, service: str, user: str, *, rotate: bool = False) -> str:
    """A local credential, generated once into ``<secrets_dir>/<service>/<user>`` (0600); a new one if ``rotate``."""
    path = settings.credential_path(service, user)
    if rotate or not path.is_file():
        write_secret_file(path, secrets.token_urlsafe(32), replace=rotate)
    return settings.credential(service, user)


def write_secret_file(path: Path, value: str, *, replace: bool = False) -> None:
    """Write a secret with mode 0600 in a 0700 directory; keep an existing file unless ``replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    if replace:
        write_private(path, value + "\n")
        return
    tmp = _temporary(path, value + "\n", 0o600)
    try:
        os.link(tmp, path)  # atomic and refuses to overwrite: another process may have made it first
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


def write_private(path: Path, data: str | bytes, mode: int = 0o600) -> None:
    """Replace ``path`` at once with ``data`` (mode 0600 unless said).

    A reader never sees half of it, and the file is never, even for a moment, readable by others.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(_temporary(path, data, mode), path)


def _temporary(path: Path, data: str | bytes, mode: int) -> Path:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())  # on disk before it replaces the old file: a crash leaves one or the other whole
    return tmp


@functools.cache
def load_settings() -> Settings:
    """Settings from the environment, loaded once; generated secrets are read through :meth:`Settings.secret`."""
    return Settings()
