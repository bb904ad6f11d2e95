"""Every test the README names as proof of a guarantee exists, so a renamed or deleted test
can't leave the README pointing at nothing.

References are backticked: a file (`tests/x.py`), a test (`tests/x.py::test_y`), one of its
cases (`tests/x.py::test_y[case]`), or a case alone (`[case]`) of the test named just before.
They are checked against what pytest collects (root-only tests are collected like any other).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
REFERENCE = re.compile(r"`(tests/[\w/]+\.py(?:::\w+)?(?:\[[^\]`]+\])?|\[[^\]`]+\])`")


def named_references() -> list[str]:
    """Each reference in README order, a bare ``[case]`` completed with the test before it."""
    references: list[str] = []
    last_test = ""
    for found in REFERENCE.findall(README.read_text(encoding="utf-8")):
        if found.startswith("["):
            if last_test:  # a case list after a file alone is no reference
                references.append(last_test + found)
            continue
        references.append(found)
        last_test = found.split("[", 1)[0] if "::" in found else ""
    return references


def collected(files: set[str]) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return {line for line in result.stdout.splitlines() if "::" in line}


def uncollected(references: list[str], ids: set[str]) -> list[str]:
    """The test references (``file::test``, with or without a case) that match no collected id."""
    return [
        reference
        for reference in references
        if "::" in reference
        and reference not in ids
        and not any(i.startswith(reference + "[") for i in ids)
    ]


def test_every_test_the_readme_names_is_collected() -> None:
    references = named_references()
    assert len(references) > 30  # the Guarantees section names its proofs
    files = {reference.split("::", 1)[0].split("[", 1)[0] for reference in references}
    missing_files = sorted(f for f in files if not (ROOT / f).is_file())
    assert not missing_files, f"the README names test files that don't exist: {missing_files}"
    missing = uncollected(references, collected(files))
    assert not missing, f"the README names tests pytest doesn't collect: {missing}"


def test_a_misspelt_test_or_case_is_caught() -> None:
    here = "tests/test_readme_tests_named.py"
    ids = collected({here})
    good = f"{here}::test_a_misspelt_test_or_case_is_caught"
    assert uncollected([here, good], ids) == []
    wrong = [f"{here}::test_no_such_test", f"{good}[no-such-case]"]
    assert uncollected(wrong, ids) == wrong
