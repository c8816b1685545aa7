"""The soak's end-of-run checks (soak/checks.py) on made-up inputs: each must be able to fail."""

from __future__ import annotations

import base64
from pathlib import Path

from soak.checks import duplicate_emails, leaked_secrets, memory
from soak.world import EWS_ACCOUNT, SMTP_PASSWORD, Mail

BODY = (
    "calsync gave up\r\n\r\n== HttpUnavailable: Exchange answered HTTP 503. (1) ==\r\n"
    "* user0005@example.com <user0005@example.com> (operator 5)\r\n  Code:      HttpUnavailable\r\n"
    "  Problem:   Exchange answered HTTP 503.\r\n  Since:     2026-12-02 14:27 UTC\r\n"
)


def mail(body: str = BODY) -> Mail:
    return Mail("calsync: calendar sync failed for user0005@example.com (HttpUnavailable)", ["ops@x"], body, 0.0)


def test_one_email_per_episode_passes_and_a_second_fails() -> None:
    once = duplicate_emails([mail()])
    assert once["ok"] and once["episodes_notified"] == 1
    twice = duplicate_emails([mail(), mail()])
    assert not twice["ok"] and list(twice["sent_twice"].values()) == [2]
    later = duplicate_emails([mail(), mail(BODY.replace("14:27", "14:58"))])  # a new episode of the same operator
    assert later["ok"] and later["episodes_notified"] == 2


def test_every_form_of_a_secret_is_found(tmp_path: Path) -> None:
    clean = tmp_path / "clean.log"
    clean.write_text("Authorization: Basic ***\n")
    header = tmp_path / "header.log"
    header.write_text(
        "Authorization: Basic " + base64.b64encode(f"{EWS_ACCOUNT[0]}:{EWS_ACCOUNT[1]}".encode()).decode()
    )
    smtp = tmp_path / "smtp.log"
    smtp.write_text(f"smtp://soak-mailer:{SMTP_PASSWORD.replace('!', '%21')}@host")
    found = leaked_secrets([clean, header, smtp])
    assert "clean.log" not in found
    assert "EWS Basic header (base64 user:password)" in found["header.log"]
    assert "SMTP password (URL-encoded)" in found["smtp.log"]


def _samples(rss: list[float], pid: int = 10) -> list[dict[str, object]]:
    return [{"t": float(i * 2), "rss": {"w1": (pid, v)}} for i, v in enumerate(rss)]


def test_memory_flat_passes_and_growth_fails() -> None:
    assert memory(_samples([100.0] * 50 + [104.0] * 50), warm_from=0.0, measured="w1")["ok"]
    grown = memory(_samples([100.0] * 50 + [115.0] * 50), warm_from=0.0, measured="w1")
    assert not grown["ok"] and grown["growth"] > 0.1
    # Before warm-up does not count.
    assert memory(_samples([50.0] * 50 + [100.0] * 50), warm_from=100.0, measured="w1")["ok"]
    assert not memory([], warm_from=0.0, measured="w1")["ok"]


def test_a_restarted_worker_is_measured_after_its_own_warm_up() -> None:
    # pid 10 lives 100 s; pid 11 starts at 100 s, climbs for 40 s (its start-up), then grows 3%.
    samples = _samples([100.0] * 50) + [
        {"t": 100.0 + 2 * i, "rss": {"w1": (11, min(60.0 + 2 * i, 100.0) + (3.0 if i > 150 else 0.0))}}
        for i in range(300)
    ]
    mem = memory(samples, warm_from=50.0, measured="w1")
    assert mem["ok"] and mem["pid"] == 11 and mem["warm_from_s"] == 150.0, mem
    assert [p["pid"] for p in mem["processes"]] == [10, 11]
    # Measured from the run's warm-up instead, its start-up would look like 60% growth.
    assert not memory(samples, warm_from=50.0, measured="w1", own_warm_up=False)["ok"]
