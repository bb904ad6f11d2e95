"""The contract every built-in persister keeps, run over each backend of the ``backend`` fixture.

Generic tests use names without ``_`` and ``$``: Go's file naming (``backend.go_layout``) drops
``$`` and joins components with ``_``, so such names are tested separately.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from conftest import Backend
from streamcheckpoint import (
    BasePersister,
    Checkpoint,
    CheckpointPersister,
    CheckpointRecord,
    CheckpointRegressionError,
    PartitionKey,
    PersistError,
)
from streamcheckpoint.checkpoint import record_sort_key

UTC = timezone.utc
IST = timezone(timedelta(hours=5, minutes=30))
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
NS, HUB, CG = "ns.example", "hub", "cg"
FIELDS = ("namespace", "name", "consumer_group", "partition_id")

# Allowed difference between a record's updated_at and the test's clock: wide enough for a
# file system's coarse timestamps or a database's clock, narrow enough to catch a time zone bug.
CLOCK_SLACK = timedelta(seconds=30)


def key(
    partition_id: str = "0", namespace: str = NS, name: str = HUB, group: str = CG
) -> PartitionKey:
    return PartitionKey(namespace, name, group, partition_id)


def stored(persister: BasePersister) -> dict[PartitionKey, Checkpoint]:
    """Everything in the store, as listed."""
    return {record.key: record.checkpoint for record in persister.list()}


def names_component(field: str) -> re.Pattern[str]:
    """Matches a message naming ``field`` as a word (so "name" is not found in "namespace")."""
    return re.compile(rf"(?<![A-Za-z_]){re.escape(field)}(?![A-Za-z_])")


# -- read and write ------------------------------------------------------------------------


def test_read_of_a_key_never_written_is_start_of_stream(persister: BasePersister) -> None:
    assert persister.read(*key("0")) == Checkpoint.start_of_stream()
    persister.write(*key("1"), Checkpoint("5", 5))
    read = persister.read(*key("0"))
    assert read == Checkpoint.start_of_stream()
    assert (read.offset, read.sequence_number, read.enqueue_time) == ("-1", 0, None)


ROUND_TRIP = [
    Checkpoint("120", 22, datetime(2026, 11, 28, 4, 15, 56, 123456, tzinfo=UTC)),
    Checkpoint("1", INT64_MAX, datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
    Checkpoint("2", INT64_MIN, datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC)),
    Checkpoint("3", 7, datetime(2025, 1, 2, 3, 4, 5, 654321, tzinfo=IST)),
    Checkpoint("4", -1, datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
    Checkpoint("5", 0, datetime(1970, 1, 1, tzinfo=UTC)),
    Checkpoint.start_of_stream(),
    Checkpoint.end_of_stream(),
    Checkpoint('odd offset <&> "quoted" \\ é😀\n\t\u2028', 8),
    Checkpoint("9" * 1000, 9),
]


def test_write_read_round_trip(backend: Backend) -> None:
    writer = backend.open()
    for index, checkpoint in enumerate(ROUND_TRIP):
        writer.write(*key(str(index)), checkpoint)
    # A second persister on the same store proves the values come from storage, not a cache.
    for persister in (writer, backend.open()):
        for index, checkpoint in enumerate(ROUND_TRIP):
            read = persister.read(*key(str(index)))
            assert read == checkpoint, f"partition {index}"
            assert read.enqueue_time == checkpoint.enqueue_time  # to the microsecond
            if read.enqueue_time is not None:
                assert read.enqueue_time.utcoffset() == timedelta(0)
        assert stored(persister) == {key(str(i)): cp for i, cp in enumerate(ROUND_TRIP)}


def test_overwrite_replaces_the_checkpoint(persister: BasePersister) -> None:
    persister.write(*key(), Checkpoint("200", 20, datetime(2026, 1, 1, tzinfo=UTC)))
    persister.write(*key(), Checkpoint("100", 10))  # not monotonic: going back is allowed
    assert persister.read(*key()) == Checkpoint("100", 10)
    persister.write(*key(), Checkpoint("300", 30))
    assert persister.read(*key()) == Checkpoint("300", 30)
    assert stored(persister) == {key(): Checkpoint("300", 30)}


NEIGHBOURS = [
    # key("0") and keys that differ from it in exactly one component, in several ways.
    key("0"),
    key("0", namespace="other.ns"),
    key("0", namespace="ns.exampl"),
    key("0", namespace="NS.example"),
    key("0", name="hubb"),
    key("0", name="Hub"),
    key("0", name="hub "),
    key("0", name=" hub"),
    key("0", group="cg2"),
    key("0", group="c"),
    key("0", group="CG"),
    key("1"),
    key("00"),
    key("0 "),
    key("0a"),
]


def test_keys_differing_in_one_component_are_isolated(persister: BasePersister) -> None:
    for index, k in enumerate(NEIGHBOURS):
        persister.write(*k, Checkpoint(str(index), index))
    for index, k in enumerate(NEIGHBOURS):
        assert persister.read(*k) == Checkpoint(str(index), index), k
    assert stored(persister) == {k: Checkpoint(str(i), i) for i, k in enumerate(NEIGHBOURS)}


def test_two_persisters_on_one_store_see_each_others_writes(backend: Backend) -> None:
    first, second = backend.open(), backend.open()
    first.write(*key("0"), Checkpoint("1", 1))
    assert second.read(*key("0")) == Checkpoint("1", 1)
    second.write(*key("0"), Checkpoint("2", 2))
    assert first.read(*key("0")) == Checkpoint("2", 2)


# -- write_many ---------------------------------------------------------------------------


def test_write_many_with_a_mapping(persister: BasePersister) -> None:
    batch = {key(str(i)): Checkpoint(str(i * 10), i) for i in range(5)}
    batch[key("0", group="cg2")] = Checkpoint("x", 99)
    persister.write_many(batch)
    for k, checkpoint in batch.items():
        assert persister.read(*k) == checkpoint
    assert stored(persister) == batch


@pytest.mark.parametrize("monotonic", [False, True])
def test_write_many_of_records_keeps_their_updated_at(backend: Backend, monotonic: bool) -> None:
    """What ``copy`` does: records listed from one store, written to another, keep when they
    were last written (a stale partition stays stale)."""
    persister = backend.open(monotonic=monotonic)
    long_ago = datetime(2021, 3, 4, 5, 6, 7, 890123, tzinfo=timezone.utc)
    records = [
        CheckpointRecord(key(str(i)), Checkpoint(str(i), i), long_ago + timedelta(hours=i))
        for i in range(3)
    ]
    persister.write(*key("0"), Checkpoint("older", -1))  # overwritten, time and all
    before = datetime.now(timezone.utc)
    persister.write_many(iter(records))
    listed = persister.list()
    assert [r.checkpoint for r in listed] == [r.checkpoint for r in records]
    assert [r.updated_at for r in listed] == [r.updated_at for r in records]
    persister.write_many({key("1"): Checkpoint("new", 9)})  # an ordinary write: now again
    [fresh] = [r for r in persister.list() if r.key == key("1")]
    assert fresh.updated_at is not None
    assert fresh.updated_at >= before - timedelta(seconds=5)


def test_write_many_with_an_iterable_of_pairs(persister: BasePersister) -> None:
    persister.write(*key("1"), Checkpoint("old", 1))
    expected = {key(str(i)): Checkpoint(str(i), i + 1) for i in range(4)}
    # A generator of pairs whose keys are plain 4-tuples.
    persister.write_many((tuple(k), cp) for k, cp in expected.items())  # type: ignore[arg-type]
    assert stored(persister) == expected
    assert all(type(k) is PartitionKey for k in stored(persister))


def test_write_many_of_nothing_changes_nothing(persister: BasePersister) -> None:
    persister.write(*key(), Checkpoint("1", 1))
    persister.write_many({})
    persister.write_many([])
    assert stored(persister) == {key(): Checkpoint("1", 1)}


BAD_THIRD_ITEMS: list[tuple[str, object, type[Exception], str]] = [
    ("empty-partition", (key(""), Checkpoint("3", 3)), ValueError, "partition_id"),
    ("nul-group", (key("2", group="c\x00g"), Checkpoint("3", 3)), ValueError, "consumer_group"),
    ("int-name", ((NS, 7, CG, "2"), Checkpoint("3", 3)), TypeError, "name"),
    (
        "long-namespace",
        (key("2", namespace="n" * 257), Checkpoint("3", 3)),
        ValueError,
        "namespace",
    ),
    ("not-a-checkpoint", (key("2"), "3"), TypeError, "checkpoint"),
    ("dict-checkpoint", (key("2"), {"offset": "3"}), TypeError, "checkpoint"),
    ("three-part-key", ((NS, HUB, CG), Checkpoint("3", 3)), TypeError, "key"),
    ("not-a-pair", (key("2"),), TypeError, "pair"),
    ("same-key-twice", (key("0"), Checkpoint("3", 3)), ValueError, "more than once"),
]


@pytest.mark.parametrize(
    ("bad_item", "error", "detail"),
    [item[1:] for item in BAD_THIRD_ITEMS],
    ids=[item[0] for item in BAD_THIRD_ITEMS],
)
def test_write_many_is_all_or_nothing_on_a_bad_item(
    persister: BasePersister, bad_item: object, error: type[Exception], detail: str
) -> None:
    before = {key("0"): Checkpoint("old", 1)}
    persister.write_many(before)
    items = [
        (key("0"), Checkpoint("new0", 2)),
        (key("1"), Checkpoint("new1", 2)),
        bad_item,
        (key("3"), Checkpoint("new3", 2)),
    ]
    with pytest.raises(error, match=names_component(detail)):
        persister.write_many(items)  # type: ignore[arg-type]
    assert stored(persister) == before


# -- list ---------------------------------------------------------------------------------

LISTED = [
    # In the order list() must return them: by key, partition ids in natural order.
    key("0", "a.ns", "hub", "cg"),
    key("1", "a.ns", "hub", "cg"),
    key("2", "a.ns", "hub", "cg"),
    key("3", "a.ns", "hub", "cg"),
    key("10", "a.ns", "hub", "cg"),
    key("11", "a.ns", "hub", "cg"),
    key("20", "a.ns", "hub", "cg"),
    key("1", "a.ns", "hub", "cg2"),
    key("5", "a.ns", "hub2", "cg"),
    key("0", "b.ns", "hub", "cg"),
]


@pytest.fixture
def listed(persister: BasePersister) -> BasePersister:
    """A persister holding LISTED, written in a shuffled order, half singly, half in a batch."""
    shuffled = LISTED[:]
    random.Random(11).shuffle(shuffled)
    for k in shuffled[:5]:
        persister.write(*k, Checkpoint(k.partition_id, LISTED.index(k)))
    persister.write_many({k: Checkpoint(k.partition_id, LISTED.index(k)) for k in shuffled[5:]})
    return persister


def test_list_returns_records_sorted_by_key_in_natural_partition_order(
    listed: BasePersister,
) -> None:
    records = listed.list()
    assert all(isinstance(r, CheckpointRecord) for r in records)
    assert all(type(r.key) is PartitionKey for r in records)
    assert [r.key for r in records] == LISTED
    assert [r.checkpoint for r in records] == [
        Checkpoint(k.partition_id, i) for i, k in enumerate(LISTED)
    ]


@pytest.mark.parametrize(
    "scope",
    [
        {"namespace": "a.ns"},
        {"namespace": "b.ns"},
        {"namespace": "a.ns", "name": "hub"},
        {"namespace": "a.ns", "name": "hub2"},
        {"namespace": "a.ns", "name": "hub", "consumer_group": "cg"},
        {"namespace": "a.ns", "name": "hub", "consumer_group": "cg2"},
        {"name": "hub"},
        {"consumer_group": "cg"},
        {"name": "hub", "consumer_group": "cg2"},
        {"namespace": "a.ns", "consumer_group": "cg"},
        {"namespace": "b.ns", "consumer_group": "cg"},
    ],
    ids="+".join,
)
def test_list_filters_in_any_combination(listed: BasePersister, scope: dict[str, str]) -> None:
    expected = [k for k in LISTED if all(getattr(k, f) == v for f, v in scope.items())]
    assert expected
    assert [r.key for r in listed.list(**scope)] == expected


@pytest.mark.parametrize(
    "scope",
    [
        ("zz",),
        ("a",),  # a prefix of "a.ns" is not "a.ns"
        ("a.n%",),  # nor is a LIKE pattern
        ("a.ns", "h"),
        ("a.ns", "hub%"),
        ("a.ns", "nohub"),
        ("a.ns", "hub", "c"),
        ("a.ns", "hub", "cg%"),
        ("a.ns", "HUB", "cg"),
    ],
)
def test_list_filters_match_whole_components_only(
    listed: BasePersister, scope: tuple[str, ...]
) -> None:
    assert listed.list(*scope) == []


def test_list_of_an_empty_store(persister: BasePersister) -> None:
    assert persister.list() == []
    assert persister.list(NS, HUB, CG) == []


@pytest.mark.parametrize(
    ("filters", "error", "field"),
    [
        ({"name": ""}, ValueError, "name"),
        ({"consumer_group": 7}, TypeError, "consumer_group"),
        ({"namespace": NS, "consumer_group": "c\x00g"}, ValueError, "consumer_group"),
        ({"namespace": ""}, ValueError, "namespace"),
        ({"namespace": 5}, TypeError, "namespace"),
        ({"namespace": NS, "name": "h\x00b"}, ValueError, "name"),
        ({"namespace": NS, "name": HUB, "consumer_group": "c" * 257}, ValueError, "consumer_group"),
    ],
    ids=["empty-name", "int-group", "nul-group", "empty", "int", "nul", "too-long"],
)
def test_list_filters_are_validated(
    persister: BasePersister, filters: dict[str, object], error: type[Exception], field: str
) -> None:
    with pytest.raises(error, match=names_component(field)):
        persister.list(**filters)  # type: ignore[arg-type]


# -- delete -------------------------------------------------------------------------------


def test_delete_one_partition(listed: BasePersister) -> None:
    assert listed.delete("a.ns", "hub", "cg", "1") == 1
    assert listed.read("a.ns", "hub", "cg", "1") == Checkpoint.start_of_stream()
    remaining = [k for k in LISTED if k != key("1", "a.ns", "hub", "cg")]
    assert [r.key for r in listed.list()] == remaining  # "10", "11" and cg2's "1" are kept
    assert listed.delete("a.ns", "hub", "cg", "1") == 0
    listed.write("a.ns", "hub", "cg", "1", Checkpoint("again", 1))
    assert listed.read("a.ns", "hub", "cg", "1") == Checkpoint("again", 1)


def test_delete_a_whole_consumer_group(listed: BasePersister) -> None:
    group = [k for k in LISTED if k[:3] == ("a.ns", "hub", "cg")]
    assert listed.delete("a.ns", "hub", "cg") == len(group) == 7
    assert listed.list("a.ns", "hub", "cg") == []
    assert [r.key for r in listed.list()] == [k for k in LISTED if k not in group]
    assert listed.delete("a.ns", "hub", "cg") == 0


@pytest.mark.parametrize(
    "target",
    [
        ("a.ns", "hub", "cg", "4"),
        ("a.ns", "hub", "cg", "01"),
        ("a.ns", "hub", "c", None),
        ("a.ns", "hub", "cg%", None),
        ("a.ns", "nohub", "cg", None),
        ("a", "hub", "cg", None),
        ("zz", "hub", "cg", "0"),
    ],
)
def test_delete_of_nothing_returns_zero_and_removes_nothing(
    listed: BasePersister, target: tuple[str, str, str, str | None]
) -> None:
    assert listed.delete(*target) == 0
    assert [r.key for r in listed.list()] == LISTED


@pytest.mark.parametrize(
    ("args", "error", "field"),
    [
        (("", HUB, CG), ValueError, "namespace"),
        ((NS, 5, CG), TypeError, "name"),
        ((NS, HUB, "c\x00g"), ValueError, "consumer_group"),
        ((NS, HUB, CG, ""), ValueError, "partition_id"),
        ((NS, HUB, CG, 0), TypeError, "partition_id"),
        ((NS, HUB, CG, "p" * 257), ValueError, "partition_id"),
    ],
    ids=["empty-namespace", "int-name", "nul-group", "empty-partition", "int-partition", "long"],
)
def test_delete_arguments_are_validated(
    persister: BasePersister, args: tuple[object, ...], error: type[Exception], field: str
) -> None:
    persister.write(*key(), Checkpoint("1", 1))
    with pytest.raises(error, match=names_component(field)):
        persister.delete(*args)  # type: ignore[arg-type]
    assert stored(persister) == {key(): Checkpoint("1", 1)}


def test_delete_needs_the_whole_group(persister: BasePersister) -> None:
    persister.write(*key(), Checkpoint("1", 1))
    with pytest.raises(TypeError, match="name must be a str"):
        persister.delete(NS, None, CG)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="consumer_group must be a str"):
        persister.delete(NS, HUB, None)  # type: ignore[arg-type]
    assert stored(persister) == {key(): Checkpoint("1", 1)}


# -- validation before storage -------------------------------------------------------------

BAD_COMPONENTS: list[tuple[object, type[Exception]]] = [
    ("", ValueError),
    ("a\x00b", ValueError),
    ("x" * 257, ValueError),
    ("\ud83d", ValueError),  # half of a surrogate pair: not encodable
    (7, TypeError),
    (b"bytes", TypeError),
]


def _calls_with_bad_component(
    persister: BasePersister, position: int, bad: object
) -> Iterator[tuple[str, Callable[[], object]]]:
    """Every method called with ``bad`` in place of one component of a valid key."""
    args: list[Any] = list(key("9"))
    args[position] = bad
    bad_key: Any = tuple(args)
    cp = Checkpoint("2", 2)
    yield "write", lambda: persister.write(args[0], args[1], args[2], args[3], cp)
    yield "read", lambda: persister.read(*args)
    yield "write_many", lambda: persister.write_many({bad_key: cp})
    yield "write_many(second item)", lambda: persister.write_many([(key("8"), cp), (bad_key, cp)])
    yield "delete", lambda: persister.delete(*args)
    if position < 3:
        yield "list", lambda: persister.list(*args[: position + 1])


def _raised_by(call: Callable[[], object]) -> Exception | None:
    try:
        call()
    except Exception as exc:
        return exc
    return None


@pytest.mark.parametrize("position", range(4), ids=FIELDS)
def test_every_method_validates_each_key_component_before_storage(
    persister: BasePersister, position: int
) -> None:
    seed = {key("0"): Checkpoint("1", 1)}
    persister.write_many(seed)
    field = FIELDS[position]
    for bad, error in BAD_COMPONENTS:
        for method, call in _calls_with_bad_component(persister, position, bad):
            raised = _raised_by(call)
            assert isinstance(raised, error), f"{method} with {field}={bad!r} raised {raised!r}"
            assert names_component(field).search(str(raised)), f"{method}: {raised}"
    assert stored(persister) == seed


@pytest.mark.parametrize(
    "bad",
    ["120", None, 120, {"offset": "1", "sequenceNumber": 1}, ("1", 1, None)],
    ids=["str", "none", "int", "dict", "tuple"],
)
def test_write_refuses_what_is_not_a_checkpoint(persister: BasePersister, bad: object) -> None:
    with pytest.raises(TypeError, match="checkpoint"):
        persister.write(*key(), bad)  # type: ignore[arg-type]
    assert persister.list() == []
    assert persister.read(*key()) == Checkpoint.start_of_stream()


# -- monotonic mode ------------------------------------------------------------------------


def test_monotonic_refuses_a_lower_sequence_number_and_changes_nothing(backend: Backend) -> None:
    persister = backend.open(monotonic=True)
    assert persister.monotonic is True
    first = Checkpoint("200", 20, datetime(2026, 1, 1, tzinfo=UTC))
    persister.write(*key(), first)
    lower = Checkpoint("199", 19, datetime(2026, 1, 2, tzinfo=UTC))
    with pytest.raises(CheckpointRegressionError) as info:
        persister.write(*key(), lower)
    error = info.value
    assert isinstance(error, PersistError)
    assert (error.key, error.stored, error.refused) == (key(), first, lower)
    assert persister.read(*key()) == first
    assert backend.open().read(*key()) == first
    assert stored(persister) == {key(): first}


def test_monotonic_accepts_equal_and_higher(backend: Backend) -> None:
    persister = backend.open(monotonic=True)
    persister.write(*key(), Checkpoint("200", 20))
    persister.write(*key(), Checkpoint("201", 20))  # equal: accepted, offset replaced
    assert persister.read(*key()) == Checkpoint("201", 20)
    persister.write(*key(), Checkpoint("300", 30))
    assert persister.read(*key()) == Checkpoint("300", 30)
    persister.write(*key("1"), Checkpoint("low", INT64_MIN))  # nothing stored yet: any value
    assert persister.read(*key("1")) == Checkpoint("low", INT64_MIN)
    with pytest.raises(CheckpointRegressionError):
        persister.write(*key(), Checkpoint("x", INT64_MIN))
    persister.write(*key(), Checkpoint("top", INT64_MAX))
    assert persister.read(*key()) == Checkpoint("top", INT64_MAX)


def test_monotonic_compares_with_the_store_not_with_what_it_wrote(backend: Backend) -> None:
    guarded, plain = backend.open(monotonic=True), backend.open()
    guarded.write(*key(), Checkpoint("20", 20))
    plain.write(*key(), Checkpoint("5", 5))  # a non-monotonic writer may go back
    guarded.write(*key(), Checkpoint("10", 10))  # higher than what is stored now
    assert plain.read(*key()) == Checkpoint("10", 10)
    plain.write(*key(), Checkpoint("50", 50))
    with pytest.raises(CheckpointRegressionError) as info:
        guarded.write(*key(), Checkpoint("30", 30))
    assert info.value.stored == Checkpoint("50", 50)
    assert guarded.read(*key()) == Checkpoint("50", 50)


def test_monotonic_write_many_with_one_regression_rejects_the_whole_batch(
    backend: Backend,
) -> None:
    persister = backend.open(monotonic=True)
    seed = {key(str(i)): Checkpoint(f"s{i}", 10) for i in range(3)}
    persister.write_many(seed)
    batch = {
        key("0"): Checkpoint("n0", 11),
        key("1"): Checkpoint("n1", 9),  # the one regression
        key("2"): Checkpoint("n2", 10),
        key("3"): Checkpoint("n3", 1),  # a new key
    }
    with pytest.raises(CheckpointRegressionError) as info:
        persister.write_many(batch)
    error = info.value
    assert (error.key, error.stored, error.refused) == (key("1"), seed[key("1")], batch[key("1")])
    assert stored(persister) == seed
    assert backend.open().read(*key("3")) == Checkpoint.start_of_stream()
    del batch[key("1")]
    persister.write_many(batch)  # equal and higher are accepted together
    assert stored(persister) == {**seed, **batch}


def test_not_monotonic_by_default(backend: Backend) -> None:
    persister = backend.open()
    assert persister.monotonic is False
    persister.write(*key(), Checkpoint("20", 20))
    persister.write_many({key(): Checkpoint("10", 10)})
    assert persister.read(*key()) == Checkpoint("10", 10)


# -- records, lifecycle, protocol -----------------------------------------------------------


def test_updated_at_is_none_or_an_aware_utc_time_of_the_write(persister: BasePersister) -> None:
    before = datetime.now(UTC)
    persister.write(*key("0"), Checkpoint("1", 1))
    persister.write_many({key("1"): Checkpoint("2", 2)})
    after = datetime.now(UTC)
    records = persister.list()
    assert len(records) == 2
    for record in records:
        when = record.updated_at
        if when is None:
            continue
        assert isinstance(when, datetime)
        assert when.utcoffset() == timedelta(0), when
        assert before - CLOCK_SLACK <= when <= after + CLOCK_SLACK, (before, when, after)


def test_context_manager_closes_and_a_closed_persister_refuses_every_call(
    backend: Backend,
) -> None:
    with backend.open() as persister:
        persister.write(*key(), Checkpoint("1", 1))
    assert persister.closed
    calls: list[Callable[[], object]] = [
        lambda: persister.read(*key()),
        lambda: persister.write(*key(), Checkpoint("2", 2)),
        lambda: persister.write_many({key(): Checkpoint("2", 2)}),
        persister.list,
        lambda: persister.list(NS),
        lambda: persister.delete(NS, HUB, CG),
        lambda: persister.delete(*key()),
    ]
    for call in calls:
        with pytest.raises(PersistError, match="closed"):
            call()
    persister.close()  # idempotent
    assert persister.closed


def test_context_manager_closes_on_error(backend: Backend) -> None:
    with pytest.raises(RuntimeError, match="boom"), backend.open() as persister:
        raise RuntimeError("boom")
    assert persister.closed


def test_closing_one_persister_leaves_an_earlier_one_on_the_same_store_working(
    backend: Backend,
) -> None:
    first = backend.open()
    first.write(*key(), Checkpoint("1", 1))
    second = backend.open()
    assert second.read(*key()) == Checkpoint("1", 1)
    second.close()
    assert first.read(*key()) == Checkpoint("1", 1)
    first.write(*key(), Checkpoint("2", 2))
    assert first.read(*key()) == Checkpoint("2", 2)


def test_every_backend_is_a_checkpoint_persister(persister: BasePersister) -> None:
    assert isinstance(persister, CheckpointPersister)
    assert isinstance(persister, BasePersister)
    assert not persister.closed


def test_the_protocol_is_exactly_gos_write_and_read() -> None:
    class GoShaped:
        def write(self, ns: str, name: str, cg: str, pid: str, cp: Checkpoint) -> None:
            """Go's Write."""

        def read(self, ns: str, name: str, cg: str, pid: str) -> Checkpoint:
            return Checkpoint.start_of_stream()

    class ReadOnly:
        def read(self, ns: str, name: str, cg: str, pid: str) -> Checkpoint:
            return Checkpoint.start_of_stream()

    assert isinstance(GoShaped(), CheckpointPersister)
    assert not isinstance(ReadOnly(), CheckpointPersister)


