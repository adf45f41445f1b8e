"""ProdGuardian: is production healthy right now, and if not, why and what to do.

The check as a library (the README's "Python API" section has a longer example):

    import prodguardian

    report = prodguardian.check_logs("export.json", service="emergence-app")
    print(report.status)                                    # OK, DEGRADED, CRITICAL or UNKNOWN
    print(prodguardian.render_report(report, "markdown"))

The names below are loaded on first use, so `import prodguardian` stays cheap: pandas and the Google
libraries load when a check runs, not before.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "CheckOptions",
    "CloudLogging",
    "ConfigError",
    "Entries",
    "FileSource",
    "Finding",
    "InputError",
    "LogInput",
    "ProdGuardianError",
    "ReadOptions",
    "Report",
    "RuleError",
    "RulePack",
    "Severity",
    "SourceError",
    "Status",
    "__version__",
    "check_logs",
    "load_pack",
    "render_report",
]

# The module of each public name, and the name there when it differs.
_MODULES = {
    "check": ("check_logs", "CheckOptions", "LogInput", "Entries"),
    "source": ("FileSource", "ReadOptions"),
    "cloud": ("CloudLogging",),
    "rules": ("RulePack", "load_pack"),
    "verdict": ("Report", "Status"),
    "detect": ("Finding", "Severity"),
    "render": ("render_report",),
    "errors": ("ProdGuardianError", "InputError", "RuleError", "ConfigError", "SourceError"),
}
_HOME = {name: module for module, names in _MODULES.items() for name in names}
_RENAMED = {"render_report": "render"}

if TYPE_CHECKING:  # what type checkers and editors see; at run time __getattr__ loads each name
    from prodguardian.check import CheckOptions, Entries, LogInput, check_logs
    from prodguardian.cloud import CloudLogging
    from prodguardian.detect import Finding, Severity
    from prodguardian.errors import ConfigError, InputError, ProdGuardianError, RuleError, SourceError
    from prodguardian.render import render as render_report
    from prodguardian.rules import RulePack, load_pack
    from prodguardian.source import FileSource, ReadOptions
    from prodguardian.verdict import Report, Status


def __getattr__(name: str) -> Any:
    """A public name, imported from its module on first use (PEP 562)."""
    if name not in _HOME:
        raise AttributeError(f"module 'prodguardian' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"prodguardian.{_HOME[name]}"), _RENAMED.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
