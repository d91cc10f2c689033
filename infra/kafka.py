"""Apache Kafka in KRaft mode from Maven Central jars: config, storage format, CLI tools, topics.

Each node runs combined (broker and controller) so one process is a whole
cluster by default and three processes form a quorum for fault tests.
"""

from __future__ import annotations

import base64
import functools
import socket
import struct
import subprocess
import time
import uuid
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from infra import dist
from infra.process import ManagedProcess
from schemas.errors import StackError, StateDirError
from streams.settings import Settings
from streams.topics import ALL_TOPICS, TopicSpec

DIST = "kafka"

# Kafka's own CLI tools, by the name of their shell script in Kafka's tarball.
CLI_TOOLS: dict[str, str] = {
    "topics": "org.apache.kafka.tools.TopicCommand",
    "consumer-groups": "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
    "console-consumer": "org.apache.kafka.tools.consumer.ConsoleConsumer",
    "console-producer": "kafka.tools.ConsoleProducer",
    "get-offsets": "org.apache.kafka.tools.GetOffsetShell",
    "configs": "kafka.admin.ConfigCommand",
    "metadata-quorum": "org.apache.kafka.tools.MetadataQuorumCommand",
    "storage": "kafka.tools.StorageTool",
}


class KafkaCluster:
    """The local Kafka cluster of ``settings.kafka_brokers`` combined nodes."""

    def __init__(self, settings: Settings) -> None:
        """Lay the cluster out under ``<state_dir>/kafka/cluster-<n>``."""
        self.settings = settings
        self.state = settings.state_dir.resolve()
        self.dist_dir = settings.dist_dir.resolve() / DIST
        self.root = self.state / "kafka" / f"cluster-{settings.kafka_brokers}"
        self.n = settings.kafka_brokers

    @property
    def classpath(self) -> str:
        """Java classpath of the installed jars."""
        return str(self.dist_dir / "lib" / "*")

    def node_dir(self, node: int) -> Path:
        """Config and data directory of node ``node`` (1-based)."""
        return self.root / f"node-{node}"

    def client_port(self, node: int) -> int:
        """Client (PLAINTEXT) port of a node."""
        return self.settings.kafka_port + 10 * (node - 1)

    def controller_port(self, node: int) -> int:
        """Controller (KRaft quorum) port of a node."""
        return self.settings.kafka_controller_port + 10 * (node - 1)

    def install(self) -> bool:
        """Fetch the jars from Maven Central if missing."""
        dist.require_tool("java", "kafka", "install a JDK 17 (Debian: `apt-get install -y openjdk-17-jre-headless`)")
        return dist.install(DIST, self.dist_dir, self.state / "logs" / "install-kafka.log")

    def server_properties(self, node: int) -> str:
        """server.properties of one node."""
        host = self.settings.kafka_host
        voters = ",".join(f"{i}@{host}:{self.controller_port(i)}" for i in range(1, self.n + 1))
        rf = 3 if self.n >= 3 else 1
        min_isr = 2 if self.n >= 3 else 1
        return "\n".join([
            "process.roles=broker,controller",
            f"node.id={node}",
            f"controller.quorum.voters={voters}",
            f"listeners=PLAINTEXT://{host}:{self.client_port(node)},CONTROLLER://{host}:{self.controller_port(node)}",
            f"advertised.listeners=PLAINTEXT://{host}:{self.client_port(node)}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={self.node_dir(node) / 'data'}",
            f"default.replication.factor={rf}",
            f"min.insync.replicas={min_isr}",
            f"offsets.topic.replication.factor={rf}",
            f"transaction.state.log.replication.factor={rf}",
            f"transaction.state.log.min.isr={min_isr}",
            "num.partitions=3",
            "auto.create.topics.enable=false",
            "group.initial.rebalance.delay.ms=0",
            "log.retention.check.interval.ms=60000",
            "log.segment.bytes=104857600",
            "num.network.threads=2",
            "num.io.threads=4",
            "",
        ])

    def _cluster_id(self) -> str:
        path = self.root / "cluster.id"
        if path.is_file():
            return path.read_text().strip()
        while True:
            # Kafka's Uuid text form: URL-safe base64 without padding, never starting with '-'.
            cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            if not cid.startswith("-"):
                break
        self.root.mkdir(parents=True, exist_ok=True)
        path.write_text(cid + "\n")
        return cid

    def prepare(self) -> None:
        """Write configs and format storage on first start; refuse a half-written state dir."""
        cid = self._cluster_id()
        for node in range(1, self.n + 1):
            ndir = self.node_dir(node)
            data = ndir / "data"
            meta = data / "meta.properties"
            (ndir).mkdir(parents=True, exist_ok=True)
            (ndir / "server.properties").write_text(self.server_properties(node))
            (ndir / "log4j.properties").write_text(LOG4J)
            if meta.is_file():
                if f"cluster.id={cid}" not in meta.read_text():
                    raise StateDirError(
                        f"kafka-{node}",
                        f"{meta} belongs to another cluster than {self.root / 'cluster.id'}; "
                        f"remove {self.root} (or run `lintas stack reset`) to start afresh",
                    )
                continue
            if data.exists() and any(data.iterdir()):
                raise StateDirError(
                    f"kafka-{node}",
                    f"{data} has data but no meta.properties (a half-written state dir); "
                    f"remove {self.root} (or run `lintas stack reset`) to start afresh",
                )
            log = self.state / "logs" / f"kafka-{node}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "ab") as out:
                result = subprocess.run(  # noqa: S603
                    self._java(CLI_TOOLS["storage"], node) + [
                        "format", "-t", cid, "-c", str(ndir / "server.properties"), "--ignore-formatted",
                    ],
                    stdout=out, stderr=subprocess.STDOUT, check=False,
                )
            if result.returncode != 0:
                raise StackError(f"kafka-{node}", "could not format KRaft storage", str(log))

    def _java(self, main: str, node: int | None = None, heap: str = "-Xmx256m") -> list[str]:
        log4j = (self.node_dir(node) if node else self.root) / "log4j.properties"
        opts = [
            *heap.split(),
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{log4j}",
        ]
        return ["java", *opts, "-cp", self.classpath, main]

    def processes(self) -> list[ManagedProcess]:
        """One managed process per node."""
        procs = []
        for node in range(1, self.n + 1):
            ndir = self.node_dir(node)
            port = self.client_port(node)
            procs.append(ManagedProcess(
                name=f"kafka-{node}",
                command=[
                    *self._java("kafka.Kafka", node, self.settings.kafka_heap),
                    str(ndir / "server.properties"),
                ],
                ports=[port, self.controller_port(node)],
                log_file=self.state / "logs" / f"kafka-{node}.log",
                pid_file=self.state / "run" / f"kafka-{node}.pid",
                health=functools.partial(broker_answers, self.settings.kafka_host, port),
                host=self.settings.kafka_host,
                env={"LOG_DIR": str(self.state / "logs")},
            ))
        return procs

    def cli_command(self, tool: str, args: list[str]) -> list[str]:
        """Argv that runs one of Kafka's CLI tools against this cluster's jars."""
        if tool not in CLI_TOOLS:
            raise StackError("kafka", f"unknown CLI tool {tool!r}; one of: {', '.join(sorted(CLI_TOOLS))}")
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "log4j.properties").write_text(LOG4J_CLI)
        return self._java(CLI_TOOLS[tool]) + args


