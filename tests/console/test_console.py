"""Issue 18: the admin console, clicked through in real headless Chromium.

Every state change is checked where it lands (Postgres, `calsync settings show`, the next
dispatcher tick, a real sync batch against the simulator), not on the page alone.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests

from calsync import runtime
from calsync.config import env
from calsync.notify.catalogue import lookup
from calsync.simulator import SimulatorServer, generate, mailbox_email
from calsync.store import lifecycle
from calsync.store import operators as operator_store
from calsync.store import pause as pause_store
from calsync.store import settings as settings_store
from calsync.store.db import transaction
from tests.conftest import CALSYNC

from .conftest import ADMIN, EWS_PASSWORD, SMTP_PASSWORD, Page, wait_until

SECRETS = (EWS_PASSWORD, SMTP_PASSWORD)


def add(email: str, sync: bool = True, name: str = "") -> int:
    """Operators for a test's setup, through the CLI's own store function."""
    with transaction() as conn:
        return operator_store.add(conn, email, name or email.split("@")[0], sync).id


def settings_show() -> dict[str, Any]:
    proc = subprocess.run([CALSYNC, "settings", "show", "--json"], capture_output=True, text=True, env=os.environ)
    assert proc.returncode == 0, proc.stderr
    return {k: v["value"] for k, v in json.loads(proc.stdout)["settings"].items()}


def no_secret(page: Page) -> None:
    source = page.driver.page_source
    for secret in SECRETS:
        assert secret not in source, f"a secret is rendered on {page.driver.current_url}"


def test_login_refused_with_a_wrong_password_then_accepted(page: Page) -> None:
    page.go("/operators")
    assert page.driver.current_url.startswith(page.console.url + "/login"), "pages need a login"
    page.login(password="not the password", expect=False)
    assert "Wrong user name or password." in page.find("#login-error").text
    assert "/login" in page.driver.current_url
    page.shot("login-refused")
    assert page.session_cookie().get("calsync_console"), "a session cookie for the CSRF token"
    page.login()
    wait_until(lambda: page.driver.current_url == page.console.url + "/", what="the overview after login")
    assert f"Signed in as {ADMIN}" in page.text()
    cookie = next(c for c in page.driver.get_cookies() if c["name"] == "calsync_console")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Lax"
    # A login from another site's page (no session, no token) is refused like any other POST.
    bad = requests.post(page.console.url + "/login", data={"username": ADMIN, "password": "x"}, timeout=10)
    assert bad.status_code == 403


def test_settings_batch_size_zero_is_refused_beside_the_field_and_nothing_is_saved(page: Page) -> None:
    page.login()
    page.go("/settings")
    page.fill("#f-batch_size", "0")
    page.fill("#f-poll_interval_minutes", "7")  # a valid change in the same form: not saved either
    page.submit("#save-settings")
    error = page.find("#err-batch_size")
    assert "batch_size: '0' is not allowed; an integer from 1 to 512" in error.text
    # beside the field: inside the same field block as the input
    assert error.find_element("xpath", "..").get_attribute("class") == "field invalid"
    assert page.find("#f-batch_size").get_attribute("aria-invalid") == "true"
    assert "nothing was saved" in page.find("#settings-errors").text
    page.shot("settings-error")
    with transaction() as conn:
        stored = settings_store.load(conn)
    assert (stored.batch_size, stored.poll_interval_minutes) == (512, 5)
    assert page.find("#f-poll_interval_minutes").get_attribute("value") == "7", "the form keeps what was typed"
    no_secret(page)

    page.fill("#f-batch_size", "100")
    page.submit("#save-settings")
    assert "Saved: batch_size, poll_interval_minutes" in page.text()
    shown = settings_show()
    assert (shown["batch_size"], shown["poll_interval_minutes"]) == (100, 7.0)
    page.shot("settings")
    with transaction() as conn:
        rows = conn.execute("SELECT actor, action, target, detail FROM console_audit ORDER BY id").fetchall()
    assert [(r["actor"], r["action"], r["target"]) for r in rows] == [
        (ADMIN, "settings.set", "batch_size"),
        (ADMIN, "settings.set", "poll_interval_minutes"),
    ]
    assert rows[0]["detail"] == {"old": 512, "new": 100}


CSV_TWO_BAD = (
    "email,name,calendar_sync\n"
    "ann@example.com,Ann,true\n"
    "not-an-address,Bob,true\n"
    "cid@example.com,Cid,false\n"
    "dee@example.com,Dee,perhaps\n"
    "eve@example.com,Eve,yes\n"
)


def test_import_with_two_bad_rows_preview_names_them_then_skip(page: Page, tmp_path: Path) -> None:
    add("eve@example.com", sync=False, name="Eve")
    csv_file = tmp_path / "operators.csv"
    csv_file.write_text(CSV_TWO_BAD)
    page.login()
    page.go("/operators/import")
    page.find("#csv-file").send_keys(str(csv_file))
    page.submit("#preview")
    summary = page.find("#dry-run-summary").text
    assert "Dry run, nothing written: 2 new, 1 updated, 0 unchanged, 2 bad row(s)" in summary
    bad = page.find("#bad-rows").text
    assert "line 3" in bad and "bad email 'not-an-address'" in bad
    assert "line 5" in bad and "bad calendar_sync value 'perhaps'" in bad
    assert "line 2" not in bad and "line 4" not in bad
    page.shot("import-preview")

    def emails() -> list[tuple[str, bool]]:
        with transaction() as conn:
            rows = conn.execute("SELECT email, calendar_sync FROM operators ORDER BY email").fetchall()
        return [(r["email"], r["calendar_sync"]) for r in rows]

    assert emails() == [("eve@example.com", False)], "the preview wrote nothing"
    page.submit("#confirm-import")  # all or nothing (the default): refused
    assert "2 bad row(s), nothing imported" in page.find("#import-error").text
    assert emails() == [("eve@example.com", False)]

    page.find("#csv-file").send_keys(str(csv_file))
    page.submit("#preview")
    page.click("#mode-skip")
    page.submit("#confirm-import")
    assert "Imported operators.csv: 2 new, 1 updated, 0 unchanged, 2 bad row(s) skipped (line 3, 5)" in page.text()
    assert emails() == [("ann@example.com", True), ("cid@example.com", False), ("eve@example.com", True)]


def test_toggle_off_and_the_next_dispatcher_tick_skips_it(page: Page) -> None:
    ids = {e: add(e) for e in ("a1@example.com", "a2@example.com", "a3@example.com")}
    page.login()
    page.go("/operators?q=a2%40")
    toggle = page.find(f"#toggle-{ids['a2@example.com']}")
    assert toggle.get_attribute("aria-pressed") == "true"
    page.submit(f"#toggle-{ids['a2@example.com']}")
    assert "Calendar Sync off for a2@example.com." in page.text()
    assert page.find(f"#toggle-{ids['a2@example.com']}").get_attribute("aria-pressed") == "false"
    page.shot("operators")

    from calsync.tasks.dispatch import dispatch_tick

    result = dispatch_tick(slot=dt.datetime.now(dt.UTC).isoformat())  # the task's own code, in this process
    assert result["dispatched"] == 2, result
    with transaction() as conn:
        rows = conn.execute(
            "SELECT o.email, s.in_flight, s.lease_token, s.status FROM operators o "
            "JOIN sync_state s ON s.operator_id = o.id ORDER BY o.email"
        ).fetchall()
    claimed = {r["email"]: (r["in_flight"], r["lease_token"] is not None, r["status"]) for r in rows}
    assert claimed == {
        "a1@example.com": (True, True, "not_synced"),
        "a2@example.com": (False, False, "disabled"),
        "a3@example.com": (True, True, "not_synced"),
    }

    # The selection: switch two on/off at once.
    page.go("/operators")
    page.click(f"#sel-{ids['a1@example.com']}")
    page.click(f"#sel-{ids['a2@example.com']}")
    page.submit("#bulk-enable")
    assert "Enabled 1 operator(s); 1 already enabled." in page.text()
    with transaction() as conn:
        flags = {r["email"]: r["calendar_sync"] for r in conn.execute("SELECT email, calendar_sync FROM operators")}
    assert flags == {"a1@example.com": True, "a2@example.com": True, "a3@example.com": True}

    # Add one, with the CLI's checks: a bad address and a duplicate are refused beside the field.
    page.fill("#add-email", "no-at-sign")
    page.submit("#add-operator")
    assert "'no-at-sign' is not an email address like name@example.com" in page.find("#add-email-err").text
    page.fill("#add-email", "A1@example.com")
    page.submit("#add-operator")
    assert "already exists as a1@example.com" in page.find("#add-email-err").text
    page.fill("#add-email", "new@example.com")
    page.fill("#add-name", "New One")
    page.submit("#add-operator")
    assert "Added new@example.com (Calendar Sync on)." in page.text()
    # ... and change its address: a different mailbox.
    page.fill("#edit-email", "newer@example.com")
    page.submit("#save-operator")
    assert "Saved newer@example.com." in page.text()
    with transaction() as conn:
        row = conn.execute(
            "SELECT o.display_name, s.status FROM operators o JOIN sync_state s ON s.operator_id = o.id "
            "WHERE o.email = 'newer@example.com'"
        ).fetchone()
        audit = [
            (r["action"], r["target"]) for r in conn.execute("SELECT action, target FROM console_audit ORDER BY id")
        ]
    assert row is not None and (row["display_name"], row["status"]) == ("New One", "not_synced")
    assert audit == [
        ("operators.disable", "a2@example.com"),
        ("operators.enable", "2 operators"),
        ("operators.add", "new@example.com"),
        ("operators.update", "new@example.com"),
    ]


@pytest.fixture
def service_account(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The simulator's service account for batches run in this process, as a worker has it."""
    monkeypatch.setenv("CALSYNC_EWS_USERNAME", "svc-calsync")
    monkeypatch.setenv("CALSYNC_EWS_PASSWORD", EWS_PASSWORD)
    env.cache_clear()
    runtime.reset_process_state()
    yield
    env.cache_clear()
    runtime.reset_process_state()


