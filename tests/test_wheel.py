"""What we ship: the sdist and wheel carry what they claim, pass ``twine check``, and the wheel,
installed on its own, migrates a database with the scripts it carries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # hatchling, in the test extra, brings tomli there
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

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


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An sdist built from the checkout, and the wheel built from that sdist (so the sdist must
    hold everything a build needs)."""
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: build with the hatchling of this venv instead of downloading one.
    run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, REPO)
    return out


def only(directory: Path, pattern: str) -> Path:
    (found,) = directory.glob(pattern)
    return found


def tracked(*paths: str) -> set[str]:
    """The files git tracks under ``paths``; the checkout's own files if it isn't a clone."""
    listed = subprocess.run(
        ["git", "ls-files", "--", *paths], cwd=REPO, capture_output=True, text=True, check=False
    )
    if listed.returncode == 0 and listed.stdout.strip():
        return set(listed.stdout.split())
    return {
        str(f.relative_to(REPO))
        for p in paths
        for f in (REPO / p).rglob("*")
        if f.is_file() and "__pycache__" not in f.parts
    }


@pytest.mark.slow
def test_twine_check_passes_on_both(dist: Path) -> None:
    files = [only(dist, "*.tar.gz"), only(dist, "*.whl")]
    output = run(sys.executable, "-m", "twine", "check", "--strict", *files)
    assert output.count("PASSED") == 2, output


@pytest.mark.slow
def test_sdist_carries_what_pyproject_lists(dist: Path) -> None:
    sdist = only(dist, "streamcheckpoint-*.tar.gz")
    root = sdist.name.removesuffix(".tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.removeprefix(root + "/") for n in tar.getnames()}
        pkg_info = Parser().parsestr(tar.extractfile(f"{root}/PKG-INFO").read().decode())  # type: ignore[union-attr]
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    for entry in pyproject["tool"]["hatch"]["build"]["targets"]["sdist"]["include"]:
        assert (REPO / entry).exists(), f"the sdist list names {entry!r}, which doesn't exist"
        assert any(n == entry or n.startswith(entry + "/") for n in names), entry
    assert tracked("src", "migrations", "tests") <= names
    assert {"LICENSE", "alembic.ini", "src/streamcheckpoint/py.typed"} <= names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert pkg_info["License-Expression"] == "MIT"
    assert pkg_info.get_all("License-File") == ["LICENSE"]


@pytest.mark.slow
def test_wheel_carries_the_package_its_migrations_and_license(dist: Path) -> None:
    wheel = only(dist, "streamcheckpoint-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(f"{info}/METADATA").decode())
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    package = {n for n in tracked("src") if n.endswith(".py") or n.endswith("py.typed")}
    assert {n.removeprefix("src/") for n in package} <= names
    scripts = {n for n in tracked("migrations") if n.endswith(".py") or n.endswith(".mako")}
    assert {n.replace("migrations/", "streamcheckpoint/_migrations/", 1) for n in scripts} <= names
    assert f"{info}/licenses/LICENSE" in names
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/"))]
    assert metadata["License-Expression"] == "MIT"
    assert metadata["Description-Content-Type"] == "text/markdown"
    assert "example.invalid" not in str(metadata)
    assert "streamcheckpoint = streamcheckpoint.cli:main" in entry_points


@pytest.mark.slow
def test_installed_wheel_migrates_a_new_database(dist: Path, tmp_path: Path) -> None:
    wheel = only(dist, "streamcheckpoint-*.whl")
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
    assert report["current"] == report["head"] == "0003"
    assert str(REPO / "src") not in report["sys_path"]
    assert database.is_file()
