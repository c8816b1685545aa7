"""The wheel installs `calsync` alone: no generic top-level module (such as `beat` or
`celeryconfig`) may land in site-packages next to other projects' modules.

Builds the real wheel from a copy of the repository (so the build leaves nothing in the work
tree) with `pip wheel`, which takes setuptools>=68 (pyproject's build requirement) from the
configured package index, as `pip install .` does.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SKIP = shutil.ignore_patterns(
    ".venv", ".git", "*_cache", ".hypothesis", "build", "dist", "*.egg-info", "__pycache__", ".demo", "results"
)


def test_wheel_top_level_is_calsync_only(tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=SKIP)
    out = tmp_path / "wheel"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = out.glob("calsync-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/", 1)[0] for name in names}
    dist_info = {t for t in top if t.endswith(".dist-info")}
    assert len(dist_info) == 1
    assert top - dist_info == {"calsync"}, f"unexpected top-level entries: {sorted(top - dist_info - {'calsync'})}"
    # What moved into the package is shipped; what only tests use is not.
    assert "calsync/celeryconfig.py" in names and "calsync/schedule.py" in names
    assert "calsync/simulator/ews/endpoint.py" in names
    assert not any(n.startswith(("testkit/", "tests/", "bench/")) for n in names)
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert 'Requires-Dist: aiohttp; extra == "simulator"' in text
    requires = [line for line in text.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert not any(dep in line for line in requires for dep in ("aiohttp", "psutil", "dateutil"))
