"""Settings and topic declarations."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.settings import Settings
from streams.topics import ALL_TOPICS


def test_env_prefix_and_secret_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINTAS_CLICKHOUSE_PASSWORD", "s3cret-value")
    monkeypatch.setenv("LINTAS_KAFKA_BROKERS", "3")
    settings = Settings()
    assert settings.kafka_brokers == 3
    assert settings.kafka_bootstrap == "127.0.0.1:9092,127.0.0.1:9102,127.0.0.1:9112"
    assert "s3cret-value" not in repr(settings) and "s3cret-value" not in str(settings.model_dump())


def test_registry_url_local_or_external(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().schema_registry_url == "https://127.0.0.1:8081"
    assert Settings(secure=False).schema_registry_url == "http://127.0.0.1:8081"
    monkeypatch.setenv("LINTAS_SCHEMA_REGISTRY_EXTERNAL_URL", "http://registry.example:8081")
    assert Settings().schema_registry_url == "http://registry.example:8081"


def test_topics_declared_once_with_their_dead_letters() -> None:
    names = [t.name for t in ALL_TOPICS]
    assert len(names) == len(set(names))
    for topic in ALL_TOPICS:
        if not topic.name.endswith(".dlq") and not topic.internal:
            assert topic.dlq in names, f"{topic.name} has no dead-letter topic"
        assert topic.config()["retention.ms"] == str(topic.retention_ms)


def test_state_dir_default_is_relative(tmp_path: Path) -> None:
    assert Settings().state_dir == Path(".lintas")
