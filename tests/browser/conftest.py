"""Browser tests: Playwright's Python package driving Debian's Chromium (never its own download).

`make setup` installs the ``chromium`` package when it is missing and the user is root; a
machine without it fails these tests with that instruction rather than skipping them.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, sync_playwright

# What a headless Chromium needs on a machine with a closed network: no sandbox as root, and
# none of the background connections (updates, sync) that would be refused one by one.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """One Chromium for the browser tests, stopped when they are done: Playwright's sync API
    keeps an event loop running until then, and the tests after them call asyncio.run()."""
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("Debian's chromium is missing: run `make setup` as root, or apt-get install it")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def browser_context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh profile (no cookies, no storage) for one test."""
    context = browser.new_context()
    yield context
    context.close()
