"""The systemd unit examples (docker/systemd/) restart what they run, and systemd accepts them.

Beat exits on purpose when another beat took its lock, and a worker can die with kombu's
"Unrecoverable error" when the broker connection drops; the supervisor is what starts them
again, so every long-lived unit must say Restart=always.
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "docker" / "systemd"


def service(name: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS / name)
    return parser["Service"]


@pytest.mark.parametrize(("unit", "role"), [("calsync-beat.service", "beat"), ("calsync-worker@.service", "worker")])
def test_every_long_lived_unit_restarts_what_it_runs(unit: str, role: str) -> None:
    svc = service(unit)
    assert svc["Restart"] == "always"
    argv = svc["ExecStart"].split()
    assert Path(argv[0]).name == "celery" and argv[1:4] == ["-A", "calsync", role]
    assert svc["EnvironmentFile"] == "/etc/calsync/calsync.env"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize("unit", ["calsync-beat.service", "calsync-worker@.service"])
def test_systemd_accepts_the_units(unit: str, tmp_path: Path) -> None:
    path = UNITS / unit
    if unit.endswith("@.service"):  # a template is verified through an instance of it
        path = tmp_path / unit.replace("@.", "@1.")
        path.write_text((UNITS / unit).read_text())
    result = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True, check=False)
    # The one complaint allowed on a build machine: calsync is not installed under /opt.
    problems = [line for line in result.stderr.splitlines() if line and "is not executable" not in line]
    assert problems == [], problems
