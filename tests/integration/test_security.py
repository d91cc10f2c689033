"""Every wrong door stays shut, on the real stack: Kafka, the schema registry and ClickHouse each refuse
strangers, wrong passwords and principals outside their role, with the server's own error.

One stack of this module's own (a worker runs on it for the forged-crossing check, and the last test
rotates every credential).
"""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from agents.signing import signed_headers
from infra.kafka import broker_answers, write_kcat_config
from infra.stack import Stack
from schemas.contracts import CROSSING_EVENT
from schemas.wire import SchemaIds, encode_payload, frame
from streams import clients
from streams.clients import kafka_config
from streams.ops.lag import lag
from streams.posts import ensure_post_key
from streams.settings import Settings
from streams.sim.files import to_json_line
from streams.topics import ALERTS, CROSSING_EVENTS, CROSSING_EVENTS_DLQ, Role, agent_group, principal
from tests.integration.conftest import migrated_stack, run_lintas
from tests.integration.pipeline_support import Worker, simulate, until

pytestmark = pytest.mark.integration

PORT_BASE = 29000  # below the ephemeral range (32768+), so no client socket can hold our ports


@pytest.fixture(scope="module")
def sstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from migrated_stack(tmp_path_factory, "security", PORT_BASE)


@pytest.fixture(scope="module")
def settings(sstack: Stack) -> Settings:
    return sstack.settings


def _errors(conf: dict[str, Any], act: Any, seconds: float = 8.0) -> list[KafkaError]:
    """Kafka errors a client meets doing ``act`` (librdkafka reports refusals through ``error_cb`` or results)."""
    seen: list[KafkaError] = []
    act({**conf, "error_cb": seen.append}, seen)
    deadline = time.monotonic() + seconds
    while not seen and time.monotonic() < deadline:
        time.sleep(0.2)
    return seen


def _produce(conf: dict[str, Any], topic: str, value: bytes = b"x",
             headers: list[tuple[str, str | bytes | None]] | None = None) -> KafkaError | None:
    """Kafka's verdict on one record: None if it took it, else its error."""
    verdict: list[KafkaError | None] = []
    producer = Producer({**conf, "message.timeout.ms": 10_000})
    producer.produce(topic, value, b"k", headers=headers, on_delivery=lambda err, _msg: verdict.append(err))
    producer.flush(15)
    return verdict[0] if verdict else KafkaError(KafkaError._MSG_TIMED_OUT)


def _fetch(conf: dict[str, Any], topic: str) -> KafkaError:
    """What a consumer (no subscription: assign) meets reading partition 0: the topic's authorization error or
    the end of the partition (a principal without any group may also hear of its group first: passed over)."""
    consumer = Consumer({**conf, "group.id": f"lintas-ops-{uuid.uuid4().hex[:6]}", "enable.partition.eof": True,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, 0)])
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            msg = consumer.poll(1)
            if msg is not None and msg.error() and msg.error().code() != KafkaError.GROUP_AUTHORIZATION_FAILED:
                return msg.error()
        raise AssertionError(f"no answer reading {topic}")
    finally:
        consumer.close()


# --- Kafka -------------------------------------------------------------------------------------------


def test_kafka_refuses_clients_without_tls_or_with_a_wrong_password(settings: Settings) -> None:
    host, port = settings.kafka_host, settings.kafka_port
    assert broker_answers(host, port, clients.tls_context(settings))  # the listener is up and speaks TLS
    with pytest.raises((ConnectionError, OSError)):  # a plaintext request gets no Kafka answer
        broker_answers(host, port, None, timeout=3)
    with pytest.raises(ssl.SSLCertVerificationError):  # and a client that trusts another CA stops at the handshake
        broker_answers(host, port, ssl.create_default_context())

    right = kafka_config(settings, Role.WORKER)
    wrong = {**right, "sasl.password": "not-the-password"}
    errors = _errors(wrong, lambda conf, _: Producer(conf).poll(5))
    assert any(e.code() == KafkaError._AUTHENTICATION and "invalid credentials" in e.str() for e in errors), errors
    stranger = {**right, "sasl.username": "nobody"}
    errors = _errors(stranger, lambda conf, _: Producer(conf).poll(5))
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors
    plaintext = {"bootstrap.servers": settings.kafka_bootstrap, "log_level": 0}
    assert isinstance(_produce(plaintext, ALERTS.name), KafkaError)


