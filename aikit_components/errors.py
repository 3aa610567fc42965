"""One error hierarchy for aikit. Every error has a stable ``code``, a message a user can act on,
and JSON-like ``details``. In Lua it arrives as a table ``{code, message, details}``; in a
notebook as an ``error`` output whose ename is the code."""

from __future__ import annotations

from typing import Any


class AikitError(Exception):
    """Base class: ``code`` is stable and machine-readable, ``message`` says what to fix."""

    code: str = "error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
        if code is not None:
            self.code = code

    def to_dict(self) -> dict[str, Any]:
        """A JSON-like view: ``{"code", "message", "details"}``."""
        return {"code": self.code, "message": self.message, "details": self.details}

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class InvalidArgument(AikitError):
    """Bad input from the caller (wrong type, missing field, malformed value)."""

    code = "invalid_argument"


class PermissionDenied(AikitError):
    """The security policy refused the operation; the message names the rule and how to change it."""

    code = "permission_denied"


class NotFound(AikitError):
    """A named thing (file, key, session, tool) does not exist."""

    code = "not_found"


class Timeout(AikitError):
    """An operation exceeded its time budget."""

    code = "timeout"


class Interrupted(BaseException):
    """The user interrupted the running code (or a wait was abandoned because of it).

    aikit's one interrupt exception, wherever it travels in Python: a wait on the I/O loop that
    an interrupt stopped, a Lua callback (tool, hook, updater) that was interrupted. A
    BaseException, like KeyboardInterrupt, so that no ``except Exception`` on the way (hooks,
    the tool pipeline) mistakes it for an ordinary failure. In Lua it is the interrupt sentinel
    (converted by the host-function wrapper, ``aikit_kernel/lua/host.py``).
    """

    code = "interrupted"

    def __init__(self, message: str = "interrupted") -> None:
        super().__init__(message)
        self.message = message


class ResourceExhausted(AikitError):
    """A limit was reached (memory, size, disk, budget)."""

    code = "resource_exhausted"


class IOFailure(AikitError):
    """The operating system refused an I/O operation (disk full, I/O error, ...)."""

    code = "io_error"


class ValidationError(InvalidArgument):
    """Arguments failed validation; ``details["problems"]`` lists every problem found."""

    def __init__(self, message: str, problems: list[str], *, details: dict[str, Any] | None = None) -> None:
        full = message + ("\n - " + "\n - ".join(problems) if problems else "")
        super().__init__(full, details={**(details or {}), "problems": problems})
        self.problems = problems


class Conflict(AikitError):
    """A concurrent change won (compare-and-set lost, version mismatch)."""

    code = "conflict"


class BudgetExceeded(ResourceExhausted):
    """A per-run budget (tool calls, wall time, tokens) is used up."""

    code = "budget_exceeded"


class Cancelled(AikitError):
    """A hook or the user cancelled the operation; the message gives the reason."""

    code = "cancelled"


class ConfigError(AikitError):
    """The configuration is invalid; the message names the key and the file line."""

    code = "config_error"


def error_from_exception(exc: BaseException) -> AikitError:
    """Wrap any exception as an AikitError (aikit errors pass through unchanged)."""
    if isinstance(exc, AikitError):
        return exc
    if isinstance(exc, TimeoutError):
        return Timeout(str(exc) or "operation timed out")
    if isinstance(exc, PermissionError):
        return PermissionDenied(str(exc))
    if isinstance(exc, FileNotFoundError):
        return NotFound(f"{exc.strerror}: {exc.filename}" if exc.filename else str(exc))
    if isinstance(exc, OSError):
        return IOFailure(f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""))
    return AikitError(f"{type(exc).__name__}: {exc}", code="internal_error")


class ActorStopped(AikitError):
    """The actor (or supervised child) is not running: it stopped, crashed or is restarting."""

    code = "actor_stopped"


class ActorCrashed(AikitError):
    """The actor died while handling this call; ``details["reason"]`` says why."""

    code = "actor_crashed"


class MailboxFull(ResourceExhausted):
    """The actor's bounded mailbox is full; retry later or give it a bigger ``mailbox_size``."""

    code = "mailbox_full"


class SupervisorStartFailed(AikitError):
    """A child failed to start while the supervisor started; the children already started were
    stopped again (reverse order)."""

    code = "supervisor_start_failed"


class UnsupportedFile(InvalidArgument):
    """A file cannot be read as a document: not UTF-8 text, or a type no loader knows;
    ``details["path"]`` names it. Nothing was stored."""

    code = "unsupported_file"


class EmbedderUnavailable(AikitError):
    """The embedding model cannot be used (its package is missing, or it failed to load); the
    message says what to install or configure."""

    code = "embedder_unavailable"
