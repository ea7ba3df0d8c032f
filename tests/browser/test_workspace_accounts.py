"""People signing in to the workspace in Chromium, against the gateway as a process: with a
password, and by single sign-on through a real OpenID provider; each sees their project, and
signing out ends the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page

from sextant.gateway.passwords import hash_password
from sextant.schemas.config import Account, Role
from tests.browser.stack import Stack, project_documents, running_stack
from tests.infra import free_port
from tests.integration.accounts_support import PASSWORD, SECRET_KEY
from tests.oidc_provider import CLIENT_ID, CLIENT_SECRET, oidc_provider

ADA = Account(
    id="ada",
    email="ada@example.com",
    display_name="Ada",
    password_hash=hash_password(PASSWORD),
    roles={"web": Role.EDITOR},
)
GRACE = Account(
    id="grace", email="grace@corp.example", display_name="Grace", roles={"web": Role.VIEWER}
)
PROVIDER_PORT = free_port()


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("accounts")
    settings = {
        "SEXTANT_SECRET_KEY": SECRET_KEY,
        "SEXTANT_OIDC_ISSUER": f"http://127.0.0.1:{PROVIDER_PORT}",
        "SEXTANT_OIDC_CLIENT_ID": CLIENT_ID,
        "SEXTANT_OIDC_CLIENT_SECRET": CLIENT_SECRET,
    }
    documents = project_documents(ADA, GRACE)
    with running_stack(kafka_bootstrap, folder, documents, settings=settings) as running:
        people: dict[str, dict[str, object]] = {
            GRACE.email: {"name": "Grace", "email_verified": True}
        }
        callback = f"{running.gateway}/v1/auth/sso/callback"
        with oidc_provider(PROVIDER_PORT, callback, people, folder / "provider.log"):
            yield running


@pytest.fixture
def tab(browser: Browser) -> Iterator[Page]:
    """A fresh profile's tab; it must log no error."""
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    page.bring_to_front()
    errors: list[str] = []
    page.on("console", lambda m: _record(m, errors))
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    context.close()
    assert errors == [], errors


def _record(message: ConsoleMessage, errors: list[str]) -> None:
    if message.type == "error":
        errors.append(message.text)


def _sees_the_project(tab: Page) -> None:
    tab.wait_for_selector("nav.nav a[data-page=outcomes]", timeout=30_000)
    tab.wait_for_function(
        "() => document.querySelector('header .project')?.textContent === 'Web shop'",
        timeout=30_000,
    )


def test_a_person_signs_in_with_a_password_sees_the_project_and_signs_out(
    tab: Page, stack: Stack
) -> None:
    tab.goto(f"{stack.gateway}/")
    tab.wait_for_selector("#account-signin")
    tab.fill("#email", "ada@example.com")
    tab.fill("#password", PASSWORD)
    tab.click("#account-signin button[type=submit]")
    _sees_the_project(tab)
    # An editor may acknowledge and mute alerts; the admin view is not theirs.
    assert tab.locator("nav.nav a[data-page=admin]").count() == 0
    # The session lives in an HttpOnly cookie, out of the page's reach.
    assert "sextant_session" not in tab.evaluate("() => document.cookie")
    tab.reload()
    _sees_the_project(tab)

    tab.click("button.signout")
    tab.wait_for_selector("#account-signin")
    tab.reload()
    tab.wait_for_selector("#account-signin")
    assert tab.locator("nav.nav").count() == 0, "signed out stays signed out"


def test_a_person_signs_in_through_the_single_sign_on_provider(tab: Page, stack: Stack) -> None:
    tab.goto(f"{stack.gateway}/")
    tab.wait_for_selector("#sso-signin:visible")
    tab.click("#sso-signin")
    tab.wait_for_selector("#email")  # the provider's own page
    assert tab.url.startswith(f"http://127.0.0.1:{PROVIDER_PORT}/")
    tab.fill("#email", GRACE.email)
    tab.click("button[type=submit]")
    _sees_the_project(tab)
    assert tab.url.startswith(stack.gateway)
