"""What a person sees, in a real headless Chromium (Debian's package) driven by Playwright.

Staff log in, search, open the chart and pin a story; then the widget, on another origin, shows
the pinned story first; a hostile headline stays text everywhere. Screenshots go to
test-artifacts/.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from datasette_auth_passwords.utils import hash_password

from tests import server as srv
from tests.test_schedule import free_port, wait_for
from tests.test_serve import HOSTILE, fill

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parents[1] / "test-artifacts"
WEB = Path(__file__).parents[1] / "web"
MONITOR = str(Path(sys.executable).parent / "monitor")

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="needs Debian's chromium (make test installs it as root)"
)


@pytest.fixture
def monitor_url(db_path) -> Iterator[str]:
    fill(db_path)
    port = free_port()
    env = {**os.environ, "MONITOR_PASSWORD_HASH_ALICE": hash_password("correct horse"),
           "MONITOR_SECRET": "browser-test-secret"}  # fmt: skip
    proc = subprocess.Popen(
        [MONITOR, "serve", "--db", str(db_path), "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    import httpx

    def up() -> bool:
        try:
            return httpx.get(url + "/robots.txt", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        yield chromium
        chromium.close()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_staff_pin_a_story_and_the_widget_shows_it_first(browser, monitor_url, server):
    page = browser.new_page()
    # Anonymous visitors see nothing but the public queries.
    assert page.goto(monitor_url + "/coverage/articles").status == 403

    page.goto(monitor_url + "/-/login")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "correct horse")
    page.click("input[type=submit]")
    page.wait_for_load_state()
    shot(page, "1-logged-in")

    page.goto(monitor_url + "/coverage/search?q=asylum+OR+amnesty")
    assert (
        page.locator("table.rows-and-columns").inner_text().count("Asylum seekers held in prison")
        == 1
    )
    # The hostile headline is text in staff pages, never an element.
    assert HOSTILE in page.locator("table.rows-and-columns").inner_text()
    assert page.locator("table.rows-and-columns img").count() == 0
    shot(page, "2-search")

    page.goto(monitor_url + "/-/chart?days=3650")
    assert page.locator("figure#outlets svg").count() == 1
    shot(page, "3-chart")

    page.goto(monitor_url + "/coverage/pin_story?story_id=4")
    page.fill("input[name=hours]", "3")
    page.click("input[type=submit]")
    page.wait_for_load_state()
    assert "Story pinned." in page.content()
    shot(page, "4-pinned")

    # The widget, served from another origin, fetches the public JSON (CORS) and puts the pin first.
    for name in ("breaking-news.html", "breaking-news.js"):
        content_type = "text/html" if name.endswith("html") else "text/javascript"
        server.route(f"/{name}", srv.static((WEB / name).read_bytes(), content_type))
    api = f"{monitor_url}/coverage/latest_headlines.json?_shape=array"
    widget = browser.new_page()
    widget.goto(server.url(f"/breaking-news.html?api={api}"))
    widget.wait_for_selector("[data-state=ok]")
    items = widget.locator(".breaking-news__item")
    assert items.count() == 3
    assert "Tāmaki Makaurau rally for refugees" in items.nth(0).inner_text()
    assert "Pinned" in items.nth(0).inner_text()
    assert "1News" in items.nth(0).inner_text()
    assert widget.locator(".breaking-news__item--pinned").count() == 1
    assert HOSTILE in widget.locator(".breaking-news__list").inner_text()
    assert widget.locator(".breaking-news__list img").count() == 0
    assert widget.locator("time").first.get_attribute("datetime")
    shot(widget, "5-widget")
    # data-limit shortens the list (the editor's "latest 2"), keeping the pin first.
    short = browser.new_page()
    short.goto(server.url(f"/breaking-news.html?limit=2&api={api}"))
    short.wait_for_selector("[data-state=ok]")
    assert short.locator(".breaking-news__item").count() == 2
    assert "Pinned" in short.locator(".breaking-news__item").nth(0).inner_text()


def test_widget_falls_back_quietly_when_the_api_is_down(browser, server):
    for name in ("breaking-news.html", "breaking-news.js"):
        content_type = "text/html" if name.endswith("html") else "text/javascript"
        server.route(f"/{name}", srv.static((WEB / name).read_bytes(), content_type))
    page = browser.new_page()
    page.goto(server.url(f"/breaking-news.html?api=http://127.0.0.1:{free_port()}/down.json"))
    page.wait_for_selector("[data-state=unavailable]")
    assert "unavailable right now" in page.locator(".breaking-news__status").inner_text()
    shot(page, "6-widget-fallback")
