"""FilePersister: Go's files, the nested layout's names, corrupt files, locking across threads.

The behaviour every backend shares is in the contract suite; this file covers what is specific
to files. Crash and multi-process tests are in test_file_crash.py.
"""

from __future__ import annotations

import functools
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import run_concurrently
from streamcheckpoint import (
    Checkpoint,
    CheckpointRegressionError,
    CorruptCheckpointError,
    FilePersister,
    PartitionKey,
    PersistError,
)
from streamcheckpoint import file as file_module
from streamcheckpoint.filenames import (
    LOCK_NAME,
    TEMP_PREFIX,
    Layout,
    decode_name,
    encode_name,
    go_file_name,
    nested_path,
    parse_nested_path,
)

WINDOWS_DEVICES = {"con", "prn", "aux", "nul", "conin$", "conout$"} | {
    f"{d}{n}" for d in ("com", "lpt") for n in range(10)
}
KEY = PartitionKey("myns", "myhub", "$Default", "0")

# -- Go's files --------------------------------------------------------------------------------


def _manifest(go_fixtures_dir: Path) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads((go_fixtures_dir / "manifest.json").read_text())
    return entries


def _key(entry: dict[str, Any]) -> PartitionKey:
    return PartitionKey(
        entry["namespace"], entry["name"], entry["consumer_group"], entry["partition_id"]
    )


