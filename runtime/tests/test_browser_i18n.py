# ruff: noqa: F811  (fixtures imported from test_browser_front / test_browser_admin)
"""Two languages as people meet them: headless Debian chromium driven by Playwright.

A browser that asks for Spanish gets the login page in Spanish; the login page's picker
switches an English browser; a signed-in user switches to Spanish on the account page and
the next page is Spanish, with ``<html lang="es">``; the choice is the user's (stored), so
another browser gets it after login. axe-core still finds no serious or critical violation
on the Spanish pages (it checks that html lang is a valid language).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select
from test_browser_admin import _login, _violations, axe  # noqa: F401
from test_browser_front import (  # noqa: F401
    Site,
    _not_an_error_page,
    _shot,
    browser,
    pytestmark,
    site,
)

from ravada.db import User


def _stored_locale(site: Site, name: str) -> str | None:
    with site.db.sessionmaker() as s:
        return s.scalar(select(User.locale).where(User.name == name))


def test_user_switches_to_spanish_and_the_next_page_is_spanish(
        site: Site, browser: Any, axe: Path, tmp_path: Path) -> None:
    errors: list[str] = []
    # a browser that asks for Spanish: the login page is Spanish before anyone signs in
    ctx = browser.new_context(locale="es-ES", bypass_csp=True)
    page = ctx.new_page()
    page.goto(site.url + "/login")
    assert page.locator("html").get_attribute("lang") == "es"
    assert page.locator("h1").inner_text() == "Iniciar sesión"
    ctx.close()

    # an English browser: the login page's picker switches it (a cookie, nobody signed in)
    ctx = browser.new_context(locale="en-US", viewport={"width": 1100, "height": 760},
                              bypass_csp=True)
    page = ctx.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(site.url + "/login")
    assert page.locator("h1").inner_text() == "Log in"
    page.select_option("#language-form select[name=lang]", "es")
    page.click("#language-form button[type=submit]")
    page.wait_for_selector("h1:has-text('Iniciar sesión')")
    assert page.locator("html").get_attribute("lang") == "es"
    assert _violations(page, axe) == []
    page.select_option("#language-form select[name=lang]", "en")  # and back
    page.click("#language-form button[type=submit]")
    page.wait_for_selector("h1:has-text('Log in')")
    ctx.close()

    # signed in in English, the account page's picker: the next page is Spanish
    ctx = browser.new_context(locale="en-US", viewport={"width": 1100, "height": 760},
                              bypass_csp=True)
    page = ctx.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    _login(page, site, site.user)
    assert page.locator("h1").first.inner_text() == "Desktops"
    page.click("header nav a[href='/account']")
    _not_an_error_page(page)
    page.select_option("#language-form select[name=lang]", "es")
    page.click("#language-form button[type=submit]")
    page.wait_for_selector("h1:has-text('Cuenta:')")
    assert page.locator("html").get_attribute("lang") == "es"
    assert _stored_locale(site, site.user) == "es"
    page.click("header nav a:has-text('Escritorios')")
    page.wait_for_selector("h1:has-text('Escritorios')")
    card = page.locator(f"[data-base='{site.base_id}']")
    assert card.locator("button[data-start]").inner_text().strip() == "Arrancar"
    assert "Sin usar todavía" in card.inner_text()
    assert page.locator("header button:has-text('Cerrar sesión')").count() == 1
    assert _violations(page, axe) == []
    # the scripts speak Spanish too (their texts come with the page)
    assert page.evaluate("import('/static/i18n.js').then((m) => m.t('Queued…'))") == "En cola…"
    card.locator("button[data-start]").click()  # the first click: clone, start, display page
    page.wait_for_url("**/machine/**", timeout=30000)
    page.wait_for_selector("h2:has-text('Conectar')")
    assert page.locator("html").get_attribute("lang") == "es"
    assert page.locator("button[data-action='shutdown']").inner_text() == "Apagar"
    ctx.close()

    # the choice belongs to the user: an English browser gets Spanish after login
    ctx = browser.new_context(locale="en-US", bypass_csp=True)
    page = ctx.new_page()
    _login(page, site, site.user)
    assert page.locator("h1").first.inner_text() == "Escritorios"
    ctx.close()

    # an admin in Spanish: the machine page (the README's Spanish screenshot)
    ctx = browser.new_context(locale="es-ES", viewport={"width": 1200, "height": 900},
                              bypass_csp=True)
    page = ctx.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    _login(page, site, "admin")
    page.goto(f"{site.url}/admin/machines/{site.base_id}")
    _not_an_error_page(page)
    assert page.locator("#hw-title").inner_text() == "Hardware"
    assert page.locator("#desc-title").inner_text() == "Descripción"
    assert page.locator("#policy-title").inner_text() == "Política de aula"
    assert _violations(page, axe) == []
    _shot(page, tmp_path, "admin-machine-es")
    ctx.close()
    assert not errors, errors
