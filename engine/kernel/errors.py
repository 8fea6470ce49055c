"""Errors a user can act on. Each names the file and key at fault."""

from __future__ import annotations


class SpecError(Exception):
    """A study spec is invalid. Raised before any model call; the CLI exits with code 2."""

    exit_code = 2

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None):
        self.file = file
        self.key = key
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = []
        if self.file:
            where.append(self.file)
        if self.key:
            where.append(f"key '{self.key}'")
        prefix = ": ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message


class WeightsError(Exception):
    """A local model's weight file is missing or does not match its recorded SHA-256."""


class ProviderError(Exception):
    """A model call failed after all retries. Becomes a trial row with status 'error'."""

    def __init__(self, message: str, retries: int = 0):
        self.retries = retries
        super().__init__(message)


class BudgetExhausted(Exception):
    """The study's USD or token budget is spent; no new calls are made."""


class ParseFailure(Exception):
    """A model's reply could not be parsed after the allowed re-asks."""


class StoreBusy(Exception):
    """The study database is open for writing in another process (DuckDB allows one writer)."""


class ReportError(Exception):
    """The report cannot be built: from what the database holds, or because a rendering tool failed."""


class MissingExtra(SpecError):
    """The study needs an optional part of the install (an extra) that is not installed."""