def _expected_checkpoint(entry: dict[str, Any]) -> Checkpoint:
    """The manifest's values, the enqueue time truncated to microseconds."""
    when = None
    if not entry["enqueue_time_is_zero"]:
        seconds, nanos = divmod(entry["enqueue_time_unix_nano"], 1_000_000_000)
        when = datetime.fromtimestamp(seconds, timezone.utc) + timedelta(microseconds=nanos // 1000)
    return Checkpoint(entry["offset"], entry["sequence_number"], when)


@pytest.fixture
def go_dir(tmp_path: Path, go_fixtures_dir: Path) -> Path:
    """A copy of the files Go wrote."""
    directory = tmp_path / "go"
    shutil.copytree(go_fixtures_dir / "files", directory)
    return directory


def test_go_files_read_back_with_the_manifests_values(go_dir: Path, go_fixtures_dir: Path) -> None:
    entries = _manifest(go_fixtures_dir)
    assert len(entries) == len(os.listdir(go_dir)) == 6
    with FilePersister(go_dir, layout="go") as persister:
        for entry in entries:
            assert persister.read(*_key(entry)) == _expected_checkpoint(entry), entry["json"]


def test_go_layout_writes_go_names_and_byte_identical_json(
    tmp_path: Path, go_fixtures_dir: Path
) -> None:
    out = tmp_path / "ours"
    entries = _manifest(go_fixtures_dir)
    with FilePersister(out, layout="go") as persister:
        for entry in entries:
            persister.write(*_key(entry), _expected_checkpoint(entry))
        for entry in entries:  # what Go wrote in another zone or with nanoseconds still reads
            assert persister.read(*_key(entry)) == _expected_checkpoint(entry)
    files = go_fixtures_dir / "files"
    assert sorted(os.listdir(out)) == sorted(os.listdir(files))
    for name in (
        "myns_myhub_Default_1",
        "myns_myhub_Default_2",
        "other.servicebus.windows.net_orders_Default_31",
    ):
        assert (out / name).read_bytes() == (files / name).read_bytes(), name
    assert (out / "myns_myhub_Default_0").read_bytes() == (
        b'{"offset":"120","sequenceNumber":22,"enqueueTime":"2026-11-28T04:15:56.123456Z"}'
    )


def test_go_file_with_dollar_default_is_listed_under_the_callers_names(go_dir: Path) -> None:
    with FilePersister(go_dir, layout="go") as persister:
        records = persister.list("myns", "myhub", "$Default")
        assert [r.key for r in records] == [
            PartitionKey("myns", "myhub", "$Default", p) for p in ("0", "1", "2")
        ]
        assert [r.key.partition_id for r in persister.list("myns", "myhub", "Default")] == [
            "0",
            "1",
            "2",
        ]
        # With fewer filters the file name is all there is: Go dropped the "$".
        assert {r.key.consumer_group for r in persister.list("myns")} == {"Default", "analytics"}
        assert len(persister.list()) == 6
        assert persister.delete("myns", "myhub", "$Default", "1") == 1
        assert persister.read("myns", "myhub", "Default", "1") == Checkpoint.start_of_stream()
        assert persister.delete("myns", "myhub", "$Default") == 2
    assert sorted(os.listdir(go_dir)) == [
        "myns_myhub_analytics_3",
        "myns_myhub_analytics_4",
        "other.servicebus.windows.net_orders_Default_31",
    ]


def test_go_naming_shares_files_between_keys_with_underscores(tmp_path: Path) -> None:
    with FilePersister(tmp_path, layout="go") as persister:
        persister.write("a_b", "c", "d", "e", Checkpoint("1", 1))
        # Go's naming is ambiguous: this is the same file (documented).
        assert persister.read("a", "b_c", "d", "e") == Checkpoint("1", 1)
        assert persister.list() == []  # five parts: can't be split into a key
        assert [r.key for r in persister.list("a_b", "c", "d")] == [
            PartitionKey("a_b", "c", "d", "e")
        ]
        persister.write("x", "y", "z", "p_1", Checkpoint("2", 2))
        # could be partition "1" of group "z_p": not listed with group "z"
        assert persister.list("x", "y", "z") == []
        assert persister.list("x") == []


@pytest.mark.parametrize(
    ("field", "key"),
    [
        ("namespace", ("$", "hub", "cg", "0")),
        ("name", ("ns", "a/b", "cg", "0")),
        ("consumer_group", ("ns", "hub", "a\\b", "0")),
        ("partition_id", ("ns", "hub", "cg", "$$")),
    ],
)
def test_go_layout_refuses_what_go_names_cannot_store(
    tmp_path: Path, field: str, key: tuple[str, str, str, str]
) -> None:
    directory = tmp_path / "go"
    with FilePersister(directory, layout="go", monotonic=True) as persister:
        with pytest.raises(ValueError, match=field):
            persister.write(*key, Checkpoint("1", 1))
        with pytest.raises(ValueError, match=field):
            persister.write_many({PartitionKey(*key): Checkpoint("1", 1)})
        with pytest.raises(ValueError, match=field):
            persister.read(*key)
        with pytest.raises(ValueError, match=field):
            persister.delete(*key)
        if field != "partition_id":
            with pytest.raises(ValueError, match=field):
                persister.list(*key[:3])
    assert os.listdir(directory) == []


def test_go_layout_refuses_names_longer_than_a_file_name(tmp_path: Path) -> None:
    with (
        FilePersister(tmp_path, layout="go") as persister,
        pytest.raises(ValueError, match="longer than 255 bytes"),
    ):
        persister.write("n" * 150, "h" * 100, "c" * 50, "0", Checkpoint("1"))
    assert os.listdir(tmp_path) == []


def test_go_layout_write_many_refuses_two_keys_sharing_a_file(tmp_path: Path) -> None:
    with FilePersister(tmp_path, layout="go") as persister:
        batch = {
            PartitionKey("ns", "hub", "$Default", "0"): Checkpoint("1", 1),
            PartitionKey("ns", "hub", "Default", "0"): Checkpoint("2", 2),
        }
        with pytest.raises(ValueError, match="share the file 'ns_hub_Default_0'"):
            persister.write_many(batch)
    assert os.listdir(tmp_path) == []


# -- the nested layout's names -----------------------------------------------------------------

_tricky = st.text(st.sampled_from("aA.%$_-@/\\: \x01é😀cCoOnN1"), min_size=1, max_size=12)
_any = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1, max_size=256
)
components = st.one_of(
    st.sampled_from([".", "..", "con", "CON", "nul.txt", "Lpt1", "conin$", "%", "%25", "-1"]),
    _tricky,
    _any,
)
keys = st.builds(PartitionKey, components, components, components, components)


def _assert_safe_segment(segment: str) -> None:
    assert segment not in ("", ".", "..")
    assert not segment.startswith(".")
    assert not any(c in segment for c in "/\\\x00")
    assert segment.isascii()
    assert len(segment.encode()) <= 255
    assert not segment.endswith((".", " "))
    assert segment.split(".", maxsplit=1)[0].lower() not in WINDOWS_DEVICES


@given(components)
def test_encoding_round_trips(text: str) -> None:
    assert decode_name(encode_name(text)) == text


