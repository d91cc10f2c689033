"""Start, check and stop one local server process: PID file, log file, health check.

Each server runs in its own session (process group) so that ``stop`` reaches every
child it forked, writes its output to one log file and records its PID in one
file; a server is only "up" when its health check answers.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from infra.errors import PortInUseError, StackError

HealthCheck = Callable[[], bool]


def port_is_bound(host: str, port: int) -> bool:
    """True if something accepts TCP connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def pid_alive(pid: int) -> bool:
    """True if a process with this PID exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            if stat.read().split(") ", 1)[1][0] != "Z":
                return True
        # A zombie main thread can still have live threads (a JVM shutting down holds its ports).
        return len(os.listdir(f"/proc/{pid}/task")) > 1
    except (FileNotFoundError, IndexError):
        return False


def rss_bytes(pid: int) -> int | None:
    """Resident memory of a process and all its descendants, or None if gone."""
    total = 0
    pids = [pid, *descendants(pid)]
    found = False
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        found = True
        except FileNotFoundError:
            continue
    return total if found else None


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, children first."""
    children: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                children.extend(int(c) for c in f.read().split())
    except FileNotFoundError:
        return []
    return children + [d for c in children for d in descendants(c)]


@dataclass
class ManagedProcess:
    """A server the stack starts and stops, known by its PID file."""

    name: str
    command: Sequence[str]
    ports: Sequence[int]
    log_file: Path
    pid_file: Path
    health: HealthCheck
    host: str = "127.0.0.1"
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def pid(self) -> int | None:
        """PID from the PID file if that process is still alive."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def healthy(self) -> bool:
        """True if the health check answers."""
        try:
            return self.health()
        except Exception:  # noqa: BLE001 - a failing probe means "not healthy", whatever it raised
            return False

    def start(self, timeout_s: float) -> bool:
        """Start the server unless it already runs; wait for its health check.

        Returns True if it was started now, False if it was already up.
        """
        started = self.launch(timeout_s)
        self.await_ready(timeout_s)
        return started

    def launch(self, timeout_s: float) -> bool:
        """Start the process without waiting for health (servers that need peers to become healthy).

        Returns True if a process was started, False if one was already running.
        """
        if self.pid() is not None:
            return False
        self.pid_file.unlink(missing_ok=True)
        self.check_ports()
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            log.write(f"\n==== starting {self.name} at {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(  # noqa: S603 - fixed argv built by the stack, no shell
                list(self.command),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env={**os.environ, **self.env},
                start_new_session=True,
            )
        self.pid_file.write_text(f"{self._proc.pid}\n")
        return True

    def check_ports(self) -> None:
        """Raise naming this server if one of its ports is already taken by another process."""
        for port in self.ports:
            if port_is_bound(self.host, port):
                raise PortInUseError(
                    self.name,
                    f"port {self.host}:{port} is already in use by another process; stop it or "
                    "set another port (LINTAS_*_PORT)",
                )

    def await_ready(self, timeout_s: float) -> None:
        """Wait for the health check; raise naming the server and its log if it never answers."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.pid() is None:
                code = self._proc.poll() if self._proc is not None else None
                self.pid_file.unlink(missing_ok=True)
                how = f" with code {code}" if code is not None else ""
                raise StackError(self.name, f"exited during start-up{how}", str(self.log_file))
            if self.healthy():
                return
            time.sleep(0.25)
        self.stop()
        raise StackError(self.name, f"did not answer its health check within {timeout_s:.0f}s", str(self.log_file))

    def wait_healthy(self, timeout_s: float) -> bool:
        """Poll the health check until it answers or the timeout passes."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self.healthy():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.25)

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop the server's whole process group: SIGTERM, then SIGKILL after the timeout.

        Returns True if a process was stopped.
        """
        pid = self.signal_stop()
        if pid is None:
            return False
        self.wait_stopped(pid, timeout_s)
        return True

    def signal_stop(self) -> int | None:
        """Send SIGTERM to the process group without waiting; the PID signalled, or None."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return None
        _signal_group(pid, signal.SIGTERM)
        return pid

    def wait_stopped(self, pid: int, timeout_s: float = 30.0) -> None:
        """Wait for a signalled process to exit and free its ports; SIGKILL it after the timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.1)
        if pid_alive(pid):
            _signal_group(pid, signal.SIGKILL)
            while pid_alive(pid):
                time.sleep(0.05)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(port_is_bound(self.host, p) for p in self.ports):
            time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL the whole process group at once (fault tests)."""
        pid = self.pid()
        if pid is not None:
            _signal_group(pid, signal.SIGKILL)
            while pid_alive(pid):
                time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)
