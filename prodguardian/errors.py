"""The one error root of ProdGuardian: every expected failure is a ProdGuardianError."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Location:
    """Where in a file a problem is: its path, and the line and column (from 1) when known."""

    path: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        """`path:line:column`, as editors and compilers write it (the parts known)."""
        return ":".join(str(part) for part in (self.path, self.line, self.column) if part is not None)


class ProdGuardianError(Exception):
    """An error the user can act on; the CLI prints it on one line and exits 3."""

    def __init__(self, message: str, where: str | Location | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.where = where

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class InputError(ProdGuardianError):
    """Log input that cannot be read (not JSON, truncated, binary)."""


class RuleError(ProdGuardianError):
    """A rule file that does not load or validate."""


class ConfigError(ProdGuardianError):
    """A setting, option or config file that makes no sense."""


class SourceError(ProdGuardianError):
    """Logs could not be fetched (credentials, permissions, network, quota)."""
