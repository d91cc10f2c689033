"""What every command group shares: the settings of a run."""

from __future__ import annotations

import argparse

from schemas.errors import LintasError
from streams.settings import Settings, load_settings


class UsageError(LintasError):
    """Options that do not go together (exit 2, like argparse's own usage errors)."""

    code = "usage"


def settings_of(args: argparse.Namespace) -> Settings:
    """The settings, with the options a command takes on top (``--brokers``)."""
    settings = load_settings()
    brokers = getattr(args, "brokers", None)
    if brokers is not None:
        settings = settings.model_copy(update={"kafka_brokers": brokers})
    return settings