def broker_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """True if a Kafka broker on host:port answers an ApiVersions request without error."""
    client_id = b"lintas-health"
    body = struct.pack(">hhih", 18, 0, 1, len(client_id)) + client_id
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        head = _recv_exact(sock, 10)
    _size, correlation, error = struct.unpack(">iih", head)
    return correlation == 1 and error == 0


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def admin_client(bootstrap: str) -> AdminClient:
    """A confluent-kafka AdminClient for the stack's own operations."""
    return AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})


def wait_for_brokers(bootstrap: str, count: int, timeout_s: float = 60.0) -> None:
    """Wait until the cluster's metadata lists ``count`` brokers and a controller."""
    admin = admin_client(bootstrap)
    deadline = time.monotonic() + timeout_s
    seen = 0
    while time.monotonic() < deadline:
        try:
            meta = admin.list_topics(timeout=5)
            seen = len(meta.brokers)
            if seen >= count and meta.controller_id >= 0:
                return
        except KafkaException:
            pass
        time.sleep(0.5)
    raise StackError("kafka", f"only {seen} of {count} brokers registered within {timeout_s:.0f}s")


def create_topics(bootstrap: str, replication: int, topics: tuple[TopicSpec, ...] = ALL_TOPICS,
                  timeout_s: float = 30.0, attempts: int = 5) -> list[str]:
    """Create the declared topics that do not exist yet; return the names created.

    Retries transient failures: right after start-up a KRaft cluster may still be
    electing or registering brokers, and librdkafka may drop its bootstrap handle.
    """
    admin = admin_client(bootstrap)
    created: list[str] = []
    for attempt in range(1, attempts + 1):
        existing = set(admin.list_topics(timeout=timeout_s).topics)
        missing = [t for t in topics if t.name not in existing]
        if not missing:
            return created
        futures = admin.create_topics(
            [NewTopic(t.name, num_partitions=t.partitions, replication_factor=replication, config=t.config())
             for t in missing],
            operation_timeout=timeout_s, request_timeout=timeout_s,
        )
        failures: dict[str, Exception] = {}
        for name, future in futures.items():
            try:
                future.result()
                created.append(name)
            except KafkaException as exc:
                if exc.args and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    continue
                failures[name] = exc
        if not failures:
            return created
        if attempt == attempts:
            failed, error = next(iter(failures.items()))
            raise StackError("kafka", f"could not create topic {failed}: {error}")
        time.sleep(attempt)
    return created


LOG4J = """log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.ConsoleAppender
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.controller=INFO
"""

LOG4J_CLI = """log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.appender.stderr.Target=System.err
"""
