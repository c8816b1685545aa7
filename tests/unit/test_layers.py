"""The layer contracts (pyproject's [tool.importlinter]) hold, and name every part of calsync.

A forbidden-modules contract only forbids what it lists: a new top-level module would slip
past "sync imports no other part of calsync" unless the list grows with it. This test makes
the list grow, and runs import-linter itself so that `make test` (CI) enforces the layers too.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import calsync

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")


def contracts() -> dict[str, dict[str, object]]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    return {c["name"]: c for c in config["tool"]["importlinter"]["contracts"]}


def parts() -> set[str]:
    return {f"calsync.{m.name}" for m in pkgutil.iter_modules(calsync.__path__)}


def test_sync_is_forbidden_every_other_part_of_calsync() -> None:
    [pure] = [c for name, c in contracts().items() if name.startswith("sync is pure")]
    assert set(pure["forbidden_modules"]) == parts() - {"calsync.sync"}  # type: ignore[arg-type]


def test_every_part_but_the_tools_is_kept_from_the_simulator() -> None:
    [tool] = [c for name, c in contracts().items() if "imports the simulator" in name]
    assert set(tool["source_modules"]) == parts() - {"calsync.simulator", "calsync.demo"}  # type: ignore[arg-type]


def test_the_import_contracts_hold() -> None:
    result = subprocess.run([LINT_IMPORTS], cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout
