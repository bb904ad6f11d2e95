"""A child process for the FilePersister crash and race tests (run as a script, not collected).

``crash DIR LAYOUT FIRST_SEQ``: write ever-increasing sequence numbers round-robin over
:data:`PARTITIONS` (every fifth round as one ``write_many``), printing ``<partition> <seq>``
after each write returns, until killed.

``race DIR LAYOUT SEQ,SEQ,...``: print ``ready``, wait for a line on stdin, then write each
sequence number to :data:`RACE_KEY` in monotonic mode; after every accepted write, read back
and check the stored value never went below it. Prints a JSON summary; exits non-zero on any
error other than a refused regression.
"""

from __future__ import annotations

import json
import sys

from streamcheckpoint import Checkpoint, CheckpointRegressionError, FilePersister, PartitionKey

PARTITIONS = [PartitionKey("ns", "hub", "$Default", str(p)) for p in range(4)]
RACE_KEY = PartitionKey("ns", "hub", "$Default", "0")


def crash(directory: str, layout: str, first_seq: int) -> None:
    persister = FilePersister(directory, layout=layout)
    seq = first_seq
    while True:
        if seq % 5 == 0:
            batch = {key: Checkpoint(str(seq), seq) for key in PARTITIONS}
            persister.write_many(batch)
            acked = list(PARTITIONS)
        else:
            key = PARTITIONS[seq % len(PARTITIONS)]
            persister.write(*key, Checkpoint(str(seq), seq))
            acked = [key]
        sys.stdout.write("".join(f"{key.partition_id} {seq}\n" for key in acked))
        sys.stdout.flush()
        seq += 1


def race(directory: str, layout: str, seqs: list[int]) -> None:
    persister = FilePersister(directory, layout=layout, monotonic=True)
    print("ready", flush=True)
    sys.stdin.readline()
    accepted = refused = 0
    for seq in seqs:
        try:
            persister.write(*RACE_KEY, Checkpoint(str(seq), seq))
        except CheckpointRegressionError as exc:
            if not exc.stored.sequence_number > exc.refused.sequence_number == seq:
                raise SystemExit(f"refused for no reason: {exc}") from exc
            refused += 1
            continue
        accepted += 1
        stored = persister.read(*RACE_KEY).sequence_number
        assert stored >= seq, f"stored {stored} went below the accepted {seq}"
    print(json.dumps({"accepted": accepted, "refused": refused}), flush=True)


def main(argv: list[str]) -> None:
    mode, directory, layout, arg = argv
    if mode == "crash":
        crash(directory, layout, int(arg))
    elif mode == "race":
        race(directory, layout, [int(s) for s in arg.split(",")])
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
