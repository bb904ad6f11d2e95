"""A fork server for the SIGKILL tests (run as a script, not collected).

Python and SQLAlchemy take ~0.3-0.5 s to start, so a test that kills hundreds of writers doesn't
start hundreds of interpreters: it starts this script once, which imports everything a writer
needs and then forks writers on request. Each writer creates its persister *after* the fork (as
SQLite requires), so no connection or file is shared with the server or with another writer.

``python _writer_server.py STORE_JSON`` where ``STORE_JSON`` says which store to open:
``{"url": ..., "schema": ...}`` for a :class:`~streamcheckpoint.SQLPersister`, or
``{"directory": ..., "layout": ...}`` for a :class:`~streamcheckpoint.FilePersister`. It prints
``ready``, then answers one line on stdout for each line it reads on stdin:

``start WRITER FIRST_COUNTER MONOTONIC PARTITION,PARTITION,... ACK_FILE [STORE_JSON]``
    fork a writer (see :func:`write_until_killed`) on the server's store, or on the one
    ``STORE_JSON`` (without spaces) names; answers ``started PID``.
``kill PID``
    SIGKILL that writer and reap it; answers ``killed PID HOW``, ``HOW`` being ``signal 9`` for a
    writer the kill ended, or ``exit N`` for one that had already died (a failure).

At the end of its input the server kills and reaps every writer still running and exits. A writer
also dies with the server (``PR_SET_PDEATHSIG``), so a test that fails or is killed leaves no
process behind. Only the server reaps writers, so it never signals a process id that was reused.

The ack file of a writer is appended to, one line per event, each line written whole by one
``write`` call: ``opened`` once the persister is open; ``try COUNTER P,P`` before each write;
``ack COUNTER P,P`` after the write returned, followed by an ``fsync`` of the ack file; and
``error TEXT`` if a call raised (the writer then exits with status 1).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import traceback
from datetime import datetime, timedelta, timezone
from typing import Any

# Everything a writer imports, imported once here so that a forked writer starts at once.
import alembic.command
import alembic.config
import alembic.script
import psycopg
import pymysql
import sqlalchemy
import sqlalchemy.dialects.mysql.pymysql
import sqlalchemy.dialects.postgresql.psycopg
import sqlalchemy.dialects.sqlite.pysqlite

import streamcheckpoint.sql.migrations
from streamcheckpoint import Checkpoint, FilePersister, PartitionKey, SQLPersister
from streamcheckpoint.persister import BasePersister

_PRELOADED = (alembic, psycopg, pymysql, sqlalchemy, streamcheckpoint.sql.migrations)

KEY_GROUP = ("ns", "hub", "$Default")
"""Namespace, event hub and consumer group of every checkpoint the writers write."""
BATCH_EVERY = 5
"""Every fifth counter is written with one ``write_many`` to all of the writer's partitions."""
EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)

_PR_SET_PDEATHSIG = 1


def checkpoint_for(writer: int, partition: str, counter: int) -> Checkpoint:
    """The checkpoint ``writer`` writes to ``partition`` for ``counter``: every field derives
    from the three, so a stored value tells who wrote it, where and when."""
    return Checkpoint(
        f"w{writer}.p{partition}.c{counter}",
        counter,
        EPOCH + timedelta(milliseconds=counter),
    )


def targets_of(partitions: list[str], counter: int) -> list[str]:
    """The partitions written for ``counter``: all of them (a batch) or one, round-robin."""
    if counter % BATCH_EVERY == 0:
        return list(partitions)
    return [partitions[counter % len(partitions)]]


def open_store(store: dict[str, Any], *, monotonic: bool) -> BasePersister:
    """Open the persister ``store`` describes (see the module docstring)."""
    if "url" in store:
        return SQLPersister(store["url"], schema=store.get("schema"), monotonic=monotonic)
    return FilePersister(store["directory"], layout=store["layout"], monotonic=monotonic)


def write_until_killed(
    store: dict[str, Any],
    writer: int,
    first_counter: int,
    monotonic: bool,
    partitions: list[str],
    ack_file: str,
) -> None:
    """Write ever-increasing counters to ``partitions``, logging each to ``ack_file``, forever."""
    fd = os.open(ack_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        persister = open_store(store, monotonic=monotonic)
        os.write(fd, b"opened\n")
        counter = first_counter
        while True:
            targets = targets_of(partitions, counter)
            line = f"{counter} {','.join(targets)}\n"
            os.write(fd, f"try {line}".encode())
            if len(targets) == 1:
                persister.write(*KEY_GROUP, targets[0], checkpoint_for(writer, targets[0], counter))
            else:
                persister.write_many(
                    {
                        PartitionKey(*KEY_GROUP, p): checkpoint_for(writer, p, counter)
                        for p in targets
                    }
                )
            os.write(fd, f"ack {line}".encode())
            os.fsync(fd)
            counter += 1
    except BaseException:
        text = traceback.format_exc().replace("\n", " | ")
        os.write(fd, f"error {text}\n".encode())
        os.fsync(fd)
        os._exit(1)


def _die_with_parent(parent: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        os._exit(3)
    if os.getppid() != parent:  # the server died before the request took effect
        os._exit(3)


def _fork_writer(store: dict[str, Any], args: list[str]) -> int:
    writer, first_counter, monotonic, partitions, ack_file, *other = args
    if other:
        store = json.loads(other[0])
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        try:
            _die_with_parent(parent)
            os.dup2(os.open(os.devnull, os.O_RDWR), 0)  # the protocol's pipes are the server's
            os.dup2(os.open(os.devnull, os.O_RDWR), 1)
            write_until_killed(
                store,
                int(writer),
                int(first_counter),
                monotonic == "1",
                partitions.split(","),
                ack_file,
            )
        finally:
            os._exit(2)
    return pid


def _kill(pid: int) -> str:
    os.kill(pid, signal.SIGKILL)  # a writer that died is a zombie until we reap it: no reuse
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"exit {os.WEXITSTATUS(status)}"


def serve(store: dict[str, Any]) -> None:
    """Answer requests on stdin until it ends; then kill every writer still running."""
    running: set[int] = set()
    print("ready", flush=True)
    try:
        for line in sys.stdin:
            command, *args = line.split()
            if command == "start":
                pid = _fork_writer(store, args)
                running.add(pid)
                print(f"started {pid}", flush=True)
            elif command == "kill":
                pid = int(args[0])
                running.discard(pid)
                print(f"killed {pid} {_kill(pid)}", flush=True)
            else:
                raise SystemExit(f"unknown command {line!r}")
    finally:
        for pid in running:
            _kill(pid)


if __name__ == "__main__":
    serve(json.loads(sys.argv[1]))
