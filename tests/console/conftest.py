"""Fixtures for the console's browser tests: a real `calsync console serve` and real headless Chromium.

The console runs as its own process against the test database and Redis; Chromium is
Debian's, driven by Selenium through Debian's chromedriver (`make test` installs both).
Screenshots of every page go to tests/console/artifacts/ (not committed).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from calsync.console.auth import hash_password
from tests.conftest import CALSYNC

HERE = Path(__file__).resolve().parent
ARTIFACTS = HERE / "artifacts"
AXE = HERE / ".vendor" / "axe.min.js"
ADMIN, PASSWORD = "admin", "correct horse battery"
# Planted in the console's environment: no page may ever show them.
EWS_PASSWORD = "Simulat0r!"
SMTP_PASSWORD = "smtp-s3cret-Pw"


def _tool(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


CHROMIUM = _tool("chromium", "chromium-browser")
CHROMEDRIVER = _tool("chromedriver")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Console:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path


@pytest.fixture(scope="session")
def console(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    port = free_port()
    log = tmp_path_factory.mktemp("console") / "console.log"
    env = {
        **os.environ,
        "CALSYNC_CONSOLE_ADMINS": f"{ADMIN}:{hash_password(PASSWORD)}",
        "CALSYNC_CONSOLE_SECRET_KEY": secrets.token_hex(32),
        "CALSYNC_EWS_USERNAME": "svc-calsync",
        "CALSYNC_EWS_PASSWORD": EWS_PASSWORD,
        "CALSYNC_SMTP_URL": f"smtp://calsync:{SMTP_PASSWORD}@127.0.0.1:2525",
    }
    with log.open("wb") as out:
        proc = subprocess.Popen([CALSYNC, "console", "serve", "--port", str(port)], env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(url + "/healthz", timeout=1).ok:
                break
        except requests.ConnectionError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("console did not start:\n" + log.read_text())
        time.sleep(0.1)
    yield Console(url, proc, log)
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("chromium and chromedriver are not installed: `make test` installs them (apt-get)")
    if not AXE.is_file():
        pytest.skip("axe-core is not fetched: run `make console-assets`")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000",
                "--disable-gpu", "--no-first-run", "--disable-extensions"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


@pytest.fixture
def clean(db: psycopg.Connection[Any], clean_redis: Any) -> psycopg.Connection[Any]:
    """Empty calsync tables (and the audit trail) for each test."""
    db.execute("TRUNCATE console_audit, failure_episodes, global_pause")
    return db


class Page:
    """The browser on the console, with the few moves the tests repeat."""

    def __init__(self, driver: Any, console: Console) -> None:
        self.driver, self.console = driver, console

    def go(self, path: str) -> None:
        self.driver.get(self.console.url + path)

    def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return list(self.driver.find_elements(By.CSS_SELECTOR, css))

    def text(self) -> str:
        return str(self.find("body").text)

    def fill(self, css: str, value: str) -> None:
        element = self.find(css)
        element.clear()
        element.send_keys(value)

    def click(self, css: str) -> None:
        self.find(css).click()

    def submit(self, css: str) -> None:
        """Click something that loads a new page, and wait until the new page has replaced the old."""
        old = self.find("html")
        self.find(css).click()
        wait_until(lambda: self._stale(old), what=f"the page after clicking {css}")
        wait_until(lambda: self.driver.execute_script("return document.readyState") == "complete", what="load")

    @staticmethod
    def _stale(element: Any) -> bool:
        from selenium.common.exceptions import WebDriverException

        try:
            element.is_enabled()
            return False
        except WebDriverException:  # stale, or Chrome's "Node ... does not belong to the document"
            return True

    def login(self, name: str = ADMIN, password: str = PASSWORD, expect: bool = True) -> None:
        self.driver.delete_all_cookies()
        self.go("/login")
        self.fill("#username", name)
        self.fill("#password", password)
        self.submit("#login")
        if expect:
            assert "Signed in as" in self.text(), self.text()

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        import base64

        shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def axe(self) -> list[dict[str, Any]]:
        """axe-core's violations on this page (WCAG 2 A and AA rules, best practices included)."""
        self.driver.execute_script(AXE.read_text())
        result = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa',"
            " 'best-practice']}}).then(r => done(r.violations.map(v => ({id: v.id, help: v.help,"
            " nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)})))).catch(e => done([{id: 'axe-error',"
            " help: String(e), nodes: []}]));"
        )
        return list(result)

    def session_cookie(self) -> dict[str, str]:
        return {c["name"]: c["value"] for c in self.driver.get_cookies()}


@pytest.fixture
def page(browser: Any, console: Console, clean: psycopg.Connection[Any]) -> Page:
    browser.set_script_timeout(30)
    return Page(browser, console)


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
