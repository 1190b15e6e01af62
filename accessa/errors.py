"""One exception hierarchy: handlers raise a type, the stage runtime decides what happens.
The pipeline part is defined in schemas/errors.py (decoding an event raises PoisonMessage).

PipelineError
├── TransientError      try again later: retry topic with backoff, then the DLQ
│   └── RecoverableError  a resource is not ready / over budget: wait, never fail the job
└── PermanentError      retrying cannot help: DLQ now, job -> failed_<stage>
    └── PoisonMessage     the message itself is unreadable (not JSON, wrong schema, ...)

ConfigurationError      the deployment is wrong (credentials, certificates): not ready, no retry
"""

from __future__ import annotations

from schemas.errors import (
    PermanentError,
    PipelineError,
    PoisonMessage,
    RecoverableError,
    TransientError,
)

__all__ = [
    "ConfigurationError",
    "PermanentError",
    "PipelineError",
    "PoisonMessage",
    "RecoverableError",
    "TransientError",
]


class ConfigurationError(Exception):
    """The deployment is misconfigured (a missing credential, an unreadable certificate): no
    record is at fault, so nothing is retried or dead-lettered; the process reports not ready."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