def test_durable_backends_keep_data_after_close_and_reopen(durable_backend: Backend) -> None:
    backend = durable_backend
    assert backend.durable
    expected = {key(str(i)): ROUND_TRIP[i] for i in range(len(ROUND_TRIP))}
    with backend.open() as writer:
        writer.write_many(expected)
        writer.write(*key("0", group="cg2"), Checkpoint("single", 1))
    expected[key("0", group="cg2")] = Checkpoint("single", 1)
    backend.close_all()
    with backend.open() as reader:
        assert stored(reader) == expected
        assert reader.read(*key("0")) == ROUND_TRIP[0]
    with backend.open(monotonic=True) as guarded, pytest.raises(CheckpointRegressionError):
        guarded.write(*key("0"), Checkpoint("back", ROUND_TRIP[0].sequence_number - 1))


# -- unusual names --------------------------------------------------------------------------

ODD_NAMES = [
    "with space",
    " padded ",
    "a/b",
    "/",
    "a\\b",
    "..",
    ".",
    ".hidden",
    "trailing.",
    "%",
    "%41",
    "100%",
    "🎉",
    "ünïcödé",
    "日本語",
    "CON",
    "nul.txt",
    "tab\there",
    "new\nline",
    "quote'\"",
    "*?<>|:",
    "x" * 256,
    "😀" * 256,
]