@given(keys)
def test_nested_path_round_trips_and_stays_inside_the_directory(key: PartitionKey) -> None:
    path = nested_path(key)
    assert parse_nested_path(path) == key
    assert len(path) >= 4
    assert path[-1].endswith(".json")
    for segment in path:
        _assert_safe_segment(segment)
    root = "/r"
    assert os.path.normpath(os.path.join(root, *path)).startswith(root + "/")


@given(keys, keys)
def test_distinct_keys_get_distinct_paths_even_ignoring_case(
    first: PartitionKey, second: PartitionKey
) -> None:
    if first != second:
        assert nested_path(first) != nested_path(second)
        folded = [tuple(s.casefold() for s in nested_path(k)) for k in (first, second)]
        assert folded[0] != folded[1]


@given(components)
def test_names_differing_only_in_case_get_distinct_files(text: str) -> None:
    variants = {text, text.upper(), text.lower(), text.swapcase()}
    assert len({encode_name(v).casefold() for v in variants}) == len(variants)


@pytest.mark.parametrize(
    ("text", "encoded"),
    [
        ("myhub", "myhub"),
        ("$Default", "$%44efault"),
        ("con", "%63on"),
        ("nul.txt", "%6Eul.txt"),
        ("com7", "%63om7"),
        ("console", "console"),
        (".", "%2E"),
        ("..", "%2E%2E"),
        ("a.b.", "a.b%2E"),
        ("100%", "100%25"),
        ("a/b", "a%2Fb"),
        ("é", "%C3%A9"),
    ],
)
def test_encoding_examples(text: str, encoded: str) -> None:
    assert encode_name(text) == encoded
    assert decode_name(encoded) == text


@pytest.mark.parametrize("name", ["", "%61", "A", "%4f", "con", "%zz", "a%2", "%C3", ".a", "a."])
def test_names_that_are_not_canonical_encodings_decode_to_nothing(name: str) -> None:
    assert decode_name(name) is None


def test_long_components_split_into_short_names_joined_by_a_bare_percent() -> None:
    key = PartitionKey("😀" * 256, "é" * 256, "c" * 256, "CON." * 64)
    path = nested_path(key)
    assert len(path) > 8
    assert all(len(s) <= 205 for s in path)
    assert all(s.endswith("%") for s in path[:4])  # 😀 is 12 bytes encoded
    assert parse_nested_path(path) == key
    # Cutting or regrouping the chunks differently isn't a key.
    assert parse_nested_path(path[1:]) is None
    assert parse_nested_path((path[0][:-1] + path[1], *path[2:])) is None


@pytest.mark.parametrize("shift", range(8))
@pytest.mark.parametrize("pattern", ["con.", "a.", "lpt1.x", "Aé.", "nul"])
def test_long_components_are_never_split_into_unsafe_names(shift: int, pattern: str) -> None:
    text = ("x" * shift + pattern * 256)[:256]
    key = PartitionKey(text, text, text, text)
    path = nested_path(key)
    for segment in path:
        _assert_safe_segment(segment)
    assert parse_nested_path(path) == key


_real_keys = st.builds(PartitionKey, _tricky, _tricky, components, components)


@settings(max_examples=25, deadline=None)
@given(st.lists(_real_keys, min_size=1, max_size=4, unique=True))
def test_any_keys_write_read_list_and_delete_on_disk(key_list: list[PartitionKey]) -> None:
    with tempfile.TemporaryDirectory() as directory, FilePersister(directory) as persister:
        for seq, key in enumerate(key_list):
            persister.write(*key, Checkpoint(str(seq), seq))
        for seq, key in enumerate(key_list):
            assert persister.read(*key) == Checkpoint(str(seq), seq)
        assert sorted(r.key for r in persister.list()) == sorted(key_list)
        first = key_list[0]
        assert {r.key for r in persister.list(*first[:3])} == {
            k for k in key_list if k[:3] == first[:3]
        }
        assert persister.delete(*first) == 1
        assert persister.read(*first) == Checkpoint.start_of_stream()


def test_key_of_four_256_character_non_ascii_components_end_to_end(tmp_path: Path) -> None:
    key = PartitionKey("Ω" * 256, "日本" * 128, "😀a" * 128, "Ünïcödé-" * 32)
    other = PartitionKey(*key[:3], "Ünïcödé-" * 31 + "Ünïcödé_")
    directory = tmp_path / "checkpoints"
    with FilePersister(directory, monotonic=True) as persister:
        persister.write(*key, Checkpoint("1", 1))
        persister.write_many({key: Checkpoint("2", 2), other: Checkpoint("3", 3)})
        assert persister.read(*key) == Checkpoint("2", 2)
        with pytest.raises(CheckpointRegressionError):
            persister.write(*key, Checkpoint("1", 1))
        assert [r.key for r in persister.list(*key[:3])] == sorted([key, other])
        assert [r.key for r in persister.list()] == sorted([key, other])
        assert persister.delete(*key[:3]) == 2
        assert persister.list() == []
    assert len(os.path.join(directory, *nested_path(key)).encode()) > 4096  # beyond PATH_MAX


