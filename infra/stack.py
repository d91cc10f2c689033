"""``lintas stack up | down | status | logs | reset``: the local stack of real servers.

Kafka (KRaft), a Confluent-compatible schema registry and ClickHouse, each bound to
127.0.0.1, with all state, logs and PID files under ``settings.state_dir``:

    <state_dir>/dist/       installed jars (Maven Central)
    <state_dir>/kafka/      cluster ids, node configs and data
    <state_dir>/registry/   registry storage
    <state_dir>/clickhouse/ ClickHouse data and users file
    <state_dir>/secrets/    generated local passwords and posts' signing keys (0600)
    <state_dir>/tls/        the local CA and the servers' certificate (keys 0600)
    <state_dir>/logs/       one log per server
    <state_dir>/run/        one PID file per server
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from agents.posts import RegisteredPost
from infra.clickhouse import LocalClickHouse
from infra.errors import StackError
from infra.kafka import (
    KafkaCluster,
    create_topics,
    known_posts,
    provision,
    rewrite_configs,
    wait_for_brokers,
    write_kcat_config,
)
from infra.process import ManagedProcess, port_is_bound, rss_bytes
from infra.registry import SchemaRegistry
from infra.tls import ensure_certificates
from streams.posts import add_post
from streams.settings import Settings, ensure_credential
from streams.topics import Role, principal

Say = Callable[[str], None]


@dataclass
class ServerStatus:
    """One row of ``lintas stack status``."""

    name: str
    pid: int | None
    ports: list[int]
    healthy: bool
    rss_mb: float | None


class Stack:
    """The local stack described by one settings object."""

    def __init__(self, settings: Settings) -> None:
        """Build the servers' descriptions; nothing starts until :meth:`up`."""
        self.settings = settings
        self.state = settings.state_dir.resolve()
        self.kafka = KafkaCluster(settings)
        self.registry = SchemaRegistry(settings)
        self.clickhouse = LocalClickHouse(settings)

    @property
    def _stack_file(self):  # noqa: ANN202 - Path
        return self.state / "stack.json"

    def servers(self) -> list[ManagedProcess]:
        """Every server of the current layout, in start order (the worker last, when it runs)."""
        servers = [*self.kafka.processes(), self.registry.process(), self.clickhouse.process()]
        worker = self.worker()
        if worker.pid() is not None:
            servers.append(worker)
        return servers

    def worker(self) -> ManagedProcess:
        """The pipeline worker (`lintas worker`) as a background process of the stack."""
        from streams.ops.migrate import MIGRATIONS

        versions = len(list(MIGRATIONS.glob("*.sql")))

        def migrated() -> bool:
            from streams.clients import clickhouse_client

            with clickhouse_client(self.settings) as client:
                return int(client.query("SELECT count() FROM schema_migrations").result_rows[0][0]) >= versions

        return ManagedProcess(
            name="worker",
            command=[sys.executable, "-m", "streams.cli", "worker"],
            ports=[],
            log_file=self.state / "logs" / "worker.log",
            pid_file=self.state / "run" / "worker.pid",
            health=migrated,
            cwd=Path(__file__).resolve().parent.parent,
            env=self.settings.as_env(),
        )

    def start_worker(self, say: Say = print) -> None:
        """Start the pipeline worker in the background (idempotent)."""
        proc = self.worker()
        started = proc.launch(self.settings.start_timeout_s)
        proc.await_ready(self.settings.start_timeout_s)
        self._announce(proc, started, say, healthy=True)

    def _known_servers(self) -> list[ManagedProcess]:
        """Servers of the layout last brought up (a 3-broker cluster stays known to `down`)."""
        try:
            recorded = json.loads(self._stack_file.read_text())
            brokers = int(recorded["kafka_brokers"])
        except (FileNotFoundError, ValueError, KeyError):
            return self.servers()
        if brokers == self.settings.kafka_brokers:
            return self.servers()
        return Stack(self.settings.model_copy(update={"kafka_brokers": brokers})).servers()

    def up(self, say: Say = print) -> None:
        """Install what is missing, start every server, wait for health, create topics. Idempotent."""
        t0 = time.monotonic()
        self.state.mkdir(parents=True, exist_ok=True)
        self._refuse_other_layout()
        self._check_ports()
        self._install(say)
        timeout = self.settings.start_timeout_s
        if self.settings.secure and ensure_certificates(self.settings):
            say(f"tls: local CA and server certificate made in {self.settings.tls_dir}")

        self.kafka.prepare()
        brokers = self.kafka.processes()
        self._start_brokers(brokers, say)
        self._stack_file.write_text(json.dumps({"kafka_brokers": self.settings.kafka_brokers}) + "\n")
        wait_for_brokers(self.settings, len(brokers), timeout)
        created = create_topics(self.settings, replication=3 if self.kafka.n >= 3 else 1)
        say(f"kafka: {len(brokers)} broker(s) healthy at {self.settings.kafka_bootstrap}"
            + (f"; created topics {', '.join(created)}" if created else "; topics present"))
        if self.settings.secure:
            users, added, removed = provision(self.settings, known_posts(self.settings))
            say(f"kafka: SASL_SSL; {users} principals, ACLs as declared ({added} added, {removed} removed); "
                f"kcat as ops: kcat -F {write_kcat_config(self.settings)}")

        self.registry.prepare()
        self._start(self.registry.process(), say)
        self.clickhouse.prepare()
        self._start(self.clickhouse.process(), say)
        self.clickhouse.create_database()
        say(f"stack up in {time.monotonic() - t0:.1f}s (state: {self.state})")

    def _refuse_other_layout(self) -> None:
        try:
            recorded = int(json.loads(self._stack_file.read_text())["kafka_brokers"])
        except (FileNotFoundError, ValueError, KeyError):
            return
        running = [p.name for p in self._known_servers() if p.pid() is not None and p.name.startswith("kafka")]
        if recorded != self.settings.kafka_brokers and running:
            raise StackError(
                "kafka",
                f"a {recorded}-broker cluster is running; run `lintas stack down` before "
                f"starting {self.settings.kafka_brokers} broker(s)",
            )

    def _check_ports(self) -> None:
        """Fail before starting anything if a port of a server that is not running is taken."""
        for proc in self.servers():
            if proc.pid() is None:
                proc.check_ports()

    def _install(self, say: Say) -> None:
        def timed(job: Callable[[], bool]) -> float | None:
            t = time.monotonic()
            return time.monotonic() - t if job() else None

        jobs = {"kafka": self.kafka.install, "registry": self.registry.install}
        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            futures = {name: pool.submit(timed, job) for name, job in jobs.items()}
            for name, future in futures.items():
                took = future.result()
                if took is not None:
                    say(f"{name}: installed from Maven Central ({took:.1f}s)")

    def _start_brokers(self, brokers: list[ManagedProcess], say: Say) -> None:
        """Launch every node, then wait for each: a KRaft node is healthy only once its quorum is."""
        for proc in brokers:
            self._announce(proc, proc.launch(self.settings.start_timeout_s), say)
        for proc in brokers:
            proc.await_ready(self.settings.start_timeout_s)

    @staticmethod
    def _stop_brokers(brokers: list[ManagedProcess], say: Say) -> None:
        # KRaft nodes stop together: a node left without a controller quorum hangs in controlled shutdown.
        signalled = [(proc, proc.signal_stop()) for proc in brokers]
        for proc, pid in signalled:
            if pid is not None:
                proc.wait_stopped(pid)
                say(f"{proc.name}: stopped")

    def _start(self, proc: ManagedProcess, say: Say) -> None:
        started = proc.launch(self.settings.start_timeout_s)
        proc.await_ready(self.settings.start_timeout_s)
        self._announce(proc, started, say, healthy=True)

    @staticmethod
    def _announce(proc: ManagedProcess, started: bool, say: Say, healthy: bool = False) -> None:
        state = "started" if started else "already running"
        where = f", 127.0.0.1:{','.join(str(p) for p in proc.ports)}" if proc.ports else ""
        say(f"{proc.name}: {state} (pid {proc.pid()}{where}){' healthy' if healthy else ''}")

    def down(self, say: Say = print) -> None:
        """Stop every server in reverse start order and check that no port stays bound."""
        servers = self._known_servers()
        worker = self.worker()
        if worker.stop():
            say("worker: stopped")
        servers = [p for p in servers if p.name != "worker"]
        brokers = [p for p in servers if p.name.startswith("kafka-")]
        for proc in reversed([p for p in servers if p not in brokers]):
            if proc.stop():
                say(f"{proc.name}: stopped")
        self._stop_brokers(brokers, say)
        bound = [
            f"{proc.name}:{port}" for proc in self._known_servers() for port in proc.ports
            if port_is_bound(proc.host, port)
        ]
        if bound:
            raise StackError("stack", f"ports still bound after stop: {', '.join(bound)}")
        say("stack down")

    def status(self) -> list[ServerStatus]:
        """State of every known server."""
        rows = []
        for proc in self._known_servers():
            pid = proc.pid()
            rss = rss_bytes(pid) if pid else None
            rows.append(ServerStatus(
                name=proc.name, pid=pid, ports=list(proc.ports),
                healthy=pid is not None and proc.healthy(),
                rss_mb=round(rss / 2**20, 1) if rss else None,
            ))
        return rows

    def logs(self, server: str | None, lines: int) -> str:
        """The last lines of one server's log, or of every server's."""
        procs = [p for p in self._known_servers() if server in (None, p.name)]
        if not procs:
            names = ", ".join(p.name for p in self._known_servers())
            raise StackError("stack", f"no server named {server!r}; one of: {names}")
        out = []
        for proc in procs:
            out.append(f"==> {proc.log_file} <==")
            try:
                out.extend(proc.log_file.read_text(errors="replace").splitlines()[-lines:])
            except FileNotFoundError:
                out.append("(no log yet)")
        return "\n".join(out)

    def add_post(self, post: RegisteredPost, say: Say = print) -> None:
        """Register a post, make its signing key and, with security on, its principal and ACLs (idempotent)."""
        new = add_post(self.settings, post)
        say(f"{post.post_id}: {'registered' if new else 'registered already'}; signing key in "
            f"{self.settings.post_keys_dir}")
        if self.settings.secure:
            _, added, _ = provision(self.settings, known_posts(self.settings))
            say(f"kafka: {principal(Role.POST, post.post_id)} may write the input topics ({added} ACLs added)")

    def rotate(self, say: Say = print, *, admin: bool = False) -> None:
        """New passwords for every local principal and user; the running servers take them without a restart.

        The worker, if running, is restarted to connect with its new ones. ``admin``: the Kafka admin's (and
        the controller's) too, which the brokers read at start: they are restarted.
        """
        if not self.settings.secure:
            raise StackError("stack", "security is off (LINTAS_SECURE=0): there are no credentials to rotate")
        users, _, _ = provision(self.settings, known_posts(self.settings), rotate=True)
        write_kcat_config(self.settings)
        say(f"kafka: {users} principals re-keyed")
        self.registry.rotate()
        say("registry: users re-keyed")
        self.clickhouse.rotate()
        say("clickhouse: users re-keyed")
        if admin:
            for user in (principal(Role.ADMIN), "controller"):
                ensure_credential(self.settings, "kafka", user, rotate=True)
            rewrite_configs(self.kafka)
            brokers = self.kafka.processes()
            self._stop_brokers(brokers, lambda _: None)
            self._start_brokers(brokers, lambda _: None)
            wait_for_brokers(self.settings, len(brokers), self.settings.start_timeout_s)
            say("kafka: admin re-keyed, brokers restarted")
        worker = self.worker()
        if worker.pid() is not None:
            worker.stop()
            self.start_worker(say)

    def reset(self, say: Say = print) -> None:
        """Stop everything and delete all server state, keeping installed distributions."""
        self.down(say)
        for name in ("kafka", "registry", "clickhouse", "run", "stack.json"):
            path = self.state / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        say(f"state removed under {self.state} (installed jars kept)")
