"""Apache Kafka in KRaft mode from Maven Central jars: config, storage format, CLI tools, topics.

Each node runs combined (broker and controller) so one process is a whole
cluster by default and three processes form a quorum for fault tests.

With ``settings.secure`` (the default) clients reach the brokers over SASL_SSL only:
SCRAM-SHA-512 principals, one per role (streams/topics.py ``Role``) and one per post,
and the KRaft ``StandardAuthorizer`` denying whatever the declared ACLs
(``streams.topics.grants``) do not allow. The admin principal is bootstrapped when the
brokers' own config (SASL PLAIN over TLS: its password is in a 0600 file, never on a
command line); every other user and ACL is applied by :func:`provision`, idempotently, on
each ``lintas stack up``. The controller listener stays on loopback with SASL PLAIN
(SCRAM cannot authenticate the controller quorum in KRaft).
"""

from __future__ import annotations

import base64
import functools
import socket
import ssl
import struct
import subprocess
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from infra import dist
from infra.errors import StackError, StateDirError
from infra.process import ManagedProcess
from infra.tls import server_pem
from streams import clients
from streams.posts import ensure_post_key, load_registry
from streams.settings import Settings, ensure_credential, write_private
from streams.topics import ALL_TOPICS, Grant, Role, TopicSpec, grants, principal

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
        client = "CLIENT" if self.settings.secure else "PLAINTEXT"
        return "\n".join([
            "process.roles=broker,controller",
            f"node.id={node}",
            f"controller.quorum.voters={voters}",
            f"listeners={client}://{host}:{self.client_port(node)},CONTROLLER://{host}:{self.controller_port(node)}",
            f"advertised.listeners={client}://{host}:{self.client_port(node)}",
            "controller.listener.names=CONTROLLER",
            f"inter.broker.listener.name={client}",
            *(self._security_properties() if self.settings.secure
              else ["listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"]),
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

    def _security_properties(self) -> list[str]:
        admin = principal(Role.ADMIN)
        admin_password = ensure_credential(self.settings, "kafka", admin)
        controller = ensure_credential(self.settings, "kafka", "controller")
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule"
        plain = "org.apache.kafka.common.security.plain.PlainLoginModule"
        pem = server_pem(self.settings).resolve()
        return [
            "listener.security.protocol.map=CLIENT:SASL_SSL,CONTROLLER:SASL_PLAINTEXT",
            # every principal but the admin is a SCRAM user; the admin (and the brokers among themselves) PLAIN
            "sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN",
            "sasl.mechanism.inter.broker.protocol=PLAIN",
            f"listener.name.client.scram-sha-512.sasl.jaas.config={scram} required;",
            f'listener.name.client.plain.sasl.jaas.config={plain} required '
            f'username="{admin}" password="{admin_password}" user_{admin}="{admin_password}";',
            "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
            "sasl.mechanism.controller.protocol=PLAIN",
            f'listener.name.controller.plain.sasl.jaas.config={plain} required '
            f'username="controller" password="{controller}" user_controller="{controller}";',
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={pem}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={self.settings.tls_ca_file.resolve()}",
            "ssl.endpoint.identification.algorithm=https",
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            f"super.users=User:{admin};User:controller",
            "allow.everyone.if.no.acl.found=false",
        ]

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
            write_private(ndir / "server.properties", self.server_properties(node))  # holds the jaas passwords
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
                health=functools.partial(self._answers, port),
                host=self.settings.kafka_host,
                env={"LOG_DIR": str(self.state / "logs")},
            ))
        return procs

    def _answers(self, port: int) -> bool:
        # the CA is read at each probe: it is made after these descriptions, on the first `stack up`
        tls = clients.tls_context(self.settings) if self.settings.secure else None
        return broker_answers(self.settings.kafka_host, port, tls)

    def cli_command(self, tool: str, args: list[str], role: Role = Role.OPS) -> list[str]:
        """Argv that runs one of Kafka's CLI tools against this cluster's jars, as ``role`` (ops by default).

        The credentials go in a client config file (mode 0600), never on the command line.
        """
        if tool not in CLI_TOOLS:
            raise StackError("kafka", f"unknown CLI tool {tool!r}; one of: {', '.join(sorted(CLI_TOOLS))}")
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "log4j.properties").write_text(LOG4J_CLI)
        config: list[str] = []
        if self.settings.secure and tool != "storage":
            flag = {"console-consumer": "--consumer.config", "console-producer": "--producer.config"}.get(
                tool, "--command-config")
            config = [flag, str(write_client_properties(self.settings, role))]
        return self._java(CLI_TOOLS[tool]) + config + args


def broker_answers(host: str, port: int, tls: ssl.SSLContext | None = None, timeout: float = 1.0) -> bool:
    """True if a Kafka broker on host:port answers an ApiVersions request without error.

    ApiVersions is the one request a SASL listener answers before authentication, so the probe needs
    the CA (``tls``) but no credential.
    """
    client_id = b"lintas-health"
    body = struct.pack(">hhih", 18, 0, 1, len(client_id)) + client_id
    with socket.create_connection((host, port), timeout=timeout) as raw:
        sock = tls.wrap_socket(raw, server_hostname=host) if tls else raw
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


