"""The one exception tree of aicd.

Every error a user can cause is an :class:`AicdError`. The CLI prints its
message (one line per problem, with file, line and column where there is
one) and exits non-zero; it never prints a traceback for these.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Diagnostic:
    """One problem found in a pipeline file, with where it is."""

    message: str
    file: str = ""
    line: int = 0  # 1-based; 0 when unknown
    column: int = 0  # 1-based; 0 when unknown
    path: str = ""  # key path, e.g. 'jobs.test.needs[0]' (informative)
    severity: str = "error"  # 'error' or 'warning'

    def __str__(self) -> str:
        where = self.file or "<pipeline>"
        if self.line:
            where += f":{self.line}"
            if self.column:
                where += f":{self.column}"
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{where}: {prefix}{self.message}"


class AicdError(Exception):
    """Root of every error aicd raises on purpose."""

    exit_code: int = 1


class ConfigError(AicdError):
    """Bad settings, flags or environment."""

    exit_code = 2


class PipelineError(AicdError):
    """The pipeline file cannot be turned into a pipeline.

    Carries every problem found, not just the first.
    """

    exit_code = 2

    def __init__(self, diagnostics: list[Diagnostic] | Diagnostic | str) -> None:
        if isinstance(diagnostics, str):
            diagnostics = [Diagnostic(diagnostics)]
        elif isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics: list[Diagnostic] = list(diagnostics)
        super().__init__("\n".join(str(d) for d in self.diagnostics))


class WorkflowFilteredOut(AicdError):
    """`workflow:rules` decided that no pipeline is created. Not a failure."""

    exit_code = 0


class ExpressionError(AicdError):
    """A `rules:if` expression (or a regex in one) cannot be parsed."""


class ExecutorError(AicdError):
    """An executor could not start or manage a job (not a job failure)."""


class JobDetached(ExecutorError):
    """The executor let go of a job that runs on elsewhere (a server with workers stopping cleanly
    leaves its attempts to the next server, which adopts them): nothing of it is to be recorded."""


class StoreError(AicdError):
    """The run history cannot be read or written."""


class NotFoundError(AicdError):
    """A run, job or other named thing does not exist."""


class GitError(AicdError):
    """A git command failed or the directory is not a usable repository."""


class AuthError(AicdError):
    """No credentials, or credentials the server does not accept (HTTP 401)."""


class PermissionDeniedError(AicdError):
    """Authenticated, but the role does not allow this (HTTP 403)."""


class ConflictError(AicdError):
    """The request conflicts with the current state, e.g. a name already taken (HTTP 409)."""


class DeployError(AicdError):
    """A deployment step failed: a service that does not start or never becomes healthy."""
