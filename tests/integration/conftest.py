"""The real local stack for integration tests: started once per session by the project's own code."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.stack import Stack
from streams.settings import Settings
from tests.conftest import REPO, settings_env, stack_settings

# The session stack lives on ports 19xxx so a developer's own stack (9092, 8081, 8123) can keep running;
# under pytest-xdist each worker process has its own session stack, 400 ports further up.
SESSION_PORT_BASE = 19000 + 400 * int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One running stack for the whole test session, stopped at the end."""
    settings = stack_settings(tmp_path_factory.mktemp("stack"), SESSION_PORT_BASE)
    stack = Stack(settings)
    stack.up(say=lambda line: print(line, file=sys.stderr))
    try:
        yield stack
    finally:
        stack.down(say=lambda line: None)


def migrated_stack(tmp_path_factory: pytest.TempPathFactory, name: str, port_base: int) -> Iterator[Stack]:
    """A module's own stack, migrated (as the worker does on start, so tests can count at once), then stopped."""
    stack = Stack(stack_settings(tmp_path_factory.mktemp(name), port_base))
    stack.up(say=lambda line: print(line, file=sys.stderr))
    try:
        from streams.clients import clickhouse_client
        from streams.ops.migrate import migrate

        migrate(clickhouse_client(stack.settings, migrate=True))
        yield stack
    finally:
        stack.down(say=lambda _: None)


@pytest.fixture(scope="session")
def settings(stack: Stack) -> Settings:
    """Settings of the session stack."""
    return stack.settings


@pytest.fixture
def unique_topic(settings: Settings) -> Iterator[str]:
    """A fresh test topic name (tests create their own topics, never the declared ones)."""
    yield f"test-{uuid.uuid4().hex[:10]}"


def run_lintas(settings: Settings, *args: str, timeout: float = 300,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the `lintas` console script against the given settings."""
    full_env = {**os.environ, **settings_env(settings), **(env or {})}
    return subprocess.run(
        [str(Path(sys.executable).parent / "lintas"), *args],
        capture_output=True, text=True, timeout=timeout, env=full_env, cwd=REPO, check=False,
    )