def run_tick() -> dict[int, str]:
    """Claim the due operators (the dispatcher's statement) and run each chain's batches to the end."""
    from calsync.tasks.sync import sync_once

    with transaction() as conn:
        claims = lifecycle.claim_due(conn, slack_seconds=30, lease_seconds=300, limit=1000)
    outcomes = {}
    for claim in claims:
        token: int | None = claim.token
        for _ in range(100):
            step = sync_once(claim.operator_id, token, "console-test")
            if step.next_token is None:
                break
            token = step.next_token
        outcomes[claim.operator_id] = step.outcome
    return outcomes


def test_simulator_fault_shows_the_fix_on_the_operator_page(page: Page, service_account: Any) -> None:
    sim = generate(2, 15, seed=7)
    with SimulatorServer(sim) as server:
        with transaction() as conn:
            settings_store.set_value(conn, "exchange_url", server.ews_url)
        runtime.reset_process_state()
        good, broken = add(mailbox_email(1)), add(mailbox_email(2))
        sim.set_impersonation_denied(mailbox_email(2), True)
        outcomes = run_tick()
    assert outcomes == {good: "done", broken: "failed"}, outcomes
    entry = lookup("ErrorImpersonateUserDenied")

    page.login()
    page.go(f"/operators/{broken}")
    assert page.find("#op-status").text == "failed"
    assert page.find("#failure-fix").text == entry.fix
    assert page.find("#failure-message").text == entry.message
    assert page.find("#failure-cause").text == entry.cause
    page.shot("operator-failure")

    page.go("/")
    link = page.find("a[href='/operators?code=ErrorImpersonateUserDenied']")
    assert "1 affected operator(s)" in link.text
    no_secret(page)
    page.shot("overview")
    page.submit("a[href='/operators?code=ErrorImpersonateUserDenied']")
    listed = [a.text for a in page.all("table.operators tbody td:nth-child(2) a")]
    assert listed == [mailbox_email(2)]

    page.go(f"/operators/{good}")
    assert "None: the last sync succeeded" in page.text()
    assert "succeeded" in page.find("section[aria-labelledby='runs-h'] table").text
    page.submit("#sync-now")
    assert f"{mailbox_email(1)} is due now" in page.text()
    page.shot("operator")
    with transaction() as conn:
        audit = [r["action"] for r in conn.execute("SELECT action FROM console_audit ORDER BY id")]
        mirrored = conn.execute("SELECT count(*) AS n FROM appointments WHERE operator_id = %s", (good,)).fetchone()
    assert audit == ["operators.sync_now"]
    assert mirrored is not None and mirrored["n"] > 0

    # Disable with purge, after a confirmation page.
    page.submit("#disable-link")
    assert f"Disable Calendar Sync for {mailbox_email(1)}?" in page.text()
    page.shot("disable-confirm-purge")
    page.click("#purge")
    page.submit("#confirm-disable")
    assert f"Calendar Sync off for {mailbox_email(1)}. Purged {mirrored['n']} appointment(s)" in page.text()
    with transaction() as conn:
        left = conn.execute("SELECT count(*) AS n FROM appointments WHERE operator_id = %s", (good,)).fetchone()
        state = conn.execute("SELECT status, stage FROM sync_state WHERE operator_id = %s", (good,)).fetchone()
        last = conn.execute("SELECT action, detail FROM console_audit ORDER BY id DESC LIMIT 1").fetchone()
    assert left is not None and left["n"] == 0
    assert state is not None and (state["status"], state["stage"]) == ("disabled", "initial")
    assert last is not None and last["action"] == "operators.disable" and last["detail"]["purge"] is True


