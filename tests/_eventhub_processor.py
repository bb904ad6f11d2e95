"""One azure-eventhub processor with our store, in a process of its own, on a synthetic stream.

Run by tests/test_eventhub_processors.py: ``python _eventhub_processor.py URL SCHEMA MODE NAME
FENCE CONTROL_DIR``, MODE ``sync`` or ``aio``. The SDK's own ``EventProcessor`` runs as
``EventHubConsumerClient.receive`` runs it, with a stub client in place of the network (as the
SDK's own processor tests do): the stub's ``_create_consumer`` hands out a consumer per
partition that delivers one event every 20 ms, starting where the SDK asks (the stored offset,
exclusive). Offsets are non-numeric text (``geo:<partition>:<sequence>``), as on geo-replicated
hubs. Every event is checkpointed. What happens is printed as JSON lines on stdout.

While ``CONTROL_DIR/pause-NAME`` exists, the next event's handler stops the whole process with
SIGSTOP (holding the lock that every store call takes, so that no transaction is open while it
is stopped); once continued, it checkpoints that event.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from azure.eventhub import EventData
from azure.eventhub._client_base import _Address
from azure.eventhub._constants import PROP_OFFSET, PROP_SEQ_NUMBER

from streamcheckpoint.eventhub import SQLCheckpointStore
from streamcheckpoint.eventhub import aio as eventhub_aio

NAMESPACE = "ns.servicebus.windows.net"
HUB = "hub"
GROUP = "$Default"
PARTITIONS = ["0", "1", "2", "3"]
LOAD_BALANCING_INTERVAL = 0.4
EXPIRATION = 2.5
EVENT_EVERY = 0.02


_say_lock = threading.Lock()


def say(**fields: Any) -> None:
    """Print one JSON line. The SDK calls handlers from a thread per partition: ``print`` writes
    the text and its newline separately, so two threads could run their lines together."""
    line = json.dumps(fields) + "\n"
    with _say_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


def offset_of(partition: str, sequence: int) -> str:
    return f"geo:{partition}:{sequence}"


def first_sequence(position: object, inclusive: bool) -> int:
    """Where a consumer starts: the stream's start, or after (at) the stored offset."""
    if position in ("-1", "@latest"):
        return 0
    assert isinstance(position, str), position
    stored = int(position.rsplit(":", 1)[1])
    return stored if inclusive else stored + 1


def event(partition: str, sequence: int) -> EventData:
    data = EventData(f"{partition}/{sequence}")
    data._raw_amqp_message.annotations = {
        PROP_SEQ_NUMBER: sequence,
        PROP_OFFSET: offset_of(partition, sequence).encode(),
    }
    return data


class Stub:
    """The part of EventHubConsumerClient the processor uses."""

    eventhub_name = HUB

    def __init__(self, consumer_class: type[Any]) -> None:
        self._address = _Address(hostname=NAMESPACE, path=HUB)
        self._consumer_class = consumer_class

    def get_partition_ids(self) -> list[str]:
        return PARTITIONS

    def _create_consumer(
        self, consumer_group: str, partition_id: str, event_position: Any, on_event: Any, **kw: Any
    ) -> Any:
        inclusive = bool(kw.get("event_position_inclusive"))
        say(start=partition_id, position=event_position, inclusive=inclusive)
        return self._consumer_class(
            partition_id, first_sequence(event_position, inclusive), on_event
        )


class AsyncStub(Stub):
    async def get_partition_ids(self) -> list[str]:  # type: ignore[override]
        return PARTITIONS


class Consumer:
    def __init__(self, partition: str, sequence: int, on_event: Any) -> None:
        self.partition, self.sequence, self.on_event = partition, sequence, on_event
        self.stop = False
        self.first = True

    def _next(self) -> EventData:
        if self.first:
            say(first=self.partition, seq=self.sequence)
            self.first = False
        data = event(self.partition, self.sequence)
        self.sequence += 1
        return data

    def receive(self, *args: Any) -> None:
        time.sleep(EVENT_EVERY)
        self.on_event(self._next())

    def close(self) -> None:
        pass


class AsyncConsumer(Consumer):
    async def receive(self, *args: Any) -> None:  # type: ignore[override]
        await asyncio.sleep(EVENT_EVERY)
        await self.on_event(self._next())

    async def close(self) -> None:  # type: ignore[override]
        pass