def _go_layout_refuses(k: PartitionKey) -> bool:
    """Whether Go's flat file naming can't hold ``k``: a separator, or a name too long."""
    go_name = "_".join(part.replace("$", "") for part in k)
    return any("/" in part or "\\" in part for part in k) or len(go_name.encode()) > 255


def _odd_keys() -> list[PartitionKey]:
    keys = [PartitionKey("é" * 256, "😀" * 256, "日" * 256, "ü" * 256)]
    for name in ODD_NAMES:
        for position in range(4):
            parts = list(key("0"))
            parts[position] = name
            keys.append(PartitionKey(*parts))
    return keys


def test_unusual_names_round_trip(persister: BasePersister, backend: Backend) -> None:
    written: dict[PartitionKey, Checkpoint] = {}
    for index, k in enumerate(_odd_keys()):
        checkpoint = Checkpoint(str(index), index)
        if backend.go_layout and _go_layout_refuses(k):
            with pytest.raises(ValueError):  # noqa: PT011 - the go layout documents the refusal
                persister.write(*k, checkpoint)
            continue
        persister.write(*k, checkpoint)
        written[k] = checkpoint
    for k, checkpoint in written.items():
        assert persister.read(*k) == checkpoint, k
    assert stored(persister) == written
    records = persister.list()
    assert records == sorted(records, key=record_sort_key)
    for group in {k[:3] for k in written}:
        in_group = [r.key for r in records if r.key[:3] == group]
        assert [r.key for r in persister.list(*group)] == in_group
    assert persister.delete(*written.popitem()[0]) == 1
    assert stored(persister) == written