def test_nested_files_hold_exactly_the_go_json(tmp_path: Path) -> None:
    checkpoint = Checkpoint("120", 22, datetime(2026, 1, 2, 3, 4, 5, 500000, timezone.utc))
    with FilePersister(tmp_path) as persister:
        persister.write(*KEY, checkpoint)
    assert (tmp_path / "myns/myhub/$%44efault/0.json").read_bytes() == (
        b'{"offset":"120","sequenceNumber":22,"enqueueTime":"2026-01-02T03:04:05.5Z"}'
    )
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["0.json"]


def test_names_differing_in_case_and_windows_names_are_separate_files(tmp_path: Path) -> None:
    names = ["con", "CON", "Con", "con.txt", "aux", "x"]
    with FilePersister(tmp_path) as persister:
        for seq, name in enumerate(names):
            persister.write(name, name, name, name, Checkpoint(str(seq), seq))
        for seq, name in enumerate(names):
            assert persister.read(name, name, name, name).sequence_number == seq
    assert len(list(tmp_path.rglob("*.json"))) == len(names)


def test_list_ignores_stray_files_and_directories(tmp_path: Path) -> None:
    with FilePersister(tmp_path) as persister:
        persister.write(*KEY, Checkpoint("1", 1))
        group = tmp_path / "myns/myhub/$%44efault"
        for name in ("README", "X.json", "%61.json", ".hidden.json", "1.json.bak", "a%.json"):
            (group / name).write_text("not a checkpoint")
        (group / "2.json").mkdir()
        (group / "5.json").symlink_to(group / "0.json")
        (tmp_path / "Upper/myhub/cg").mkdir(parents=True)
        (tmp_path / "Upper/myhub/cg/0.json").write_text(Checkpoint("1").to_json())
        (tmp_path / "myns/file-not-dir").write_text("x")
        assert [r.key for r in persister.list()] == [KEY]


def test_updated_at_is_the_files_modification_time(tmp_path: Path) -> None:
    with FilePersister(tmp_path) as persister:
        persister.write(*KEY, Checkpoint("1", 1))
        path = tmp_path.joinpath(*nested_path(KEY))
        when = datetime(2030, 5, 6, 7, 8, 9, 123456, timezone.utc)
        os.utime(path, ns=(0, int(when.timestamp()) * 10**9 + 123456789))
        (record,) = persister.list()
    assert record.updated_at == when


# -- corrupt files, leftovers and OS errors ----------------------------------------------------


@pytest.mark.parametrize("layout", ["nested", "go"])
@pytest.mark.parametrize("content", [b"", b'{"offset":"1","seq', b"\xff\xfe", b'{"offset":1}'])
def test_unreadable_checkpoint_file_raises_naming_the_path(
    tmp_path: Path, layout: Layout, content: bytes
) -> None:
    with FilePersister(tmp_path, layout=layout) as persister:
        persister.write(*KEY, Checkpoint("1", 1))
        target = (
            tmp_path / go_file_name(KEY) if layout == "go" else tmp_path.joinpath(*nested_path(KEY))
        )
        target.write_bytes(content)
        with pytest.raises(CorruptCheckpointError, match=r"checkpoint file '.*0") as excinfo:
            persister.read(*KEY)
        assert str(target) in str(excinfo.value)
        assert type(excinfo.value.__cause__) is ValueError  # what Checkpoint.from_json said
        with pytest.raises(CorruptCheckpointError, match=str(target).replace("$", r"\$")):
            persister.list()
    with (
        FilePersister(tmp_path, layout=layout, monotonic=True) as persister,
        pytest.raises(CorruptCheckpointError),
    ):
        persister.write(*KEY, Checkpoint("2", 2))
    assert target.read_bytes() == content  # a monotonic write can't compare, so it changes nothing


