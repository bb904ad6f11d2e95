"""The installed ``streamcheckpoint`` script as a user runs it: real processes, a real SIGKILL.

Also: ``python -m streamcheckpoint``, and the README documents every command.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from streamcheckpoint.cli import cli
from streamcheckpoint.cli.demo import (
    DEMO_CONSUMER_GROUP,
    DEMO_NAME,
    DEMO_NAMESPACE,
    event_checkpoint,
)
from streamcheckpoint.urls import open_persister

SCRIPT = Path(sys.executable).parent / "streamcheckpoint"
README = Path(__file__).resolve().parent.parent / "README.md"
DEMO_KEY = (DEMO_NAMESPACE, DEMO_NAME, DEMO_CONSUMER_GROUP)
PARTITIONS, EVENTS, EVERY = 3, 500, 50


def run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a command the way a shell would, with no store chosen by the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMCHECKPOINT_")}
    return subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def stored_sequences(url: str) -> dict[int, int]:
    with open_persister(url) as store:
        return {
            int(r.key.partition_id): r.checkpoint.sequence_number for r in store.list(*DEMO_KEY)
        }


def test_python_dash_m_runs_the_cli(tmp_path: Path) -> None:
    result = run(sys.executable, "-m", "streamcheckpoint", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: streamcheckpoint [OPTIONS] COMMAND")
    for name in cli.commands:
        assert re.search(rf"^\s+{name}\s", result.stdout, re.MULTILINE), name


def test_demo_crash_and_resume(tmp_path: Path) -> None:
    sizes = ("--partitions", PARTITIONS, "--events", EVENTS, "--checkpoint-every", EVERY)
    args = [str(a) for a in sizes]
    url = f"sqlite:///{tmp_path / 'checkpoints.db'}"  # the default URL, relative to the cwd

    crashed = run(SCRIPT, "demo", *args, "--crash-after", "700", cwd=tmp_path)

    assert crashed.returncode != 0
    if hasattr(signal, "SIGKILL"):
        assert crashed.returncode == -signal.SIGKILL
    assert "simulated crash after 700 events" in crashed.stdout
    assert "processed" not in crashed.stdout  # no clean end, no final status
    at_crash = stored_sequences(url)
    assert sorted(at_crash) == list(range(PARTITIONS))
    for sequence in at_crash.values():
        # Checkpointed every EVERY events and killed mid-stream: never at the end, never torn.
        assert (sequence + 1) % EVERY == 0
        assert sequence < EVENTS - 1
    assert sum(s + 1 for s in at_crash.values()) <= 700

    resumed = run(SCRIPT, "demo", *args, cwd=tmp_path)

    assert resumed.returncode == 0, resumed.stderr
    for partition, sequence in at_crash.items():
        row = rf"│\s*{partition}\s*│\s*{sequence + 1}\s*│ after checkpoint at {sequence}\s*│"
        assert re.search(row, resumed.stdout), f"partition {partition}:\n{resumed.stdout}"
    assert "start of stream" not in resumed.stdout
    left = PARTITIONS * EVENTS - sum(s + 1 for s in at_crash.values())
    assert f"processed {left} events this run" in resumed.stdout
    with open_persister(url) as store:
        for partition in range(PARTITIONS):
            stored = store.read(*DEMO_KEY, str(partition))
            assert stored == event_checkpoint(partition, EVENTS - 1)
    assert "Traceback" not in crashed.stderr + resumed.stderr


def test_the_readmes_first_minutes_work_in_the_order_given(tmp_path: Path) -> None:
    """README: command 1 runs the demo to the end; then --crash-after 15000 kills one mid-stream;
    run again, it resumes after the last checkpoints and finishes."""
    first = run(SCRIPT, "demo", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "every partition is at sequence 9999" in first.stdout
    crashed = run(SCRIPT, "demo", "--crash-after", "15000", cwd=tmp_path)
    assert crashed.returncode == -signal.SIGKILL
    assert "starting it over" in crashed.stdout
    assert "simulated crash after 15000 events" in crashed.stdout
    resumed = run(SCRIPT, "demo", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.count("after checkpoint at") == 4
    assert "every partition is at sequence 9999" in resumed.stdout
    assert "processed 25" in resumed.stdout  # what the crashed run hadn't checkpointed: ~25,000


def test_ctrl_c_in_the_demo_says_what_was_stored(tmp_path: Path) -> None:
    demo = subprocess.Popen(
        [
            str(SCRIPT),
            "demo",
            "--partitions",
            "2",
            "--events",
            "10000000",
            "--checkpoint-every",
            "10",
        ],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("STREAMCHECKPOINT_")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"sqlite:///{tmp_path / 'checkpoints.db'}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until some checkpoints are stored
        if (tmp_path / "checkpoints.db").exists() and len(stored_sequences(url)) == 2:
            break
        time.sleep(0.05)
    demo.send_signal(signal.SIGINT)
    out, err = demo.communicate(timeout=60)
    assert demo.returncode == 130
    assert "nothing changed" not in err
    assert "interrupted: the checkpoints above were stored before it" in err
    stored = stored_sequences(url)
    for partition, sequence in stored.items():  # the table shows exactly what is stored
        assert re.search(rf"│\s*{partition}\s*│\s*{sequence * 512}\s*│\s*{sequence}\s*│", out)
    assert "Traceback" not in err


def test_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    cases = [
        (("--url", "bogus://x", "status"), 2, "bogus://x"),
        (("--url", "postgresql+psycopg://u:s3cret@127.0.0.1:1/x", "status"), 1, "***"),
        (("status",), 1, "checkpoints.db"),
        (("status", "--stale", "soon"), 2, "'soon'"),
    ]
    for args, code, needle in cases:
        result = run(SCRIPT, *args, cwd=tmp_path)
        assert result.returncode == code, (args, result.stderr)
        lines = result.stderr.splitlines()
        assert len(lines) == 1, (args, result.stderr)
        assert lines[0].startswith("error: "), (args, result.stderr)
        assert needle in lines[0]
        assert "s3cret" not in result.stdout + result.stderr
        assert result.stdout == ""
    assert not (tmp_path / "checkpoints.db").exists()


def _documented_commands() -> list[str]:
    names = []
    for name, command in cli.commands.items():
        names.append(name)
        if isinstance(command, click.Group):
            names.extend(f"{name} {sub}" for sub in command.commands)
    return names


def test_readme_documents_every_command() -> None:
    text = README.read_text(encoding="utf-8")
    missing = [c for c in _documented_commands() if not re.search(rf"streamcheckpoint {c}\b", text)]
    assert missing == [], f"README.md never shows `streamcheckpoint <command>` for {missing}"
