# ruff: noqa: F811  (fixtures imported from test_browser_front)
"""The admin console as an admin uses it: headless Debian chromium driven by Playwright.

The real rvd_back (test:///default) and rvd_front of test_browser_front's ``site``. An admin
changes a running machine's memory on its page, reads that it applies at the next start,
shuts it down and starts it from the page and sees the new memory in libvirt; the machines
list shows a state change made elsewhere without a reload. axe-core (npm, pinned in
tests/axe/package-lock.json) finds no serious or critical violation on the admin pages
and the user's desktops page.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import libvirt
import pytest
from test_browser_front import (  # noqa: F401
    PASSWORD,
    Site,
    _not_an_error_page,
    _shot,
    browser,
    pytestmark,
    site,
)

AXE_DIR = Path(__file__).resolve().parent / "axe"
AXE = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
BAD = ("serious", "critical")


@pytest.fixture(scope="module")
def axe() -> Path:
    """axe-core as locked in tests/axe (``npm ci`` once, from the configured registry)."""
    if not AXE.is_file():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is not installed (apt-get install npm): axe-core is needed")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
                       cwd=AXE_DIR, check=True, capture_output=True, timeout=300)
    return AXE


def _violations(page: Any, axe: Path) -> list[dict[str, Any]]:
    page.add_script_tag(path=str(axe))
    found = page.evaluate("""async () => {
        const r = await axe.run(document, { resultTypes: ["violations"] });
        return r.violations.map(v => ({ id: v.id, impact: v.impact, help: v.help,
                                         nodes: v.nodes.map(n => n.target.join(" ")) }));
    }""")
    return [v for v in found if v["impact"] in BAD]


def _login(page: Any, site: Site, user: str) -> None:
    page.goto(site.url + "/login")
    page.fill("input[name=name]", user)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(site.url + "/")


def test_admin_changes_memory_sees_it_at_next_start_and_live_states(
        site: Site, browser: Any, axe: Path, tmp_path: Path) -> None:
    lab = site.run("create", {"name": "lab1", "disk_gb": 1, "memory_mb": 1024, "vcpus": 1})
    mid = lab["machine_id"]
    site.run("start", machine_id=mid)
    ctx = browser.new_context(viewport={"width": 1200, "height": 900}, bypass_csp=True)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    _login(page, site, "admin")

    # the list: the machine's name leads to its admin page; a change made elsewhere shows
    page.goto(site.url + "/admin/machines")
    row = page.locator(f"tr[data-machine='{mid}']")
    assert row.locator(".state").inner_text() == "running"
    assert not row.locator("button[value='start']").count()  # no start on a running one
    assert _violations(page, axe) == []
    page.wait_for_function("document.querySelector('#machines tbody').dataset.liveFp")
    page.evaluate("window.__same_page = true")
    site.run("hibernate", machine_id=mid)  # another admin, the CLI, an event: not this page
    page.wait_for_selector(f"tr[data-machine='{mid}'] .state-hibernated", timeout=10000)
    assert page.evaluate("window.__same_page") is True  # no reload happened
    row.locator("button[value='start']").click()  # resume it from the list
    page.wait_for_selector(f"tr[data-machine='{mid}'] .state-running", timeout=10000)

    # the machine page: memory up on a running machine waits for the next start
    page.goto(f"{site.url}/admin/machines/{mid}")
    _not_an_error_page(page)
    assert page.locator("#machine-state").inner_text() == "running"
    assert _violations(page, axe) == []
    page.fill("#hw-size input[name=memory_mb]", "2048")
    page.click("#hw-size button[type=submit]")
    page.wait_for_selector("#request-progress:has-text('hardware: done')", timeout=15000)
    assert "at next start: memory_mb" in page.locator("#request-progress").inner_text()
    page.wait_for_selector("#memory-next", timeout=10000)
    assert "applied at next start (runs with 1024 MB now)" in \
        page.locator("#memory-now").inner_text()
    # test:///default is one per process: this connection sees the daemon's domains
    dom = libvirt.open("test:///default").lookupByName("lab1")
    assert dom.info()[1] == 1024 * 1024  # libvirt: the running domain still has 1 GiB
    _shot(page, tmp_path, "admin-machine")

    # shut down (no confirmation asked), then start: the new memory is there
    page.click("#machine-live button[value='shutdown']")
    page.wait_for_selector("#machine-state:has-text('shutdown')", timeout=15000)
    assert not page.locator("#memory-next").count()
    page.click("#machine-live button[value='start']")
    page.wait_for_selector("#machine-state:has-text('running')", timeout=15000)
    assert dom.info()[1] == 2048 * 1024
    assert page.locator("#memory-now").inner_text().strip() == "2048 MB"

    # remove asks for the confirmation box first
    remove = page.locator("#machine-live button[value='remove']")
    remove.click()
    assert page.evaluate("document.querySelector('#machine-live input[name=confirm]')"
                         ".validity.valueMissing") is True
    assert site.machine("lab1").state == "running"

    page.goto(site.url + "/admin/requests?machine=lab1")
    assert page.locator("#requests tbody tr").count() >= 5
    assert _violations(page, axe) == []
    _shot(page, tmp_path, "admin-requests")
    ctx.close()

    user = browser.new_context(viewport={"width": 1100, "height": 720}, bypass_csp=True)
    page = user.new_page()
    _login(page, site, site.user)
    assert page.locator(f"[data-base='{site.base_id}'] .description").inner_text() \
        .startswith("Debian 12 desktop")
    assert _violations(page, axe) == []
    user.close()
    assert not errors, errors
