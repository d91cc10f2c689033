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


class StackError(LintasError):
    """A local server could not be installed, started, checked or stopped."""

    code = "stack_error"

    def __init__(self, server: str, reason: str, log: str | None = None) -> None:
        """Name the server, the reason and, where there is one, the log to read."""
        self.server = server
        self.reason = reason
        self.log = log
        hint = f" (see its log: {log})" if log else ""
        super().__init__(f"{server}: {reason}{hint}")


class PrerequisiteError(StackError):
    """A tool the stack needs (java, mvn, kcat) is missing."""

    code = "missing_prerequisite"


class PortInUseError(StackError):
    """A server's port is already bound by a process the stack does not own."""

    code = "port_in_use"


class StateDirError(StackError):
    """The state directory is half-written or inconsistent."""

    code = "state_dir_inconsistent"
