"""HTML reports rendered once per test session, for the page tests and the browser tests."""

from __future__ import annotations

from functools import cache

from prodguardian.render_html import render_html
from prodguardian.verdict import Report
from tests.reports import hostile_revision_report, made_once, scenario_report, two_service_report

SCENARIOS = ("db-outage", "healthy", "bad-deploy", "two-services")


def report_of(name: str) -> Report:
    """A scenario's report; `two-services` is db-outage and a healthy second service in one input, and
    `hostile-revision` bad-deploy with its new revision named like a script tag."""
    if name == "two-services":
        return two_service_report()
    if name == "hostile-revision":
        return hostile_revision_report()
    return scenario_report(name)


@cache
def html_of(name: str, lang: str = "en") -> str:
    return made_once("html", f"{name}-{lang}", lambda: render_html(report_of(name), lang))