@pytest.mark.parametrize("layout", ["nested", "go"])
def test_temp_files_are_ignored_and_old_ones_cleaned(
    tmp_path: Path, layout: Layout, caplog: pytest.LogCaptureFixture
) -> None:
    with FilePersister(tmp_path, layout=layout) as persister:
        persister.write(*KEY, Checkpoint("1", 1))
    folder = tmp_path.joinpath(*nested_path(KEY)).parent if layout == "nested" else tmp_path
    old, fresh = folder / f"{TEMP_PREFIX}00aa", folder / f"{TEMP_PREFIX}11bb"
    for leftover in (old, fresh):
        leftover.write_bytes(b'{"offset":')
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))

    with (
        caplog.at_level("INFO", logger="streamcheckpoint"),
        FilePersister(tmp_path, layout=layout) as persister,
    ):
        assert not old.exists()
        assert fresh.exists()  # another process may be writing it
        assert [r.getMessage() for r in caplog.records] == [
            f"removed {old}, a temporary file a crashed writer left"
        ]
        assert [r.key.partition_id for r in persister.list()] == ["0"]
        assert persister.read(*KEY) == Checkpoint("1", 1)


def test_successful_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    with FilePersister(tmp_path, monotonic=True) as persister:
        persister.write(*KEY, Checkpoint("1", 1))
        persister.write_many(
            {KEY._replace(partition_id=str(p)): Checkpoint("2", 2) for p in range(9)}
        )
        with pytest.raises(CheckpointRegressionError):
            persister.write_many({KEY: Checkpoint("0", 0)})
    names = {p.name for p in tmp_path.rglob("*")}
    assert not [n for n in names if n.startswith(TEMP_PREFIX)]
    assert LOCK_NAME in names
    assert "_" not in LOCK_NAME + TEMP_PREFIX  # never a Go name, which has three "_"


def test_write_many_that_fails_before_renaming_changes_nothing(tmp_path: Path) -> None:
    blocked = PartitionKey("myns", "myhub", "blocked", "0")
    with FilePersister(tmp_path) as persister:
        persister.write(*KEY, Checkpoint("1", 1))
        (tmp_path / "myns/myhub/blocked").write_text("a file where a directory belongs")
        with pytest.raises(PersistError, match="blocked") as excinfo:
            persister.write_many({KEY: Checkpoint("2", 2), blocked: Checkpoint("2", 2)})
        assert isinstance(excinfo.value.__cause__, NotADirectoryError)
        assert persister.read(*KEY) == Checkpoint("1", 1)
    assert not list(tmp_path.rglob(f"{TEMP_PREFIX}*"))


def test_a_directory_where_the_file_belongs_is_a_persist_error(tmp_path: Path) -> None:
    with FilePersister(tmp_path) as persister:
        path = tmp_path.joinpath(*nested_path(KEY))
        path.mkdir(parents=True)
        with pytest.raises(PersistError, match=r"0\.json") as excinfo:
            persister.write(*KEY, Checkpoint("1", 1))
        assert isinstance(excinfo.value.__cause__, OSError)
        with pytest.raises(PersistError, match=r"0\.json"):
            persister.read(*KEY)
        with pytest.raises(PersistError, match=r"0\.json"):
            persister.delete(*KEY)


def test_a_vanished_directory_is_an_error_not_start_of_stream(tmp_path: Path) -> None:
    directory = tmp_path / "checkpoints"
    with FilePersister(directory) as persister:
        persister.write(*KEY, Checkpoint("1", 1))
        shutil.rmtree(directory)
        with pytest.raises(PersistError, match="no longer exists"):
            persister.read(*KEY)


