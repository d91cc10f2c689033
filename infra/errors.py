"""What goes wrong with the local stack: a server that cannot be installed, started, checked or stopped.

Part of :class:`schemas.errors.LintasError`'s hierarchy (one line, a stable code, no traceback at the
command line), kept here because only the local stack raises them.
"""

from __future__ import annotations

from schemas.errors import LintasError


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