def test_state_changing_post_without_csrf_token_is_refused(page: Page) -> None:
    op = add("csrf@example.com")
    page.login()
    page.go("/operators")
    cookies = page.session_cookie()
    url = f"{page.console.url}/operators/{op}/calendar-sync"
    no_token = requests.post(url, data={"calendar_sync": "off"}, cookies=cookies, timeout=10, allow_redirects=False)
    assert no_token.status_code == 403 and "CSRF" in no_token.text
    wrong = requests.post(
        url, data={"calendar_sync": "off", "csrf_token": "forged"}, cookies=cookies, timeout=10, allow_redirects=False
    )
    assert wrong.status_code == 403
    anonymous = requests.post(url, data={"calendar_sync": "off"}, timeout=10, allow_redirects=False)
    assert anonymous.status_code == 401
    with transaction() as conn:
        row = conn.execute("SELECT calendar_sync FROM operators WHERE id = %s", (op,)).fetchone()
        audit = conn.execute("SELECT count(*) AS n FROM console_audit").fetchone()
    assert row is not None and row["calendar_sync"] is True
    assert audit is not None and audit["n"] == 0
    # The same request with the page's token goes through: the refusal was the token's.
    token = page.find("input[name=csrf_token]").get_attribute("value")
    ok = requests.post(
        url, data={"calendar_sync": "off", "csrf_token": token}, cookies=cookies, timeout=10, allow_redirects=False
    )
    assert ok.status_code == 303