def test_names_with_dollar_and_underscore(persister: BasePersister, backend: Backend) -> None:
    keys = [
        PartitionKey(NS, HUB, "$Default", "0"),
        PartitionKey("my_ns", "my_hub", "cg_1", "p2"),
        PartitionKey(NS, "hub$x", CG, "1"),
    ]
    for index, k in enumerate(keys):
        persister.write(*k, Checkpoint(str(index), index))
    for index, k in enumerate(keys):
        assert persister.read(*k) == Checkpoint(str(index), index)
        # Even Go's naming recovers the caller's names when the group is given.
        assert [(r.key, r.checkpoint) for r in persister.list(*k[:3])] == [
            (k, Checkpoint(str(index), index))
        ]
    if backend.go_layout:
        # Go's naming drops `$` and splits on `_`: an unfiltered list() shows the names as Go
        # stored them and skips the name with too many `_`; `$Default` and `Default` share a file.
        assert stored(persister) == {
            PartitionKey(NS, HUB, "Default", "0"): Checkpoint("0", 0),
            PartitionKey(NS, "hubx", CG, "1"): Checkpoint("2", 2),
        }
        persister.write(NS, HUB, "Default", "0", Checkpoint("no-dollar", 9))
        assert persister.read(*keys[0]) == Checkpoint("no-dollar", 9)
        return
    assert stored(persister) == {k: Checkpoint(str(i), i) for i, k in enumerate(keys)}
    persister.write(NS, HUB, "Default", "0", Checkpoint("no-dollar", 9))
    assert persister.read(*keys[0]) == Checkpoint("0", 0)
