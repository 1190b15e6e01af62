"""One exception hierarchy: handlers raise a type, the stage runtime decides what happens.

PipelineError
├── TransientError      try again later: retry topic with backoff, then the DLQ
│   └── RecoverableError  a resource is not ready / over budget: wait, never fail the job
└── PermanentError      retrying cannot help: DLQ now, job -> failed_<stage>
    └── PoisonMessage     the message itself is unreadable (not JSON, wrong schema, ...)

ConfigurationError      the deployment is wrong (credentials, certificates): not ready, no retry
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


class ConfigurationError(Exception):
    """The deployment is misconfigured (a missing credential, an unreadable certificate): no
    record is at fault, so nothing is retried or dead-lettered; the process reports not ready."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
