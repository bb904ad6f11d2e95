"""``streamcheckpoint demo``: a consumer over a deterministic synthetic stream.

It shows the library's job end to end: read the stored checkpoints, resume right after them,
checkpoint every K events, and survive being killed at any moment.
"""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
)
from rich.table import Table
from rich.text import Text

from ..checkpoint import START_OF_STREAM, Checkpoint
from ..persister import BasePersister

__all__ = ["DEMO_CONSUMER_GROUP", "DEMO_NAME", "DEMO_NAMESPACE", "event_checkpoint", "run_demo"]

DEMO_NAMESPACE = "demo.servicebus.windows.net"
DEMO_NAME = "demo-hub"
DEMO_CONSUMER_GROUP = "$Default"

_EVENT_BYTES = 512
_STREAM_START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def event_checkpoint(partition: int, sequence: int) -> Checkpoint:
    """The checkpoint of event ``sequence`` of ``partition`` in the synthetic stream."""
    return Checkpoint(
        offset=str(sequence * _EVENT_BYTES),
        sequence_number=sequence,
        enqueue_time=_STREAM_START + timedelta(milliseconds=10 * sequence + partition),
    )


def _resume_point(stored: Checkpoint) -> int:
    """The first sequence number still to process after ``stored``."""
    if stored.offset == START_OF_STREAM:
        return 0
    return stored.sequence_number + 1


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:>9,.0f} ev/s" if speed else "        - ev/s")


@dataclass
class _Partition:
    index: int
    next_sequence: int
    reported: int = 0  # events shown as done on the progress bar

    @property
    def partition_id(self) -> str:
        return str(self.index)


def _crash(console: Console, processed: int) -> None:
    console.print(f"[bold red]simulated crash after {processed} events[/] (no clean shutdown)")
    sys.stdout.flush()
    if hasattr(signal, "SIGKILL"):
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(70)


def run_demo(
    persister: BasePersister,
    *,
    url: str,
    partitions: int,
    events: int,
    checkpoint_every: int,
    crash_after: int | None,
    console: Console,
) -> int:
    """Consume ``events`` events per partition, resuming after stored checkpoints.

    A stream every partition has already finished is started over (its checkpoints deleted),
    so that the demo can always be run again. Returns how many events this run processed.
    """
    key = (DEMO_NAMESPACE, DEMO_NAME, DEMO_CONSUMER_GROUP)
    states = [_Partition(p, _resume_point(persister.read(*key, str(p)))) for p in range(partitions)]
    if all(state.next_sequence >= events for state in states):
        persister.delete(*key)
        console.print(
            f"every partition finished the {events:,}-event stream in an earlier run: "
            "starting it over (its checkpoints deleted)"
        )
        states = [_Partition(p, 0) for p in range(partitions)]
    console.print(_resume_table(states, url, events))

    processed = 0
    with Progress(
        TextColumn("{task.description:>14}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        console=console,
    ) as progress:
        total = progress.add_task(
            "all partitions",
            total=partitions * events,
            completed=sum(min(s.next_sequence, events) for s in states),
        )
        task_ids: dict[int, TaskID] = {}
        for state in states:
            state.reported = min(state.next_sequence, events)
            task_ids[state.index] = progress.add_task(
                f"partition {state.index}", total=events, completed=min(state.next_sequence, events)
            )
        active = [s for s in states if s.next_sequence < events]
        while active:
            for state in list(active):
                sequence = state.next_sequence
                state.next_sequence += 1
                processed += 1
                last = state.next_sequence == events
                if last or state.next_sequence % checkpoint_every == 0:
                    persister.write(
                        *key, state.partition_id, event_checkpoint(state.index, sequence)
                    )
                    done = state.next_sequence - state.reported
                    state.reported = state.next_sequence
                    progress.advance(task_ids[state.index], done)
                    progress.advance(total, done)
                if crash_after is not None and processed >= crash_after:
                    progress.stop()
                    _crash(console, processed)
                if last:
                    active.remove(state)
    console.print(
        f"processed {processed} events this run; every partition is at sequence {events - 1}"
    )
    return processed


def _resume_table(states: list[_Partition], url: str, events: int) -> Table:
    # Text, not a str: a URL such as sqlite:///[x].db must not be read as rich markup.
    table = Table(title=Text(f"Resuming from {url}"), title_justify="left")
    table.add_column("Partition", justify="right")
    table.add_column("Resumes at sequence", justify="right")
    table.add_column("State")
    for state in states:
        if state.next_sequence >= events:
            note = "already complete"
        elif state.next_sequence == 0:
            note = "start of stream (no checkpoint)"
        else:
            note = f"after checkpoint at {state.next_sequence - 1}"
        table.add_row(str(state.index), str(state.next_sequence), note)
    return table
