"""FilePersister under SIGKILL and under racing processes (children run tests/_file_writer.py)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streamcheckpoint import Checkpoint, FilePersister, PartitionKey
from streamcheckpoint.filenames import TEMP_PREFIX, Layout

WRITER = str(Path(__file__).with_name("_file_writer.py"))
PARTITION_IDS = {"0", "1", "2", "3"}
_KEY_GROUP = ("ns", "hub", "$Default")  # the writer's keys (tests/_file_writer.py)
KILLS = 30  # per layout; each round costs a Python start-up (~0.1 s) plus the writes

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and fcntl are POSIX"),
]


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, WRITER, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _acks(lines: str) -> list[tuple[str, int]]:
    """Parse the complete ``<partition> <seq>`` lines a killed writer printed."""
    complete = lines if lines.endswith("\n") else lines.rpartition("\n")[0]
    return [(p, int(s)) for p, s in (line.split() for line in complete.splitlines())]


def _run_and_kill(directory: Path, layout: str, first_seq: int, rng: random.Random) -> str:
    """Start a writer, let it acknowledge a random number of writes, SIGKILL it mid-flight."""
    proc = _start("crash", str(directory), layout, str(first_seq))
    assert proc.stdout is not None
    seen = [proc.stdout.readline() for _ in range(rng.randint(1, 60))]
    time.sleep(rng.uniform(0, 0.002))  # land the kill anywhere inside the next write
    proc.send_signal(signal.SIGKILL)
    rest = proc.stdout.read()
    proc.wait()
    proc.stdout.close()
    if proc.stdin is not None:
        proc.stdin.close()
    assert proc.returncode == -signal.SIGKILL, "the writer died before it was killed"
    return "".join(seen) + rest


def _every_file_parses(directory: Path) -> int:
    """Parse every non-hidden file below ``directory`` as a checkpoint; return how many."""
    count = 0
    for _dirpath, _dirs, files, dir_fd in os.fwalk(directory):
        for name in files:
            if name.startswith("."):
                continue
            fd = os.open(name, os.O_RDONLY, dir_fd=dir_fd)
            try:
                data = os.read(fd, 1 << 16)
            finally:
                os.close(fd)
            assert data, f"{name} is empty"
            Checkpoint.from_json(data)  # raises CorruptCheckpointError on a partial file
            count += 1
    return count


@pytest.mark.parametrize("layout", ["nested", "go"])
def test_sigkilled_writer_leaves_whole_checkpoints_no_older_than_acknowledged(
    tmp_path: Path, layout: Layout
) -> None:
    seed = int.from_bytes(os.urandom(4), "big")
    rng = random.Random(seed)
    directory = tmp_path / "checkpoints"
    with FilePersister(directory, layout=layout) as persister:
        persister.write_many(
            {PartitionKey(*_KEY_GROUP, p): Checkpoint("0", 0) for p in PARTITION_IDS}
        )
    acked = dict.fromkeys(PARTITION_IDS, 0)
    next_seq = 1
    for kill in range(KILLS):
        acks = _acks(_run_and_kill(directory, layout, next_seq, rng))
        for partition, seq in acks:
            acked[partition] = seq
        next_seq = max(seq for _, seq in acks) + 1
        context = f"seed {seed}, kill {kill}, acknowledged {acked}"

        assert _every_file_parses(directory) == len(PARTITION_IDS), context
        with FilePersister(directory, layout=layout) as persister:
            stored = {r.key.partition_id: r.checkpoint.sequence_number for r in persister.list()}
        assert set(stored) == PARTITION_IDS, context
        for partition, seq in acked.items():
            assert stored[partition] >= seq, context


def test_stale_temp_files_left_by_kills_are_ignored_and_cleaned(tmp_path: Path) -> None:
    directory = tmp_path / "checkpoints"
    rng = random.Random(7)
    for _ in range(3):
        _run_and_kill(directory, "go", 1, rng)
    leftover = directory / f"{TEMP_PREFIX}0123456789abcdef"
    leftover.write_bytes(b'{"offset":"1","seq')  # what a kill between write and fsync leaves
    old = time.time() - 3600
    os.utime(leftover, (old, old))

    with FilePersister(directory, layout="go") as persister:
        assert {r.key.partition_id for r in persister.list()} == PARTITION_IDS
    assert not leftover.exists()


@pytest.mark.parametrize("layout", ["nested", "go"])
def test_racing_processes_in_monotonic_mode_end_at_the_highest_sequence_number(
    tmp_path: Path, layout: Layout
) -> None:
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    seqs = list(range(1, 401))
    rng.shuffle(seqs)
    shares = [seqs[i::4] for i in range(4)]
    procs = [_start("race", str(tmp_path), layout, ",".join(map(str, s))) for s in shares]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline() == "ready\n"
        for proc in procs:  # release them together
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outputs = [proc.communicate(timeout=120)[0] for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert [proc.returncode for proc in procs] == [0, 0, 0, 0], outputs
    summaries = [json.loads(out) for out in outputs]
    assert sum(s["accepted"] + s["refused"] for s in summaries) == len(seqs)
    assert sum(s["refused"] for s in summaries) > 0  # they really raced backwards

    with FilePersister(tmp_path, layout=layout) as persister:
        assert persister.read("ns", "hub", "$Default", "0") == Checkpoint("400", 400)
