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
        dist_dir=SHARED_DIST,
        kafka_port=port_base + 92,
        kafka_controller_port=port_base + 93,
        kafka_brokers=brokers,
        schema_registry_port=port_base + 81,
        clickhouse_port=port_base + 123,
    )


def settings_env(settings: Settings) -> dict[str, str]:
    """The LINTAS_* environment that reproduces ``settings`` in a subprocess."""
    return {
        "LINTAS_STATE_DIR": str(settings.state_dir),
        "LINTAS_DIST_DIR": str(settings.dist_dir),
        "LINTAS_KAFKA_PORT": str(settings.kafka_port),
        "LINTAS_KAFKA_CONTROLLER_PORT": str(settings.kafka_controller_port),
        "LINTAS_KAFKA_BROKERS": str(settings.kafka_brokers),
        "LINTAS_SCHEMA_REGISTRY_PORT": str(settings.schema_registry_port),
        "LINTAS_CLICKHOUSE_PORT": str(settings.clickhouse_port),
    }
