"""Browser fixtures: one headless Chromium per session (Debian's; none can be downloaded
here) and a fresh context per test, on the live server of tests/conftest.py.

Without Chromium every browser test is skipped with the reason (`scripts/ensure-chromium`
installs it; $CHROMIUM_PATH picks another one).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.browser.helpers import (
    CHROMIUM_ARGS,
    TIMEOUT_MS,
    AxeAudit,
    PageProblems,
    chromium_path,
    log_in,
    make_admin,
)
from tests.browser.validity import HtmlChecker, VisitedDocuments
from tests.support.live import LiveServer


def _browser_env() -> dict[str, str]:
    """Chromium's environment: this one, without libfaketime (scripts/test-at-hours moves
    the clock of the test processes; Chromium's network service crashes under it). The
    browser's own clock is not what the tests check: the app's is."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("FAKETIME")}
    preload = [lib for lib in env.pop("LD_PRELOAD", "").split(":") if lib and "faketime" not in lib]
    if preload:
        env["LD_PRELOAD"] = ":".join(preload)
    return env


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    executable, why_not = chromium_path()
    if executable is None:
        pytest.skip(why_not)
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS, env=_browser_env()
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def html_checker(browser: Any) -> Iterator[HtmlChecker]:
    """The Nu Html Checker, started once (in the background) for the session."""
    checker = HtmlChecker()
    try:
        yield checker
    finally:
        checker.stop()


@pytest.fixture
def new_context(
    browser: Any, live_server: LiveServer, html_checker: HtmlChecker
) -> Iterator[Callable[..., Any]]:
    """Make browser contexts on the live server; all are closed after the test.

    Contexts keep the app's Content-Security-Policy unless bypass_csp=True is passed
    (axe-core is injected as an inline script, which the policy rightly refuses).

    Every HTML document the contexts receive from the app (pages, error pages, frames)
    is checked by the Nu Html Checker after the test: the test fails on invalid HTML,
    duplicate ids or a label that names no control.
    """
    contexts: list[Any] = []
    visited = VisitedDocuments(live_server.url)

    def factory(**options: Any) -> Any:
        options.setdefault("base_url", live_server.url)
        options.setdefault("locale", "da-DK")
        context = browser.new_context(**options)
        context.set_default_timeout(TIMEOUT_MS)
        context.set_default_navigation_timeout(TIMEOUT_MS)
        visited.watch(context)
        contexts.append(context)
        return context

    yield factory
    for context in contexts:
        context.close()
    problems = visited.problems(html_checker)
    assert not problems, "invalid HTML (Nu Html Checker):\n" + "\n".join(problems)


@pytest.fixture
def page(new_context: Callable[..., Any]) -> Iterator[Any]:
    """A page in a fresh context under the app's real CSP. The test fails if the browser
    saw a console error, an uncaught exception or a sub-resource that did not load."""
    page = new_context().new_page()
    problems = PageProblems(page)
    yield page
    problems.assert_none()


@pytest.fixture
def axe_page(new_context: Callable[..., Any]) -> Any:
    """A page whose context bypasses the CSP, so that axe-core can be injected."""
    return new_context(bypass_csp=True).new_page()


@pytest.fixture
def axe() -> AxeAudit:
    return AxeAudit()


@pytest.fixture
def sign_in_admin(live_server: LiveServer) -> Callable[[Any], Any]:
    """Sign an administrator in on a page (`page` or `axe_page`) through the login form:
    helpers.ADMIN, made here with two factors as administrators must have them. The page
    is left on the staff dashboard; the function returns it."""

    def sign_in(page: Any) -> Any:
        make_admin(live_server)
        page.goto("/staff/")
        log_in(page)
        return page

    return sign_in