def test_a_post_only_writes_the_input_topics_and_cannot_read_them_back(settings: Settings) -> None:
    post = kafka_config(settings.model_copy(update={"post_id": "ID-BTH"}), Role.POST)
    assert post["sasl.username"] == "post-ID-BTH"
    assert _produce(post, CROSSING_EVENTS.name, b"\x00") is None
    assert _produce(post, ALERTS.name).code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert _fetch(post, CROSSING_EVENTS.name).code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    admin = AdminClient(post)
    with pytest.raises(KafkaException) as err:
        admin.create_topics([NewTopic("evil-topic", 1, 1)])["evil-topic"].result(20)
    assert err.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    with pytest.raises(KafkaException) as err:
        admin.delete_topics([ALERTS.name])[ALERTS.name].result(20)
    assert err.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_ops_reads_pseudonymous_topics_but_not_restricted_ones_nor_joins_the_pipeline(settings: Settings) -> None:
    ops = kafka_config(settings, Role.OPS)
    assert _fetch(ops, ALERTS.name).code() == KafkaError._PARTITION_EOF  # allowed: it reached the end
    for topic in (CROSSING_EVENTS.name, CROSSING_EVENTS_DLQ.name):
        assert _fetch(ops, topic).code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, topic
    assert _produce(ops, ALERTS.name).code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    consumer = Consumer({**ops, "group.id": agent_group("ingest_crossings"), "session.timeout.ms": 6000})
    consumer.subscribe([ALERTS.name])
    try:
        deadline = time.monotonic() + 20
        seen = None
        while seen is None and time.monotonic() < deadline:
            msg = consumer.poll(1)
            seen = msg.error() if msg is not None and msg.error() else None
        assert seen is not None and seen.code() == KafkaError.GROUP_AUTHORIZATION_FAILED, seen
    finally:
        consumer.close()


