"""Notifications built from real reports: the simulator's scenarios, checked and rendered as JSON."""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from prodguardian.check import check_logs
from prodguardian.notification import Event, Notification
from prodguardian.render import Translator, render
from prodguardian.simulate import generate
from prodguardian.source import write_export


@cache
def json_report(scenario: str = "db-outage", lang: str = "en") -> dict[str, Any]:
    """A scenario's check, in the JSON report form (written as an export and read back, as a user would)."""
    with TemporaryDirectory() as folder:
        export = Path(folder) / f"{scenario}.json"
        write_export(generate(scenario, hours=3), str(export))
        report = check_logs(str(export), baseline="2h")
    document: dict[str, Any] = json.loads(render(report, "json", lang))
    return document


def notification(event: Event = "firing", scenario: str = "db-outage", lang: str = "en") -> Notification:
    """The notification the alert lifecycle would send for the scenario's worst finding."""
    report = json_report(scenario, lang)
    findings = report["findings"]
    root = next(f for f in findings if not f["caused_by"])
    symptoms = [f for f in findings if f["caused_by"]]
    end = datetime.fromisoformat(report["window"]["end"].replace("Z", "+00:00"))
    service = report["service"]
    titles = {"resolved": Translator(lang)("alerts.resolved", service=service, title=root["summary"])}
    return Notification(
        id=f"{service}/{root['rule']}/{event}/{end.isoformat()}",
        alert=f"{service}/{root['rule']}",
        event=event,
        severity=report["status"] if report["status"] != "OK" else "DEGRADED",
        service=service,
        title=titles.get(event, f"🔴 {service}: {root['summary']}"),
        at=end,
        started_at=end,
        lang=lang,
        findings=[root],
        symptoms=symptoms,
        commands=[r["command"] for r in report["recommendations"] if r.get("command")],
        report=report,
    )