def wait_for_brokers(settings: Settings, count: int, timeout_s: float = 60.0) -> None:
    """Wait until the cluster's metadata lists ``count`` brokers and a controller."""
    admin = clients.admin(settings)
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


def create_topics(settings: Settings, replication: int, topics: tuple[TopicSpec, ...] = ALL_TOPICS,
                  timeout_s: float = 30.0, attempts: int = 5) -> list[str]:
    """Create the declared topics that do not exist yet; return the names created.

    Retries transient failures: right after start-up a KRaft cluster may still be
    electing or registering brokers, and librdkafka may drop its bootstrap handle.
    """
    admin = clients.admin(settings)
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


def known_posts(settings: Settings) -> list[str]:
    """Every post the local stack provisions: the registry's (the region's, and those ``stack add-post`` added)."""
    return sorted(load_registry(settings).posts)


def principals(posts: Iterable[str] = ()) -> dict[str, Role]:
    """Every Kafka user of the local stack but the admin, and its role: one per role, one per post."""
    users: dict[str, Role] = {principal(role): role for role in Role if role is not Role.ADMIN}
    users.update({principal(Role.POST, post): Role.POST for post in posts})
    return users


def provision(settings: Settings, posts: Iterable[str] = (), *, rotate: bool = False) -> tuple[int, int, int]:
    """Create (or re-key) the SCRAM users and bring the ACLs to what ``streams.topics.grants`` declares.

    Idempotent: a credential already generated is upserted unchanged, ACLs already present stay, and an ACL
    nobody declares any more is removed. Posts also get their signing key. Returns (users, created, removed).
    """
    admin = clients.admin(settings)
    users = principals(posts)
    upserts: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192),
                                     ensure_credential(settings, "kafka", user, rotate=rotate).encode())
        for user in users
    ]
    for user, future in admin.alter_user_scram_credentials(upserts).items():
        _result(future, f"could not set the credential of {user}")
    for post in posts:
        ensure_post_key(settings, post)
    declared = {binding for user, role in users.items() for binding in map(_binding, grants(role, user))}
    any_acl = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,  # type: ignore[arg-type]
                               AclOperation.ANY, AclPermissionType.ANY)
    present = set(_result(admin.describe_acls(any_acl), "could not list ACLs"))
    missing, stale = declared - present, present - declared
    if missing:
        for future in admin.create_acls(sorted(missing, key=str)).values():
            _result(future, "could not create an ACL")
    if stale:
        for future in admin.delete_acls(sorted(stale, key=str)).values():
            _result(future, "could not remove an ACL")
    return len(users), len(missing), len(stale)


def rewrite_configs(cluster: KafkaCluster) -> None:
    """Write every node's config again (after the admin's password changed: the brokers read it at start)."""
    for node in range(1, cluster.n + 1):
        write_private(cluster.node_dir(node) / "server.properties", cluster.server_properties(node))


RESOURCES = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP,
             "transactional_id": ResourceType.TRANSACTIONAL_ID, "cluster": ResourceType.BROKER}


def _binding(grant: Grant) -> AclBinding:
    return AclBinding(RESOURCES[grant.resource], grant.name,
                      ResourcePatternType.PREFIXED if grant.prefixed else ResourcePatternType.LITERAL,
                      grant.principal, "*", AclOperation[grant.operation.upper()], AclPermissionType.ALLOW)


def _result(future, what: str):  # noqa: ANN001, ANN202 - a confluent-kafka future and its result
    try:
        return future.result(30)
    except KafkaException as exc:
        raise StackError("kafka", f"{what}: {exc.args[0].str() if exc.args else exc}") from None


def write_client_properties(settings: Settings, role: Role) -> Path:
    """A Java client config for Kafka's CLI tools as ``role`` (mode 0600 in the secrets dir): its path."""
    conf = clients.kafka_config(settings, role)
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule"
    lines = [
        "security.protocol=SASL_SSL",
        f"sasl.mechanism={conf['sasl.mechanism']}",
        f'sasl.jaas.config={scram} required username="{conf["sasl.username"]}" password="{conf["sasl.password"]}";',
        "ssl.truststore.type=PEM",
        f"ssl.truststore.location={settings.tls_ca_file.resolve()}",
    ]
    path = settings.secrets_dir / "kafka" / f"{role.value}.properties"
    write_private(path, "\n".join(lines) + "\n")
    return path


def write_kcat_config(settings: Settings, role: Role = Role.OPS) -> Path:
    """A librdkafka config file for kcat (``kcat -F <file>``) as ``role``, mode 0600: its path."""
    conf = clients.kafka_config(settings, role)
    keys = ("bootstrap.servers", "security.protocol", "sasl.mechanism", "sasl.username", "sasl.password",
            "ssl.ca.location")
    path = settings.secrets_dir / "kafka" / f"{role.value}.kcat.conf"
    write_private(path, "".join(f"{k}={conf[k]}\n" for k in keys if k in conf))
    return path


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
