"""The one error hierarchy of Lintas, rooted in :class:`LintasError`.

Each error has a stable ``code`` that tests and operators can match on. Messages
never carry personal data: they name fields, servers and files, not values.
"""

from __future__ import annotations


class LintasError(Exception):
    """Base of every error Lintas raises on purpose."""

    code = "lintas_error"


class InvalidMessage(LintasError):
    """A message that is bad in itself (an event, a template, a decision): dead-lettered with the reason, never retried.

    ``code`` is stable (``truncated``, ``missing_field``, ``template_low_quality``, ``unknown_link``, ...), ``field``
    the dotted path at fault (empty when the bytes cannot be read at all), ``reason`` says why without the value.
    """

    code = "invalid_message"

    def __init__(self, code: str, field: str, reason: str) -> None:
        """Stable code, the field at fault and why (never the value)."""
        self.code, self.field, self.reason = code, field, reason
        super().__init__(f"{field or '(record)'}: {reason} ({code})")


class Unavailable(LintasError):
    """A server cannot be asked now (registry, ClickHouse, Kafka): retry later, the message is not at fault."""

    code = "unavailable"
