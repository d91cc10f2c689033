"""ManagedProcess: PID file, log file, health check, clean stop (with a tiny Python server)."""

from __future__ import annotations

import socket
import sys
import urllib.request
from pathlib import Path

import pytest

from infra.errors import PortInUseError, StackError
from infra.process import ManagedProcess, pid_alive, port_is_bound, rss_bytes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http_server(tmp_path: Path, port: int, command: list[str] | None = None) -> ManagedProcess:
    def health() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=0.5) as r:
            return r.status == 200

    return ManagedProcess(
        name="toy",
        command=command or [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
        ports=[port],
        log_file=tmp_path / "logs" / "toy.log",
        pid_file=tmp_path / "run" / "toy.pid",
        health=health,
        cwd=tmp_path,
    )


def test_start_is_idempotent_and_stop_frees_the_port(tmp_path: Path) -> None:
    port = _free_port()
    proc = _http_server(tmp_path, port)
    assert proc.start(timeout_s=20) is True
    pid = proc.pid()
    assert pid is not None and pid_alive(pid)
    assert (rss_bytes(pid) or 0) > 1_000_000
    assert proc.start(timeout_s=20) is False  # already running: nothing new started
    assert proc.pid() == pid
    assert proc.stop() is True
    assert not pid_alive(pid)
    assert not port_is_bound("127.0.0.1", port)
    assert not proc.pid_file.exists()
    assert proc.stop() is False


def test_process_that_exits_names_itself_and_its_log(tmp_path: Path) -> None:
    proc = _http_server(tmp_path, _free_port(), [sys.executable, "-c", "import sys; print('bad config'); sys.exit(3)"])
    with pytest.raises(StackError) as err:
        proc.start(timeout_s=20)
    assert "toy: exited during start-up with code 3" in str(err.value)
    assert str(proc.log_file) in str(err.value)
    assert "bad config" in proc.log_file.read_text()
    assert not proc.pid_file.exists()


def test_process_that_never_gets_healthy_is_stopped(tmp_path: Path) -> None:
    proc = _http_server(tmp_path, _free_port(), [sys.executable, "-c", "import time; time.sleep(60)"])
    with pytest.raises(StackError) as err:
        proc.start(timeout_s=1.5)
    assert "did not answer its health check" in str(err.value)
    assert proc.pid() is None


def test_port_taken_by_a_stranger(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        proc = _http_server(tmp_path, port)
        with pytest.raises(PortInUseError) as err:
            proc.start(timeout_s=5)
    assert f"127.0.0.1:{port}" in str(err.value) and err.value.server == "toy"


def test_stale_pid_file_is_ignored(tmp_path: Path) -> None:
    port = _free_port()
    proc = _http_server(tmp_path, port)
    proc.pid_file.parent.mkdir(parents=True)
    proc.pid_file.write_text("999999\n")
    assert proc.pid() is None
    assert proc.start(timeout_s=20) is True
    proc.stop()
