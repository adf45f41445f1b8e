"""The HTML report in a real headless browser (the system's chromium, driven by Playwright).

Each scenario's page is rendered once and opened from disk: no console error, no request but the file
itself, the headline, each finding and each chart present by their accessible names, no horizontal overflow
at 420 px. Screenshots at 1280 and 420 px, light and dark, go to $PRODGUARDIAN_ARTEFACTS (else a folder of
the test run), which the first test prints. Without chromium (`.ci/run` installs it where apt works) or
Playwright the tests are skipped, saying which is missing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from prodguardian.render import Translator, report_view, signal_name
from prodguardian.timelines import Timeline
from tests.html_reports import SCENARIOS, html_of, report_of

CHROMIUM = (
    os.environ.get("PRODGUARDIAN_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
)
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (the test extra)")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium on PATH (.ci/run installs Debian's with apt-get where it can; "
    "or set PRODGUARDIAN_CHROMIUM)",
)
WIDTHS = {"wide": 1280, "phone": 420}
# Each page at both widths in both schemes for these; the others wide and light, and on a phone dark.
EVERY_VIEW = ("bad-deploy", "two-services")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One chromium for the whole session."""
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def artefacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("PRODGUARDIAN_ARTEFACTS") or tmp_path_factory.mktemp("html-artefacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Opened:
    """A page as the browser showed it: what it logged and requested, and the page to query."""

    def __init__(self, browser: Any, path: Path, width: int, scheme: str) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": 900}, color_scheme=scheme)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.page.on(
            "console", lambda m: self.errors.append(m.text) if m.type in ("error", "warning") else None
        )
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.goto(path.as_uri(), wait_until="load")

    def overflows(self) -> bool:
        return bool(self.page.evaluate("document.documentElement.scrollWidth > window.innerWidth"))


@pytest.fixture(scope="session")
def pages(browser: Any, artefacts: Path) -> Iterator[dict[tuple[str, str, str], Opened]]:
    """Every scenario's page at each width in light and dark, screenshot taken, opened once."""
    opened = {}
    for name in (*SCENARIOS, "hostile-revision"):
        path = artefacts / f"{name}.html"
        path.write_text(html_of(name), encoding="utf-8")
        for width_name, scheme in _views(name):
            page = Opened(browser, path, WIDTHS[width_name], scheme)
            shot = artefacts / f"{name}-{WIDTHS[width_name]}-{scheme}.png"
            page.page.screenshot(path=shot, full_page=True)
            opened[(name, width_name, scheme)] = page
    yield opened
    for page in opened.values():
        page.context.close()


def _views(name: str) -> list[tuple[str, str]]:
    if name in EVERY_VIEW:
        return [(width, scheme) for width in WIDTHS for scheme in ("light", "dark")]
    return [("wide", "light"), ("phone", "dark")]


def test_the_screenshots_folder(pages: dict[tuple[str, str, str], Opened], artefacts: Path) -> None:
    print(f"HTML report screenshots: {artefacts}")  # where to look (pytest -s shows it)
    assert len(list(artefacts.glob("*.png"))) == len(pages)


@pytest.mark.parametrize("name", (*SCENARIOS, "hostile-revision"))
def test_nothing_is_logged_requested_or_run(pages: dict[tuple[str, str, str], Opened], name: str) -> None:
    for key in [k for k in pages if k[0] == name]:
        page = pages[key]
        assert page.errors == [], key
        assert page.dialogs == [], key  # the hostile revision's <script> stays text
        assert [url for url in page.requests if not url.startswith("file:")] == [], key
        assert len(page.requests) == 1, key


@pytest.mark.parametrize("name", SCENARIOS)
def test_headline_findings_and_charts_by_accessible_name(
    pages: dict[tuple[str, str, str], Opened], name: str
) -> None:
    page = pages[(name, "wide", "light")].page
    report = report_of(name)
    t = Translator("en")
    for each in report.services or [report]:
        heading = page.get_by_role("heading", name=f"Production Status: {each.status}")
        assert heading.count() >= 1
        blocks = report_view(each, t)["blocks"]
        assert len(blocks) >= len({f.caused_by or f.rule for f in each.problems})
        for line in [b["title"] for b in blocks] + [line for b in blocks for line in b["symptoms"]]:
            assert page.get_by_text(line, exact=False).count() >= 1, line  # a finding or its symptom
        for title in _chart_titles(each.timeline, t):
            assert page.get_by_role("img", name=title, exact=True).count() >= 1, title


def _chart_titles(timeline: Timeline | None, t: Translator) -> list[str]:
    if timeline is None:
        return []
    bucket = t.hours(timeline.bucket.total_seconds() / 3600)
    return [t("html.chart_title", name=signal_name(s.name, t), bucket=bucket) for s in timeline.signals]


@pytest.mark.parametrize("name", (*SCENARIOS, "hostile-revision"))
def test_no_horizontal_overflow_on_a_phone(pages: dict[tuple[str, str, str], Opened], name: str) -> None:
    for key in [k for k in pages if k[:2] == (name, "phone")]:
        assert not pages[key].overflows(), key