def pause_requested(control: Path, name: str) -> bool:
    return (control / f"pause-{name}").exists()


def stop_myself(partition: str, sequence: int | None) -> None:
    say(paused=partition, seq=sequence)
    os.kill(os.getpid(), signal.SIGSTOP)
    say(resumed=partition)


def run_sync(url: str, schema: str | None, name: str, fence: bool, control: Path) -> None:
    from azure.eventhub._eventprocessor.event_processor import EventProcessor

    lock = threading.Lock()

    class Guarded(SQLCheckpointStore):
        def list_ownership(self, *args: Any, **kwargs: Any) -> Any:
            with lock:
                return super().list_ownership(*args, **kwargs)

        def claim_ownership(self, *args: Any, **kwargs: Any) -> Any:
            with lock:
                return super().claim_ownership(*args, **kwargs)

        def update_checkpoint(self, *args: Any, **kwargs: Any) -> Any:
            with lock:
                return super().update_checkpoint(*args, **kwargs)

        def list_checkpoints(self, *args: Any, **kwargs: Any) -> Any:
            with lock:
                return super().list_checkpoints(*args, **kwargs)

    store = Guarded(url, schema=schema, fence_checkpoints=fence)

    def on_event(context: Any, data: EventData | None) -> None:
        if data is None:
            return
        if pause_requested(control, name):
            with lock:
                stop_myself(context.partition_id, data.sequence_number)
        context.update_checkpoint(data)
        say(ckpt=context.partition_id, seq=data.sequence_number)

    def on_error(context: Any, error: Exception) -> None:
        say(error=type(error).__name__, partition=context.partition_id if context else None)

    processor = EventProcessor(
        Stub(Consumer),  # type: ignore[arg-type]
        GROUP,
        on_event,
        on_error=on_error,
        checkpoint_store=store,
        initial_event_position="-1",
        load_balancing_interval=LOAD_BALANCING_INTERVAL,
        partition_ownership_expiration_interval=EXPIRATION,
    )
    signal.signal(signal.SIGTERM, lambda *_: processor.stop())
    say(owner=processor._id)
    processor.start()
    store.close()
    say(stopped=name)


def run_aio(url: str, schema: str | None, name: str, fence: bool, control: Path) -> None:
    from azure.eventhub.aio._eventprocessor.event_processor import EventProcessor

    async def main() -> None:
        lock = asyncio.Lock()

        class Guarded(eventhub_aio.SQLCheckpointStore):
            async def list_ownership(self, *args: Any, **kwargs: Any) -> Any:
                async with lock:
                    return await super().list_ownership(*args, **kwargs)

            async def claim_ownership(self, *args: Any, **kwargs: Any) -> Any:
                async with lock:
                    return await super().claim_ownership(*args, **kwargs)

            async def update_checkpoint(self, *args: Any, **kwargs: Any) -> Any:
                async with lock:
                    return await super().update_checkpoint(*args, **kwargs)

            async def list_checkpoints(self, *args: Any, **kwargs: Any) -> Any:
                async with lock:
                    return await super().list_checkpoints(*args, **kwargs)

        store = Guarded(url, schema=schema, fence_checkpoints=fence)

        async def on_event(context: Any, data: EventData | None) -> None:
            if data is None:
                return
            if pause_requested(control, name):
                async with lock:
                    stop_myself(context.partition_id, data.sequence_number)
            await context.update_checkpoint(data)
            say(ckpt=context.partition_id, seq=data.sequence_number)

        async def on_error(context: Any, error: Exception) -> None:
            say(error=type(error).__name__, partition=context.partition_id if context else None)

        processor = EventProcessor(
            AsyncStub(AsyncConsumer),  # type: ignore[arg-type]
            GROUP,
            on_event,  # type: ignore[arg-type]
            error_handler=on_error,
            checkpoint_store=store,
            initial_event_position="-1",
            load_balancing_interval=LOAD_BALANCING_INTERVAL,
            partition_ownership_expiration_interval=EXPIRATION,
        )
        stopping = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set_result, None)
        say(owner=processor._id)
        running = asyncio.create_task(processor.start())
        await stopping
        await processor.stop()
        await running
        await store.close()
        say(stopped=name)

    asyncio.run(main())


if __name__ == "__main__":
    url, schema, mode, name, fence, control = sys.argv[1:7]
    runner = run_sync if mode == "sync" else run_aio
    runner(url, schema or None, name, fence == "1", Path(control))
