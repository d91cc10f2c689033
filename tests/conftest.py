"""Shared test configuration: how tests build settings for a stack of their own."""

from __future__ import annotations

from pathlib import Path

from streams.settings import Settings

REPO = Path(__file__).resolve().parent.parent
SHARED_DIST = REPO / ".lintas" / "dist"


def stack_settings(state_dir: Path, port_base: int, brokers: int = 1) -> Settings:
    """Settings for a test stack on its own ports and state dir; installed jars are shared."""
    return Settings(
        state_dir=state_dir,
        dist=SHARED_DIST,
        kafka_port=port_base + 92,
        kafka_controller_port=port_base + 93,
        kafka_brokers=brokers,
        schema_registry_port=port_base + 81,
        clickhouse_port=port_base + 123,
    )


def settings_env(settings: Settings) -> dict[str, str]:
    """The LINTAS_* environment that reproduces ``settings`` in a subprocess."""
    return settings.as_env()
