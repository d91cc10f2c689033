"""Every client Lintas opens to Kafka, the schema registry and ClickHouse, configured in this one place.

Like quix-streams' ``ConnectionConfig.as_librdkafka_dict()``: the connection part of each
librdkafka dictionary (servers, TLS, and the SASL principal of the caller's :class:`Role`) is
built by :func:`kafka_config`; the callers add only what their use needs (idempotence,
transactions, a group). Every client names its role, so each command connects with the least
it needs. Nothing here connects until the client is used, except clickhouse-connect, which
checks the server when its client is created.
"""

from __future__ import annotations

import ssl
from typing import Any, Literal

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient

from streams.settings import Settings
from streams.topics import Role, principal

# murmur2: the partitioner Faust's producer (aiokafka) and Java clients use, so a record keyed like
# another one lands on the same partition whichever client sent it
SAME_PARTITION_AS_FAUST = {"partitioner": "murmur2_random"}
RELIABLE = {"acks": "all", "enable.idempotence": True}


# What each Kafka role may do at the registry: read (look up, fetch), write (register, set a subject's
# compatibility) or admin (delete too). The local registry's users are these three.
RegistryAccess = Literal["read", "write", "admin"]
REGISTRY_ACCESS: dict[Role, RegistryAccess] = {
    Role.ADMIN: "admin", Role.WORKER: "write", Role.POST: "write", Role.REVIEW: "write",
    Role.WATCHLIST: "read", Role.OPS: "read",
}


def registry_user(access: RegistryAccess) -> str:
    """The local registry's user name for one level of access."""
    return f"lintas-registry-{access}"


def kafka_user(settings: Settings, role: Role) -> str:
    """The principal a client of ``role`` connects as: the configured one in production, else the role's."""
    return settings.kafka_username or principal(role, settings.post_id)


def kafka_config(settings: Settings, role: Role, **extra: Any) -> dict[str, Any]:
    """The librdkafka connection settings of the cluster in ``settings`` as ``role``, ``extra`` on top."""
    security: dict[str, Any] = {}
    if settings.secure:
        user = kafka_user(settings, role)
        security = {
            "security.protocol": "SASL_SSL", "sasl.mechanism": _mechanism(settings, role),
            "sasl.username": user, "sasl.password": settings.credential("kafka", user),
            "ssl.ca.location": str(settings.tls_ca_file),
        }
    return {"bootstrap.servers": settings.kafka_bootstrap, "log_level": 3, **security, **extra}


def aiokafka_security(settings: Settings, role: Role) -> dict[str, Any]:
    """The same connection settings as aiokafka's keyword arguments (Faust's driver)."""
    if not settings.secure:
        return {}
    user = kafka_user(settings, role)
    return {
        "security_protocol": "SASL_SSL", "sasl_mechanism": _mechanism(settings, role),
        "sasl_plain_username": user, "sasl_plain_password": settings.credential("kafka", user),
        "ssl_context": tls_context(settings),
    }


def _mechanism(settings: Settings, role: Role) -> str:
    local_admin = role is Role.ADMIN and not settings.kafka_username
    return settings.kafka_admin_sasl_mechanism if local_admin else settings.kafka_sasl_mechanism


def tls_context(settings: Settings) -> ssl.SSLContext:
    """A client TLS context that trusts the configured CA only."""
    return ssl.create_default_context(cafile=str(settings.tls_ca_file))


def producer(settings: Settings, role: Role, **extra: Any) -> Producer:
    """A confluent-kafka producer; acks=all and idempotent unless ``extra`` says otherwise."""
    return Producer(kafka_config(settings, role, **{**RELIABLE, **extra}))


def consumer(settings: Settings, role: Role, group: str, **extra: Any) -> Consumer:
    """A confluent-kafka consumer in ``group`` that never commits on its own."""
    return Consumer(kafka_config(settings, role, **{"group.id": group, "enable.auto.commit": False, **extra}))


def admin(settings: Settings, role: Role = Role.ADMIN) -> AdminClient:
    """A confluent-kafka AdminClient (as the admin by default: creating topics and ACLs is its alone)."""
    return AdminClient(kafka_config(settings, role))


def registry(settings: Settings, role: Role) -> SchemaRegistryClient:
    """A client of the Confluent-compatible schema registry, with the access ``role`` has there."""
    conf: dict[str, Any] = {"url": settings.schema_registry_url}
    if settings.secure:
        user = settings.schema_registry_username or registry_user(REGISTRY_ACCESS[role])
        conf["basic.auth.user.info"] = f"{user}:{settings.credential('registry', user)}"
        if settings.schema_registry_url.startswith("https:"):
            conf["ssl.ca.location"] = str(settings.tls_ca_file)
    return SchemaRegistryClient(conf)


def clickhouse_client(settings: Settings, *, readonly: bool = False, migrate: bool = False,
                      database: str | None = None, **extra: Any) -> Client:
    """A clickhouse-connect client as the pipeline's user, the read-only dashboard user or the migration user.

    Only the migration user may change the schema (DDL); the pipeline's user reads and writes rows.
    """
    user, secret = (("clickhouse_readonly_user", "clickhouse_readonly_password") if readonly
                    else ("clickhouse_migrate_user", "clickhouse_migrate_password") if migrate
                    else ("clickhouse_user", "clickhouse_password"))
    tls: dict[str, Any] = ({"secure": True, "verify": True, "ca_cert": str(settings.tls_ca_file)}
                           if settings.secure else {})
    return clickhouse_connect.get_client(
        host=settings.clickhouse_host, port=settings.clickhouse_port, username=getattr(settings, user),
        password=settings.secret(secret), database=database or settings.clickhouse_database, **tls, **extra,
    )