def test_every_page_passes_axe_and_works_by_keyboard(page: Page, tmp_path: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    op = add("kb@example.com")
    with transaction() as conn:  # a little history for the charts
        conn.execute(
            "INSERT INTO sync_runs (operator_id, stage, status, started_at, finished_at, created, updated) "
            "SELECT %s, 'incremental', 'succeeded', now() - make_interval(hours => h), now(), h, 1 "
            "FROM generate_series(0, 20, 3) AS h",
            (op,),
        )

    # Log in with the keyboard alone.
    page.driver.delete_all_cookies()
    page.go("/login")
    # The checker can fail: an input without a label is reported.
    page.driver.execute_script("document.querySelector('main').insertAdjacentHTML('beforeend', '<input id=bare>')")
    assert "label" in [v["id"] for v in page.axe()]
    page.go("/login")
    assert page.axe() == [], "login page"
    page.shot("page-login")
    keys = ActionChains(page.driver)
    active = lambda: page.driver.switch_to.active_element.get_attribute("id")  # noqa: E731
    page.driver.execute_script("document.activeElement.blur()")
    for _ in range(6):
        if active() == "username":
            break
        keys.send_keys(Keys.TAB).perform()
    assert active() == "username"
    ActionChains(page.driver).send_keys(ADMIN, Keys.TAB).perform()
    assert active() == "password"
    from .conftest import PASSWORD

    ActionChains(page.driver).send_keys(PASSWORD, Keys.ENTER).perform()
    wait_until(lambda: page.driver.current_url == page.console.url + "/", what="login by keyboard")

    # Switch Calendar Sync off with Tab and Enter on the operators page.
    page.go("/operators")
    target = f"toggle-{op}"
    for _ in range(40):
        if active() == target:
            break
        ActionChains(page.driver).send_keys(Keys.TAB).perform()
    assert active() == target, "the Calendar Sync switch is reachable by Tab"
    ActionChains(page.driver).send_keys(Keys.ENTER).perform()
    wait_until(lambda: "Calendar Sync off for kb@example.com." in page.text(), what="toggle by keyboard")
    with transaction() as conn:
        row = conn.execute("SELECT calendar_sync FROM operators WHERE id = %s", (op,)).fetchone()
    assert row is not None and row["calendar_sync"] is False

    # The global pause, with its reason and fix, on the overview.
    with transaction() as conn:
        pause_store.trip(conn, "Unauthorized", "401 from Exchange", poll_interval_minutes=5)
    page.go("/")
    pause = page.find("section[aria-labelledby='pause-h']").text
    assert "Syncing is paused for everyone" in pause and "Unauthorized" in pause
    assert lookup("Unauthorized").fix in pause
    assert page.axe() == [], "overview while paused"
    page.shot("page-overview-paused")
    with transaction() as conn:
        pause_store.clear(conn)

    csv_file = tmp_path / "ops.csv"
    csv_file.write_text(CSV_TWO_BAD)
    pages = {
        "overview": "/",
        "operators-list": "/operators",
        "operator-detail": f"/operators/{op}",
        "disable-confirm": f"/operators/{op}/disable",
        "settings": "/settings",
        "history-24h": "/history",
        "history-7d": "/history?range=7d",
        "import": "/operators/import",
    }
    for name, path in pages.items():
        page.go(path)
        assert page.axe() == [], name
        no_secret(page)
        if name.startswith("history"):
            drawn = page.driver.execute_script(
                "return ['chart-syncs','chart-changes','chart-failures'].map(id => !!Chart.getChart(id))"
            )
            assert drawn == [True, True, True], "chart.js drew the three charts"
            assert "7 syncs" in page.text() or name == "history-7d"
        page.shot(f"page-{name}")
    page.go("/operators/import")
    page.find("#csv-file").send_keys(str(csv_file))
    page.submit("#preview")
    assert page.axe() == [], "import preview"
    page.go("/settings")
    page.fill("#f-batch_size", "0")
    page.submit("#save-settings")
    assert page.axe() == [], "settings with an error"
