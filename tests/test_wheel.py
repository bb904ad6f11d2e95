"""The built wheel carries the migration scripts and migrates a database once installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Runs inside the fresh virtual environment, from a directory outside the repository.
SNIPPET = """
import json, sys
import streamcheckpoint
from streamcheckpoint.sql import migrations

url = sys.argv[1]
migrations.upgrade(url)
print(json.dumps({
    "package": streamcheckpoint.__file__,
    "scripts": str(migrations.script_location()),
    "current": migrations.current(url),
    "head": migrations.head(),
    "sys_path": sys.path,
}))
"""


def run(*args: str | Path, cwd: Path | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.mark.slow
def test_installed_wheel_migrates_a_new_database(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    # --no-isolation: build with the hatchling of this venv instead of downloading one.
    run(sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", dist, REPO)
    (wheel,) = dist.glob("streamcheckpoint-*.whl")

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    venv_site = Path(
        run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").strip()
    )
    # A real, non-editable install of the wheel alone...
    run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "--no-deps",
        "--no-index",
        "--no-cache-dir",
        "--disable-pip-version-check",
        wheel,
    )
    # ...with its dependencies (SQLAlchemy, Alembic) borrowed from this venv, offline. A path in a
    # .pth file is appended after the venv's own site-packages and its .pth files are not run,
    # so this venv's editable streamcheckpoint stays invisible.
    (venv_site / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    database = elsewhere / "checkpoints.db"
    report = json.loads(run(python, "-c", SNIPPET, f"sqlite:///{database}", cwd=elsewhere))

    assert Path(report["package"]).is_relative_to(venv_site)
    assert Path(report["scripts"]) == venv_site / "streamcheckpoint" / "_migrations"
    assert (Path(report["scripts"]) / "versions" / "0001_create_checkpoints.py").is_file()
    assert report["current"] == report["head"] == "0002"
    assert str(REPO / "src") not in report["sys_path"]
    assert database.is_file()
