"""A page of ours in Debian's headless Chromium through Playwright (the report tests):
skipped with a reason when the browser or Playwright is missing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")


@dataclass
class Opened:
    """The open page, and what it logged: console errors and uncaught exceptions
    (``errors``), every URL it requested (``requests``)."""

    page: Any
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


@contextmanager
def headless_page(path: Path) -> Iterator[Opened]:
    """``path`` (an HTML file) loaded in headless Chromium; closed on exit."""
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium, or `make apt`)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright for Python is missing (pip install -e .[dev])")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"])
        try:
            page = browser.new_page()
            opened = Opened(page)
            page.on("console",
                    lambda m: opened.errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: opened.errors.append(f"uncaught: {e}"))
            page.on("request", lambda q: opened.requests.append(q.url))
            page.goto(path.as_uri())
            yield opened
        finally:
            browser.close()
