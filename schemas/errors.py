"""The failure contract between stage handlers and the stage runtime: a handler (or an event
decoder) raises a type, the runtime decides what happens; `code` ends up in a job's failed_*
reason. It lives with the events because decoding one raises `PoisonMessage`; accessa.errors
re-exports it beside ConfigurationError, so there is one hierarchy (drawn there).
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base class. `code` is a stable machine-readable reason, `message` is for humans."""

    code: str = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class TransientError(PipelineError):
    """Retrying may succeed (timeouts, 5xx, 429, a database that is restarting)."""

    code = "transient"

    def __init__(self, message: str, *, code: str | None = None, defer_s: float | None = None):
        super().__init__(message, code=code)
        self.defer_s = defer_s


class RecoverableError(TransientError):
    """Waiting will fix it and it must never exhaust attempts (e.g. `budget_exceeded`)."""

    code = "recoverable"


class PermanentError(PipelineError):
    """Retrying cannot help: the document or the event is bad."""

    code = "permanent"


class PoisonMessage(PermanentError):
    """The Kafka record cannot be decoded into the stage's event."""

    code = "poison_message"
