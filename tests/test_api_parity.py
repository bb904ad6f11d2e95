"""The APIs that must stay in step: the asyncio classes mirror the synchronous ones, method for
method and signature for signature, and ``BasePersister`` implements the ``CheckpointPersister``
protocol as it is declared. A method added to one side and forgotten on the other fails here."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest

from streamcheckpoint import (
    AsyncPersister,
    AsyncSQLPersister,
    BasePersister,
    CheckpointPersister,
    MemoryPersister,
    SQLPersister,
)

# What only the asyncio side has: opening is explicit there, and the wrapped persister is shown.
ASYNC_ONLY = {"open", "sync"}
# The context manager protocols, each side its own.
CONTEXT = {"sync": ("__enter__", "__exit__"), "async": ("__aenter__", "__aexit__")}


def public_names(instance: object) -> set[str]:
    return {name for name in dir(instance) if not name.startswith("_")}


def signature(function: Any) -> list[tuple[str, Any, Any, Any]]:
    """A comparable signature: every parameter's name, kind, default and annotation, and the
    return annotation (under ``from __future__ import annotations`` both sides are text)."""
    found = inspect.signature(function)
    parameters = [(p.name, p.kind, p.default, p.annotation) for p in found.parameters.values()]
    return [*parameters, ("return", None, None, found.return_annotation)]


def assert_mirrors(sync: object, asynchronous: object) -> None:
    names = public_names(sync)
    assert public_names(asynchronous) - ASYNC_ONLY == names
    for name in names:
        ours, theirs = getattr(type(sync), name, None), getattr(type(asynchronous), name, None)
        if isinstance(ours, property) or ours is None:  # properties and instance attributes
            assert getattr(asynchronous, name) == getattr(sync, name), name
            continue
        assert callable(ours), name
        assert inspect.iscoroutinefunction(theirs), f"{name} is not a coroutine function"
        assert not inspect.iscoroutinefunction(ours), name
        assert signature(theirs) == signature(ours), name
    for method in CONTEXT["sync"]:
        assert hasattr(sync, method)
    for method in CONTEXT["async"]:
        assert inspect.iscoroutinefunction(getattr(asynchronous, method)), method


def test_base_persister_implements_the_protocol_as_declared() -> None:
    protocol = {
        name
        for name, member in vars(CheckpointPersister).items()
        if not name.startswith("_") and callable(member)
    }
    assert protocol == {"write", "read"}
    for name in protocol:
        assert signature(getattr(BasePersister, name)) == signature(
            getattr(CheckpointPersister, name)
        )
    assert isinstance(MemoryPersister(), CheckpointPersister)


def test_async_persister_mirrors_base_persister() -> None:
    async def main() -> None:
        sync = MemoryPersister(monotonic=True)
        async with AsyncPersister(MemoryPersister(monotonic=True)) as wrapped:
            assert_mirrors(sync, wrapped)

    asyncio.run(main())


def test_async_sql_persister_mirrors_sql_persister() -> None:
    async def main() -> None:
        sync = SQLPersister("sqlite://", monotonic=True)
        try:
            async with AsyncSQLPersister("sqlite://", monotonic=True) as opened:
                public = public_names(opened) - {"engine"}  # each has its own database
                assert public == public_names(sync) - {"engine"} | ASYNC_ONLY
                assert_mirrors_except_engine(sync, opened)
        finally:
            sync.close()

    asyncio.run(main())


def assert_mirrors_except_engine(sync: SQLPersister, opened: AsyncSQLPersister) -> None:
    for name in public_names(sync) - {"engine"}:
        ours, theirs = getattr(SQLPersister, name, None), getattr(AsyncSQLPersister, name, None)
        if isinstance(ours, property) or ours is None:
            assert getattr(opened, name) == getattr(sync, name), name
        else:
            assert signature(theirs) == signature(ours), name
    assert opened.engine.url == sync.engine.url


def test_async_sql_persister_takes_sql_persisters_arguments_plus_max_workers() -> None:
    sync = signature(SQLPersister.__init__)
    asynchronous = signature(AsyncSQLPersister.__init__)
    max_workers = ("max_workers", inspect.Parameter.KEYWORD_ONLY, 4, "int")
    assert [p for p in asynchronous if p != max_workers] == sync


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"url_or_engine": 42}, TypeError),
        ({"url_or_engine": "nosuchdb://x"}, ValueError),
        ({"url_or_engine": "sqlite://", "schema": "s"}, ValueError),
        ({"url_or_engine": "sqlite://", "monotonic": "yes"}, TypeError),
        ({"url_or_engine": "sqlite://", "migrate": 1}, TypeError),
        ({"url_or_engine": "mysql://root@127.0.0.1/"}, ValueError),
    ],
)
def test_both_sql_persisters_refuse_the_same_arguments_the_same_way(
    arguments: dict[str, Any], error: type[Exception]
) -> None:
    """The asyncio constructor runs the synchronous one's checks, before any I/O."""
    with pytest.raises(error) as sync:
        SQLPersister(**arguments)
    with pytest.raises(error) as asynchronous:
        AsyncSQLPersister(**arguments)
    assert str(asynchronous.value) == str(sync.value)
