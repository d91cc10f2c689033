"""`lintas stack` as a user runs it: idempotent up, status, down, and clear failures."""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from infra.process import pid_alive, port_is_bound
from infra.stack import Stack
from streams.settings import Settings
from tests.conftest import stack_settings
from tests.integration.conftest import run_lintas

pytestmark = pytest.mark.integration

# Ports 29xxx: apart from the session stack (19xxx) and a developer's own (9092, 8081, 8123).
PORT_BASE = 29000


def _all_ports(settings) -> list[int]:
    return [settings.kafka_port, settings.kafka_controller_port, settings.schema_registry_port,
            settings.clickhouse_port]


@pytest.fixture
def make_settings(tmp_path: Path) -> Iterator[Callable[[int], Settings]]:
    """Settings for a test stack; whatever the test does, no server of it is left running."""
    made: list[Settings] = []

    def make(port_base: int) -> Settings:
        made.append(stack_settings(tmp_path / "state", port_base))
        return made[-1]

    yield make
    for settings in made:
        Stack(settings).down(say=lambda _: None)


def test_up_is_idempotent_and_down_leaves_no_process_or_port(tmp_path: Path, make_settings) -> None:
    settings = make_settings(PORT_BASE)
    up = run_lintas(settings, "stack", "up")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "kafka-1: started" in up.stdout and "clickhouse: started" in up.stdout

    status = run_lintas(settings, "stack", "status")
    assert status.returncode == 0, status.stdout
    for server in ("kafka-1", "registry", "clickhouse"):
        assert any(line.startswith(server) and "healthy" in line for line in status.stdout.splitlines())
    pids = [int(p.read_text()) for p in (tmp_path / "state" / "run").glob("*.pid")]
    assert len(pids) == 3 and all(pid_alive(pid) for pid in pids)

    t0 = time.monotonic()
    again = run_lintas(settings, "stack", "up")
    assert again.returncode == 0, again.stderr
    assert "started" not in again.stdout.replace("already running", "")
    assert again.stdout.count("already running") == 3
    assert time.monotonic() - t0 < 30
    assert sorted(int(p.read_text()) for p in (tmp_path / "state" / "run").glob("*.pid")) == sorted(pids)

    logs = run_lintas(settings, "stack", "logs", "kafka-1", "-n", "5")
    assert logs.returncode == 0 and "kafka-1.log" in logs.stdout

    down = run_lintas(settings, "stack", "down")
    assert down.returncode == 0, down.stderr
    assert not any(pid_alive(pid) for pid in pids)
    assert not any(port_is_bound("127.0.0.1", port) for port in _all_ports(settings))
    assert not list((tmp_path / "state" / "run").glob("*.pid"))
    # Everything the stack wrote is in its one state directory.
    assert {p.name for p in (tmp_path / "state").iterdir()} >= {"kafka", "clickhouse", "registry", "logs", "secrets"}


def test_port_taken_names_the_server_and_starts_nothing(tmp_path: Path, make_settings) -> None:
    settings = make_settings(PORT_BASE + 100)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", settings.clickhouse_port))
        squatter.listen()
        result = run_lintas(settings, "stack", "up")
    assert result.returncode == 2
    assert "clickhouse" in result.stderr and str(settings.clickhouse_port) in result.stderr
    assert "port_in_use" in result.stderr
    assert not any(port_is_bound("127.0.0.1", p) for p in _all_ports(settings) if p != settings.clickhouse_port)


def test_missing_java_is_named(tmp_path: Path, make_settings) -> None:
    settings = make_settings(PORT_BASE + 200)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # A PATH with python and mvn but no java.
    for tool in ("mvn",):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    result = run_lintas(settings, "stack", "up", env={"PATH": f"{bin_dir}:{os.path.dirname(os.sys.executable)}"})
    assert result.returncode == 2
    assert "java" in result.stderr and "kafka" in result.stderr
    assert "missing_prerequisite" in result.stderr


def test_half_written_state_dir_is_refused(tmp_path: Path, make_settings) -> None:
    settings = make_settings(PORT_BASE + 300)
    data = tmp_path / "state" / "kafka" / "cluster-1" / "node-1" / "data"
    data.mkdir(parents=True)
    (data / "__consumer_offsets-0").mkdir()
    result = run_lintas(settings, "stack", "up")
    assert result.returncode == 2
    assert "kafka-1" in result.stderr and "half-written" in result.stderr
    assert "state_dir_inconsistent" in result.stderr
    assert not port_is_bound("127.0.0.1", settings.kafka_port)


def test_server_that_fails_to_start_points_to_its_log(tmp_path: Path, make_settings) -> None:
    settings = make_settings(PORT_BASE + 400)
    # A heap too small for the JVM to start at all.
    result = run_lintas(settings, "stack", "up", env={"LINTAS_KAFKA_HEAP": "-Xmx1m"})
    assert result.returncode == 2
    assert "kafka-1: exited during start-up" in result.stderr
    log = tmp_path / "state" / "logs" / "kafka-1.log"
    assert str(log.resolve()) in result.stderr
    assert log.read_text()
    assert not list((tmp_path / "state" / "run").glob("*.pid"))