def test_constructor_creates_the_directory_and_checks_its_arguments(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "b"
    with FilePersister(directory) as persister:
        assert directory.is_dir()
        assert persister.directory == directory
        assert persister.layout == "nested"
        assert "layout='nested'" in repr(persister)
    with pytest.raises(ValueError, match="layout"):
        FilePersister(directory, layout="flat")
    (tmp_path / "file").write_text("")
    with pytest.raises(PersistError, match="file"):
        FilePersister(tmp_path / "file")


# -- a planted lock file ----------------------------------------------------------------------


def _plant_symlink_outside(lock: Path, outside: Path) -> None:
    lock.symlink_to(outside / "created-through-the-lock-file")


def _plant_symlink_to_a_file(lock: Path, outside: Path) -> None:
    (outside / "someone-elses-file").write_text("untouched")
    lock.symlink_to(outside / "someone-elses-file")


def _plant_dangling_symlink(lock: Path, outside: Path) -> None:
    lock.symlink_to("missing-lock-file")


def _plant_directory(lock: Path, outside: Path) -> None:
    lock.mkdir()


def _plant_fifo(lock: Path, outside: Path) -> None:
    os.mkfifo(lock)


def _write_with_a_time_limit(persister: FilePersister, checkpoint: Checkpoint) -> None:
    """``persister.write`` in a thread, so that a write that hangs fails the test instead."""
    outcome: list[BaseException | None] = []

    def write() -> None:
        try:
            persister.write(*KEY, checkpoint)
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive(), "the write hung on the planted lock file"
    if outcome[0] is not None:
        raise outcome[0]


@pytest.mark.parametrize(
    "plant",
    [
        _plant_symlink_outside,
        _plant_symlink_to_a_file,
        _plant_dangling_symlink,
        _plant_directory,
        _plant_fifo,
    ],
)
def test_a_planted_lock_file_is_refused_and_never_followed(
    tmp_path: Path, plant: Callable[[Path, Path], None]
) -> None:
    store, outside = tmp_path / "store", tmp_path / "outside"
    outside.mkdir()
    lock = store / LOCK_NAME
    with FilePersister(store, monotonic=True) as persister:
        persister.write(*KEY, Checkpoint("1", 1))
        lock.unlink()
        plant(lock, outside)
        before = sorted(store.iterdir()), {p.name: p.read_bytes() for p in outside.iterdir()}
        with pytest.raises(PersistError, match=rf"{re.escape(str(lock))}.*remove it"):
            _write_with_a_time_limit(persister, Checkpoint("2", 2))
        after = sorted(store.iterdir()), {p.name: p.read_bytes() for p in outside.iterdir()}
        assert after == before  # no link target created or written, here or outside
        assert persister.read(*KEY) == Checkpoint("1", 1)
        if lock.is_dir() and not lock.is_symlink():
            lock.rmdir()
        else:
            lock.unlink()
        _write_with_a_time_limit(persister, Checkpoint("2", 2))
        assert persister.read(*KEY) == Checkpoint("2", 2)
    assert lock.is_file()
    assert not lock.is_symlink()


@pytest.mark.parametrize("layout", ["nested", "go"])
def test_a_fifo_where_a_checkpoint_belongs_is_corrupt_and_never_waited_on(
    tmp_path: Path, layout: Layout
) -> None:
    with FilePersister(tmp_path, layout=layout) as persister:
        persister.write(*KEY, Checkpoint("1", 1))
        [path] = [p for p in tmp_path.rglob("*") if p.is_file() and not p.name.startswith(".")]
        path.unlink()
        os.mkfifo(path)
        started = time.monotonic()
        with pytest.raises(CorruptCheckpointError, match=rf"{re.escape(str(path))}.*a FIFO"):
            persister.read(*KEY)
        assert time.monotonic() - started < 5
        assert persister.list() == []  # list skips what isn't a regular file
        path.unlink()
        persister.write(*KEY, Checkpoint("2", 2))
        assert persister.read(*KEY) == Checkpoint("2", 2)


def test_a_monotonic_write_waits_for_a_stopped_lock_holder_only_so_long(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process stopped while it holds the lock (SIGSTOP, a debugger) makes our monotonic
    write fail after LOCK_TIMEOUT_SECONDS, never hang; once it is gone, writes go on."""
    monkeypatch.setattr(file_module, "LOCK_TIMEOUT_SECONDS", 0.5)
    with FilePersister(tmp_path, monotonic=True) as persister:
        persister.write(*KEY, Checkpoint("1", 1))
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY); "
                "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); "
                "os.kill(os.getpid(), 19); time.sleep(60)",  # 19: SIGSTOP, holding the lock
                str(tmp_path / LOCK_NAME),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline() == "held\n"
            started = time.monotonic()
            with pytest.raises(PersistError, match=r"waited 0.5 s for the lock file"):
                _write_with_a_time_limit(persister, Checkpoint("2", 2))
            assert 0.5 <= time.monotonic() - started < 5
            assert persister.read(*KEY) == Checkpoint("1", 1)
        finally:
            holder.kill()
            holder.communicate()
        persister.write(*KEY, Checkpoint("2", 2))
        assert persister.read(*KEY) == Checkpoint("2", 2)


# -- concurrency -------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["nested", "go"])
def test_racing_threads_in_monotonic_mode_end_at_the_highest_sequence_number(
    tmp_path: Path, layout: Layout
) -> None:
    seqs = list(range(1, 241))
    random.Random(1).shuffle(seqs)
    shared = FilePersister(tmp_path, layout=layout, monotonic=True)
    persisters = [shared] * 4 + [
        FilePersister(tmp_path, layout=layout, monotonic=True) for _ in range(4)
    ]
    barrier = threading.Barrier(len(persisters) + 1)
    refused: list[CheckpointRegressionError] = []
    accepted: list[int] = []
    done = threading.Event()
    observed: list[int] = []

    def writer(persister: FilePersister, share: list[int]) -> None:
        barrier.wait()
        for seq in share:
            try:
                persister.write(*KEY, Checkpoint(str(seq), seq))
                accepted.append(seq)
            except CheckpointRegressionError as exc:
                refused.append(exc)

    def reader() -> None:
        barrier.wait()
        while not done.is_set():
            observed.append(shared.read(*KEY).sequence_number)

    shares = [seqs[i :: len(persisters)] for i in range(len(persisters))]
    writers = [lambda p=p, s=s: writer(p, s) for p, s in zip(persisters, shares, strict=True)]
    reader_thread = threading.Thread(target=reader)
    reader_thread.start()
    try:
        errors = run_concurrently(writers)
    finally:
        done.set()
        reader_thread.join()
        for persister in persisters:
            persister.close()

    assert errors == []
    assert len(accepted) + len(refused) == len(seqs)
    assert refused
    assert all(e.stored.sequence_number > e.refused.sequence_number for e in refused)
    assert observed == sorted(observed), "the stored checkpoint moved backwards"
    with FilePersister(tmp_path, layout=layout) as persister:
        assert persister.read(*KEY) == Checkpoint("240", 240)


def test_concurrent_plain_writers_create_directories_and_files_safely(tmp_path: Path) -> None:
    persister = FilePersister(tmp_path)

    def writer(thread: int) -> None:
        for seq in range(20):
            for group in ("g1", "g2"):
                persister.write("ns", "hub", group, str(seq % 3), Checkpoint(f"{thread}", seq))

    errors = run_concurrently([functools.partial(writer, t) for t in range(6)])
    assert errors == []
    records = persister.list()
    assert [(r.key.consumer_group, r.key.partition_id) for r in records] == [
        (g, p) for g in ("g1", "g2") for p in ("0", "1", "2")
    ]
    assert all(r.checkpoint.sequence_number % 3 == int(r.key.partition_id) for r in records)


def test_go_layout_group_operations_leave_a_group_with_a_longer_name_alone(tmp_path: Path) -> None:
    # ns_hub_a_1 belongs to group "a"; ns_hub_a_b_2 to group "a_b" (or to "a", partition "b_2":
    # Go's naming can't tell, so group-wide operations on "a" must not touch it).
    store = FilePersister(tmp_path, layout="go")
    store.write("ns", "hub", "a", "1", Checkpoint("10", 10))
    store.write("ns", "hub", "a_b", "2", Checkpoint("20", 20))

    assert [r.key for r in store.list("ns", "hub", "a")] == [PartitionKey("ns", "hub", "a", "1")]
    assert store.delete("ns", "hub", "a") == 1
    assert store.read("ns", "hub", "a_b", "2") == Checkpoint("20", 20)
    assert store.read("ns", "hub", "a", "1") == Checkpoint.start_of_stream()


def test_go_layout_partition_with_underscore_is_reachable_by_its_exact_key(tmp_path: Path) -> None:
    store = FilePersister(tmp_path, layout="go")
    store.write("ns", "hub", "cg", "p_1", Checkpoint("5", 5))
    assert store.read("ns", "hub", "cg", "p_1") == Checkpoint("5", 5)
    assert store.list("ns", "hub", "cg") == []  # ambiguous: could be group "cg_p"
    assert store.delete("ns", "hub", "cg", "p_1") == 1
    assert not (tmp_path / "ns_hub_cg_p_1").exists()


def test_new_checkpoint_directory_is_created_with_its_parents(tmp_path: Path) -> None:
    root = tmp_path / "a" / "b" / "c"
    store = FilePersister(root)
    store.write("ns", "hub", "cg", "0", Checkpoint("1", 1))
    assert FilePersister(root).read("ns", "hub", "cg", "0") == Checkpoint("1", 1)