def test_kcat_and_kafka_s_cli_work_as_ops_and_are_refused_beyond_it(settings: Settings) -> None:
    conf = write_kcat_config(settings)
    assert conf.stat().st_mode & 0o777 == 0o600
    listed = subprocess.run(["kcat", "-F", str(conf), "-L", "-m", "10"], capture_output=True, text=True, timeout=60,
                            check=False)
    assert listed.returncode == 0 and f'topic "{ALERTS.name}"' in listed.stdout, listed.stderr
    read = subprocess.run(["kcat", "-F", str(conf), "-C", "-t", CROSSING_EVENTS.name, "-e", "-q"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert read.returncode != 0 and "Topic authorization failed" in read.stderr, read.stderr
    topics = run_lintas(settings, "kafka", "topics", "--list", timeout=120)
    assert topics.returncode == 0 and ALERTS.name in topics.stdout.split(), topics.stderr
    created = run_lintas(settings, "kafka", "topics", "--create", "--topic", "ops-made", timeout=120)
    assert created.returncode != 0 and "TopicAuthorizationException" in created.stdout + created.stderr
    consumed = run_lintas(settings, "kafka", "console-consumer", "--topic", ALERTS.name, "--from-beginning",
                          "--timeout-ms", "5000", timeout=120)
    # joined its group and read to the end (alerts may be empty here: the tool then stops on its timeout)
    assert "Processed a total of" in consumed.stderr and "AuthorizationException" not in consumed.stderr, (
        consumed.stderr)
    refused = run_lintas(settings, "kafka", "console-consumer", "--topic", CROSSING_EVENTS.name,
                         "--from-beginning", "--timeout-ms", "5000", timeout=120)
    assert "TopicAuthorizationException" in refused.stdout + refused.stderr, refused.stderr


def test_a_crossing_that_claims_another_post_is_dead_lettered_with_the_reason(settings: Settings,
                                                                               tmp_path: Path) -> None:
    records = simulate(91, 40)
    ids = SchemaIds(clients.registry(settings, Role.POST))
    schema_id = ids.id_for(CROSSING_EVENTS.name, CROSSING_EVENT)
    gateway = kafka_config(settings, Role.POST)
    honest, forged, unsigned = records[0], records[1], records[2]
    liar = next(p for p in ("ID-BTH", "MY-JBC") if p != forged["post"]["post_id"])

    def send(record: dict[str, Any], signer: str | None) -> None:
        value = frame(schema_id, encode_payload(CROSSING_EVENT, record))
        headers = signed_headers(signer, ensure_post_key(settings, signer), value) if signer else None
        assert _produce(gateway, CROSSING_EVENTS.name, value, headers) is None

    send(honest, honest["post"]["post_id"])
    send(forged, liar)  # post `liar`'s key, an event that names another post
    send(unsigned, None)
    worker = Worker(settings, tmp_path / "worker.log", {"LINTAS_WORKER_WEB_PORT": str(PORT_BASE + 66)})
    worker.start()
    try:
        client = clients.clickhouse_client(settings)
        until(lambda: lag(settings, ["ingest_crossings"]) == {"ingest_crossings": 0}, 180, worker.log)
    finally:
        worker.stop()
    # the unsigned record of the post test above (if it ran) is dead-lettered too
    letters = client.query("SELECT error_code, error_field, reason FROM dead_letters FINAL ORDER BY error_code"
                           ).result_rows
    assert {(code, field) for code, field, _ in letters} == {("not_the_signer", "post.post_id"),
                                                             ("unsigned", "signature")}
    assert [reason for code, _, reason in letters if code == "not_the_signer"] == [
        "names another post than the one that signed it"]
    assert client.query("SELECT toString(event_id) FROM crossings").result_rows == [(honest["event_id"],)]


def test_a_post_s_own_process_sends_only_its_own_events_as_itself(settings: Settings, tmp_path: Path) -> None:
    refused = run_lintas(settings, "stack", "add-post", "ZZ-NEW", timeout=120)
    assert refused.returncode == 2 and "give --country and --type" in refused.stderr, "no post without its details"
    added = run_lintas(settings, "stack", "add-post", "ZZ-NEW", "--name", "A new land post", "--type", "LAND",
                       "--country", "IDN", timeout=120)
    assert added.returncode == 0, added.stdout + added.stderr
    records = simulate(92, 10)[:4]
    own = [{**r, "post": {"post_id": "ZZ-NEW", "post_type": "LAND", "country": "IDN"}} for r in records[:2]]
    path = tmp_path / "crossings.jsonl"
    path.write_text("\n".join(to_json_line(r) for r in [*own, *records[2:]]) + "\n")
    sent = run_lintas(settings, "produce", str(path), "--type", "crossing", "--spool", str(tmp_path / "out.sqlite"),
                      "--wait", "60", env={"LINTAS_POST_ID": "ZZ-NEW"}, timeout=120)
    assert sent.returncode == 1, sent.stdout + sent.stderr  # two lines name other posts: refused, not sent
    assert sent.stderr.count("post.post_id: names another post than the one sending [not_this_post]") == 2
    assert "2 accepted, 2 bad; 2 delivered" in sent.stdout, sent.stdout
    # and it connected as its own principal, post-ZZ-NEW, which `stack add-post` made
    post = kafka_config(settings.model_copy(update={"post_id": "ZZ-NEW"}), Role.POST)
    assert post["sasl.username"] == "post-ZZ-NEW" and _produce(post, CROSSING_EVENTS.name, b"\x00") is None


def test_only_registered_posts_send_and_a_post_added_meanwhile_is_accepted_at_once(settings: Settings,
                                                                                   tmp_path: Path) -> None:
    """The held-out check of issue 32: an unknown post among good lines never becomes a row, and is counted."""
    records = simulate(93, 12)[:6]
    client = clients.clickhouse_client(settings)
    worker = Worker(settings, tmp_path / "worker.log", {"LINTAS_WORKER_WEB_PORT": str(PORT_BASE + 67)})
    worker.start()
    try:
        # the gateway: one unknown post and one post in the wrong country among good lines
        lines = [to_json_line(r) for r in records[:4]]
        lines[1] = to_json_line({**records[1], "post": {**records[1]["post"], "post_id": "ZZ-NOPE"}})
        elsewhere = "THA" if records[2]["post"]["country"] != "THA" else "KHM"
        lines[2] = to_json_line({**records[2], "post": {**records[2]["post"], "country": elsewhere}})
        path = tmp_path / "crossings.jsonl"
        path.write_text("\n".join(lines) + "\n")
        sent = run_lintas(settings, "produce", str(path), "--type", "crossing", "--spool", str(tmp_path / "a.sqlite"),
                          "--wait", "60", timeout=120)
        assert sent.returncode == 1, sent.stdout + sent.stderr
        assert "line 2: post.post_id: no such post (register it with lintas stack add-post" in sent.stderr
        assert "line 3: post.country: not the country registered for this post" in sent.stderr
        assert "2 accepted, 2 bad; 2 delivered to Kafka, 0 waiting in the spool; 2 bad line(s) in the " \
               "dead-letter topic" in sent.stdout, sent.stdout
        assert not (settings.post_keys_dir / "ZZ-NOPE.key").exists(), "the gateway made no key"
        # straight to Kafka, signed with a key of a post nobody registered
        value = frame(SchemaIds(clients.registry(settings, Role.POST)).id_for(CROSSING_EVENTS.name, CROSSING_EVENT),
                      encode_payload(CROSSING_EVENT, {**records[4], "post": {**records[4]["post"],
                                                                             "post_id": "ZZ-ROGUE"}}))
        rogue = signed_headers("ZZ-ROGUE", ensure_post_key(settings, "ZZ-ROGUE"), value)
        assert _produce(kafka_config(settings, Role.POST), CROSSING_EVENTS.name, value, rogue) is None
        # a post registered while the worker runs is accepted at once
        added = run_lintas(settings, "stack", "add-post", "ZZ-LATE", "--type", "SEA", "--country", "IDN",
                           timeout=120)
        assert added.returncode == 0, added.stdout + added.stderr
        late = tmp_path / "late.jsonl"
        late.write_text(to_json_line({**records[5], "post": {"post_id": "ZZ-LATE", "post_type": "SEA",
                                                             "country": "IDN"}}) + "\n")
        took = run_lintas(settings, "produce", str(late), "--type", "crossing", "--spool", str(tmp_path / "b.sqlite"),
                          "--wait", "60", timeout=120)
        assert took.returncode == 0, took.stdout + took.stderr
        agents = ["ingest_crossings", "refusals_crossings"]
        until(lambda: lag(settings, agents) == dict.fromkeys(agents, 0), 180, worker.log)
    finally:
        worker.stop()
    rows = {r[0]: r[1] for r in client.query(
        "SELECT post_id, count() FROM crossings FINAL WHERE post_id IN ('ZZ-NOPE', 'ZZ-ROGUE', 'ZZ-LATE') "
        "GROUP BY post_id").result_rows}
    assert rows == {"ZZ-LATE": 1}, "no row for a post nobody registered"
    letters = {(topic, code, field) for topic, code, field, reason in client.query(
        "SELECT source_topic, error_code, error_field, reason FROM dead_letters FINAL "
        "WHERE error_code IN ('unknown_post', 'post_mismatch')").result_rows}
    assert letters == {(CROSSING_EVENTS_DLQ.name, "unknown_post", "post.post_id"),
                       (CROSSING_EVENTS_DLQ.name, "post_mismatch", "post.country"),
                       (CROSSING_EVENTS.name, "unknown_post", "post.post_id")}


# --- Schema registry ---------------------------------------------------------------------------------


def _registry_call(settings: Settings, method: str, path: str, user: str | None = None, password: str | None = None,
                   body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(f"{settings.schema_registry_url}{path}", method=method,  # noqa: S310
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    context = ssl.create_default_context(cafile=str(settings.tls_ca_file))
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as resp:  # noqa: S310
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def test_the_registry_refuses_strangers_and_writes_without_the_write_role(settings: Settings) -> None:
    evil = {"schema": json.dumps({"type": "record", "name": "Evil", "fields": []})}
    assert _registry_call(settings, "POST", "/subjects/evil-value/versions", body=evil) == (
        401, {"error_code": 401, "message": "Unauthorized"})
    reader = clients.registry_user("read")
    assert _registry_call(settings, "GET", "/subjects", reader, "wrong")[0] == 401
    password = settings.credential("registry", reader)
    status, _ = _registry_call(settings, "GET", "/subjects", reader, password)
    assert status == 200
    status, body = _registry_call(settings, "POST", "/subjects/evil-value/versions", reader, password, evil)
    assert (status, body["error_code"]) == (403, 40301), body
    writer = clients.registry_user("write")
    status, body = _registry_call(settings, "DELETE", f"/subjects/{CROSSING_EVENTS.name}-value", writer,
                                  settings.credential("registry", writer))
    assert (status, body["error_code"]) == (403, 40301), body
    with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain http to the https port: no answer
        urllib.request.urlopen(settings.schema_registry_url.replace("https:", "http:") + "/subjects",  # noqa: S310
                               timeout=5)


# --- ClickHouse --------------------------------------------------------------------------------------


def test_clickhouse_refuses_strangers_and_keeps_each_user_to_its_grants(settings: Settings) -> None:
    tls = {"secure": True, "verify": True, "ca_cert": str(settings.tls_ca_file)}

    def connect(user: str, password: str) -> Any:
        return clickhouse_connect.get_client(host=settings.clickhouse_host, port=settings.clickhouse_port,
                                             username=user, password=password, database=settings.clickhouse_database,
                                             **tls)

    for user, password in (("nobody", "x"), (settings.clickhouse_user, "wrong")):
        with pytest.raises(DatabaseError) as err:
            connect(user, password)
        assert "AUTHENTICATION_FAILED" in str(err.value) or "516" in str(err.value)
    with pytest.raises(OperationalError):  # plain http to the https port
        clickhouse_connect.get_client(host=settings.clickhouse_host, port=settings.clickhouse_port,
                                      username=settings.clickhouse_user, password=settings.secret("clickhouse_password"))
    readonly = clients.clickhouse_client(settings, readonly=True)
    with pytest.raises(DatabaseError) as err:
        readonly.command("INSERT INTO dead_letters (source_topic) VALUES ('x')")
    assert "READONLY" in str(err.value) or "Code: 164" in str(err.value)
    pipeline = clients.clickhouse_client(settings)
    for ddl in ("CREATE TABLE evil (x UInt8) ENGINE = Memory", "DROP TABLE dead_letters",
                "ALTER TABLE dead_letters ADD COLUMN evil UInt8"):
        with pytest.raises(DatabaseError) as err:
            pipeline.command(ddl)
        assert any(code in str(err.value) for code in ("Code: 392", "Code: 497")), (ddl, str(err.value))


# --- Secrets -----------------------------------------------------------------------------------------


def _secret_values(settings: Settings) -> list[str]:
    return [p.read_text().strip() for p in settings.secrets_dir.rglob("*") if p.is_file() and p.suffix != ".conf"
            and p.suffix != ".properties" and p.stat().st_size < 200 and len(p.read_text().strip()) >= 16]


def test_no_secret_is_in_any_server_s_argv_or_log(sstack: Stack, settings: Settings) -> None:
    values = _secret_values(settings)
    assert len(values) >= 8  # kafka principals, registry and clickhouse users, posts' keys
    for proc in sstack.servers():
        pid = proc.pid()
        assert pid is not None, proc.name
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        assert not [v for v in values if v in argv], f"{proc.name}'s argv holds a secret"
    logs = "\n".join(p.read_text(errors="replace") for p in (settings.state_dir / "logs").glob("*.log"))
    assert not [v for v in values if v in logs], "a log holds a secret"
    for path in settings.secrets_dir.rglob("*"):
        assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"


def test_rotation_retires_every_old_password_and_the_new_ones_work(settings: Settings) -> None:
    old_kafka = kafka_config(settings, Role.OPS)
    old_registry = settings.credential("registry", clients.registry_user("read"))
    old_clickhouse = settings.secret("clickhouse_readonly_password")
    rotated = run_lintas(settings, "stack", "rotate", timeout=300)
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    assert not [v for v in (old_registry, old_clickhouse, old_kafka["sasl.password"]) if v in rotated.stdout]

    errors = _errors(old_kafka, lambda conf, _: Producer(conf).poll(5))
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors
    assert _fetch(kafka_config(settings, Role.OPS), ALERTS.name).code() == KafkaError._PARTITION_EOF
    assert _registry_call(settings, "GET", "/subjects", clients.registry_user("read"), old_registry)[0] == 401
    assert _registry_call(settings, "GET", "/subjects", clients.registry_user("read"),
                          settings.credential("registry", clients.registry_user("read")))[0] == 200
    with pytest.raises(DatabaseError):
        clickhouse_connect.get_client(host=settings.clickhouse_host, port=settings.clickhouse_port,
                                      username=settings.clickhouse_readonly_user, password=old_clickhouse,
                                      secure=True, verify=True, ca_cert=str(settings.tls_ca_file))
    assert clients.clickhouse_client(settings, readonly=True).query("SELECT 1").result_rows == [(1,)]
    assert principal(Role.OPS) == old_kafka["sasl.username"]
