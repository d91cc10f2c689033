"""Who may do what, as declared (streams/topics.py), and the posts' signatures (agents/signing.py), without servers."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.signing import HEADER_POST, HEADER_SIGNATURE, signed_headers, verify
from infra.kafka import KafkaCluster
from schemas.errors import InvalidMessage
from streams import clients
from streams.settings import Settings, ensure_credential
from streams.topics import (
    ALL_TOPICS,
    CROSSING_EVENTS,
    CROSSING_EVENTS_DLQ,
    LANDING_EVENTS,
    LANDING_EVENTS_DLQ,
    Role,
    grants,
    principal,
)

KEY = bytes(32)


def _ops(role: Role, resource: str = "topic") -> set[tuple[str, str]]:
    return {(g.name, g.operation) for g in grants(role) if g.resource == resource}


def test_a_post_writes_the_input_topics_and_their_dead_letters_and_nothing_else() -> None:
    inputs = (CROSSING_EVENTS, LANDING_EVENTS, CROSSING_EVENTS_DLQ, LANDING_EVENTS_DLQ)  # the dead letters: refused lines
    assert _ops(Role.POST) == {(t.name, op) for t in inputs for op in ("write", "describe")}
    assert not [g for g in grants(Role.POST) if g.resource != "topic"]
    assert {g.principal for g in grants(Role.POST, principal(Role.POST, "ID-BTH"))} == {"User:post-ID-BTH"}


def test_ops_reads_no_restricted_topic_and_joins_no_pipeline_group() -> None:
    readable = {name for name, op in _ops(Role.OPS) if op == "read"}
    restricted = {t.name for t in ALL_TOPICS if t.restricted}
    assert restricted and not readable & restricted
    assert readable == {t.name for t in ALL_TOPICS if not t.restricted}
    assert not {op for _, op in _ops(Role.OPS)} & {"write", "create", "delete", "alter", "alter_configs"}
    assert {(g.name, g.operation, g.prefixed) for g in grants(Role.OPS) if g.resource == "group"} == {
        ("*", "describe", False), ("lintas-ops", "read", True), ("console-consumer-", "read", True)}


def test_only_the_worker_reads_the_inputs_and_nobody_but_the_admin_alters() -> None:
    for role in Role:
        if role is not Role.WORKER:
            assert (CROSSING_EVENTS.name, "read") not in _ops(role), role
        assert not [g for g in grants(role) if g.operation in ("alter", "delete", "alter_configs", "all")], role
    assert grants(Role.ADMIN) == []  # the super user: no ACL needed, none given


def test_signatures_name_who_signed_and_refuse_the_rest() -> None:
    value = b"\x00\x00\x00\x00\x01event"
    assert verify(signed_headers("ID-BTH", KEY, value), value, lambda post: KEY) == "ID-BTH"
    cases = {
        "unsigned": [],
        "unknown_signer": signed_headers("ID-BTH", KEY, value),
        "bad_signature": signed_headers("ID-BTH", b"\x01" * 32, value),
    }
    for code, headers in cases.items():
        with pytest.raises(InvalidMessage) as err:
            verify(headers, value, (lambda post: None) if code == "unknown_signer" else (lambda post: KEY))
        assert (err.value.code, err.value.field) == (code, "signature")
    with pytest.raises(InvalidMessage) as err:  # a path in the post id never reaches the key store
        verify([(HEADER_POST, b"../../etc"), (HEADER_SIGNATURE, b"x")], value, lambda post: pytest.fail(post))
    assert err.value.code == "unknown_signer"


def test_clients_carry_the_role_s_principal_and_the_ca_and_no_credentials_when_security_is_off(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    for role in (Role.WORKER, Role.ADMIN):
        ensure_credential(settings, "kafka", principal(role))
    conf = clients.kafka_config(settings, Role.WORKER)
    assert (conf["security.protocol"], conf["sasl.mechanism"], conf["sasl.username"]) == (
        "SASL_SSL", "SCRAM-SHA-512", "lintas-worker")
    assert conf["ssl.ca.location"] == str(tmp_path / "tls" / "ca.pem")
    assert clients.kafka_config(settings, Role.ADMIN)["sasl.mechanism"] == "PLAIN"
    assert (tmp_path / "secrets" / "kafka" / "lintas-worker").stat().st_mode & 0o777 == 0o600
    plain = clients.kafka_config(Settings(state_dir=tmp_path, secure=False), Role.WORKER)
    assert "sasl.password" not in plain and "security.protocol" not in plain
    ensure_credential(settings, "kafka", "post-ID-BTH")
    post = clients.kafka_config(Settings(state_dir=tmp_path, post_id="ID-BTH"), Role.POST)
    assert post["sasl.username"] == "post-ID-BTH"


def test_brokers_listen_sasl_ssl_with_the_standard_authorizer_and_deny_by_default(tmp_path: Path) -> None:
    props = KafkaCluster(Settings(state_dir=tmp_path)).server_properties(1)
    assert "listener.security.protocol.map=CLIENT:SASL_SSL,CONTROLLER:SASL_PLAINTEXT" in props
    assert "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer" in props
    assert "allow.everyone.if.no.acl.found=false" in props
    assert "PLAINTEXT://" not in props
