"""Names for checkpoint files: the pure codec from partition keys to file names and back.

It serves the two layouts of :class:`~streamcheckpoint.file.FilePersister` and does no I/O; it
also names the persister's own temporary and lock files so that they never look like checkpoints.

``layout="nested"``::

    <dir>/<namespace>/<name>/<consumer_group>/<partition_id>.json

Each component is encoded by :func:`encode_name`: ``a-z``, ``0-9``, ``_``, ``$``, ``@``, ``-``
and an inner ``.`` are kept; every other character, *uppercase letters included*, becomes ``%XX``
per UTF-8 byte (uppercase hex). So names differing only in case never share a file on a
case-insensitive file system, and a name that is a Windows device (``con``, ``lpt1``...) gets its
first character escaped. An encoded component longer than 200 bytes is split into several
directory levels, every chunk but the last ending with a bare ``%`` (which the encoding never
produces), so keys of four 256-character components of any Unicode still fit the 255-byte
file-name limit (the whole path may be longer than ``PATH_MAX``: the persister opens it one level
at a time). :func:`nested_path` gives a key's path, :func:`parse_nested_path` the key back.

``layout="go"``: Go's own naming, flat in the directory (:func:`go_file_name`):
``namespace_name_consumerGroup_partitionID`` with every ``$`` removed, body exactly Go's JSON.
**Go's naming can make two keys share a file**: ``("a_b", "c", ...)`` and ``("a", "b_c", ...)``
are the same file, and so are ``"$Default"`` and ``"Default"``. A component containing ``/``,
``\\`` or NUL, or one that is empty once ``$`` is removed, is refused with ``ValueError``.
``list(ns, name, cg)`` (and deleting a whole consumer group) finds the group's files by name
prefix but skips a partition id containing ``_``: ``ns_hub_a_b_2`` could be partition ``2`` of
group ``a_b``, which must not be listed, reset or deleted with group ``a``. Such a partition is
still read, written and deleted by its exact key.

Temporary files are named ``.sctmp-<hex>`` and the lock file ``.sclock``: they start with ``.``
and contain no ``_``, so they never look like checkpoints in either layout.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Literal, NamedTuple

from .checkpoint import KEY_FIELDS, PartitionKey, make_key

__all__ = [
    "FileTarget",
    "Layout",
    "check_layout",
    "decode_name",
    "encode_name",
    "file_target",
    "go_file_name",
    "go_key",
    "go_prefix",
    "join_chunks",
    "nested_dirs",
    "nested_path",
    "parse_nested_path",
    "refuse_shared_go_files",
    "valid_key",
]

Layout = Literal["nested", "go"]

TEMP_PREFIX = ".sctmp-"
LOCK_NAME = ".sclock"

JSON_SUFFIX = ".json"
MAX_CHUNK = 200
"""Longest encoded chunk stored in one file or directory name (the limit is 255 bytes)."""
MAX_GO_NAME = 255

_KEEP = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_$@-")
_DEVICE = re.compile(r"(?:con|prn|aux|nul|com[0-9]|lpt[0-9]|conin\$|conout\$)", re.IGNORECASE)
_DEVICE_AT_START = re.compile(_DEVICE.pattern + r"(?:\.|$)", re.IGNORECASE)
_GO_FORBIDDEN = ("/", "\\", "\x00")


# -- the nested layout ---------------------------------------------------------------------


def encode_name(text: str) -> str:
    """Encode one key component as a safe, reversible file-name fragment.

    Keeps ``[a-z0-9_$@-]`` and ``.`` (not first or last); everything else becomes ``%XX`` per
    UTF-8 byte, uppercase hex. A Windows device name before the first ``.`` gets its first
    character escaped. The result may be longer than a file name allows: see
    :func:`nested_path`.
    """
    last = len(text) - 1
    parts: list[str] = []
    for index, char in enumerate(text):
        if char in _KEEP or (char == "." and 0 < index < last):
            parts.append(char)
        else:
            parts.extend(f"%{byte:02X}" for byte in char.encode("utf-8"))
    encoded = "".join(parts)
    if _DEVICE.fullmatch(encoded.split(".", 1)[0]):
        encoded = f"%{ord(encoded[0]):02X}{encoded[1:]}"
    return encoded


def decode_name(encoded: str) -> str | None:
    """Return the component :func:`encode_name` maps to ``encoded``, or ``None`` if there is none.

    Only the canonical encoding decodes: ``"%61"`` (an escaped ``a``) gives ``None``, so a stray
    file can never produce a key.
    """
    raw = bytearray()
    index = 0
    try:
        while index < len(encoded):
            char = encoded[index]
            if char == "%":
                raw.append(int(encoded[index + 1 : index + 3], 16))
                index += 3
            else:
                raw.extend(char.encode("utf-8"))
                index += 1
        text = raw.decode("utf-8")
    except (ValueError, UnicodeError):
        return None
    return text if text and encode_name(text) == encoded else None


def _chunk_starts_safely(encoded: str, cut: int) -> bool:
    """Whether a chunk may start at ``cut``: not inside ``%XX``, not at ``.``, not a device."""
    if "%" in encoded[max(cut - 2, 0) : cut]:
        return False
    return encoded[cut] != "." and not _DEVICE_AT_START.match(encoded, cut)


def _chunks(encoded: str) -> list[str]:
    """Split an encoded component into names of at most ``MAX_CHUNK + 1`` bytes.

    Every chunk but the last ends with a bare ``%``. Deterministic, so a decoded name can be
    checked for being canonical by splitting it again.
    """
    chunks: list[str] = []
    start = 0
    while len(encoded) - start > MAX_CHUNK:
        cut = start + MAX_CHUNK
        while not _chunk_starts_safely(encoded, cut):
            cut -= 1
        assert cut > start, "a safe place to split exists within a few characters"
        chunks.append(encoded[start:cut] + "%")
        start = cut
    chunks.append(encoded[start:])
    return chunks


def join_chunks(chunks: Sequence[str]) -> str | None:
    """Decode a component stored as ``chunks``; ``None`` unless they are its canonical form."""
    if not chunks or any(not c.endswith("%") for c in chunks[:-1]):
        return None
    encoded = "".join(c[:-1] for c in chunks[:-1]) + chunks[-1]
    text = decode_name(encoded)
    if text is None or _chunks(encoded) != list(chunks):
        return None
    return text


def nested_path(key: PartitionKey) -> tuple[str, ...]:
    """The relative path of ``key``'s file in the nested layout, one name per element."""
    segments = nested_dirs(key[:3])
    partition = _chunks(encode_name(key.partition_id))
    partition[-1] += JSON_SUFFIX
    return (*segments, *partition)


def nested_dirs(components: Sequence[str]) -> list[str]:
    """The directory names (below the root) of the keys starting with ``components``."""
    return [chunk for component in components for chunk in _chunks(encode_name(component))]


def parse_nested_path(segments: Sequence[str]) -> PartitionKey | None:
    """The key whose :func:`nested_path` is ``segments``, or ``None`` if no key has that path."""
    if not segments or not segments[-1].endswith(JSON_SUFFIX):
        return None
    names = [*segments[:-1], segments[-1][: -len(JSON_SUFFIX)]]
    components: list[str] = []
    pending: list[str] = []
    for name in names:
        pending.append(name)
        if not name.endswith("%"):
            component = join_chunks(pending)
            if component is None:
                return None
            components.append(component)
            pending = []
    return None if pending else valid_key(components)


# -- Go's names ----------------------------------------------------------------------------


def _go_component(field: str, value: str) -> str:
    """``value`` as Go names it (``$`` removed); ``ValueError`` if Go's naming can't store it."""
    for bad in _GO_FORBIDDEN:
        if bad in value:
            raise ValueError(
                f"{field} {value!r} contains {bad!r}, which the go file layout can't store "
                "(it would be a path separator); use layout='nested'"
            )
    stripped = value.replace("$", "")
    if not stripped:
        raise ValueError(
            f"{field} {value!r} is empty once '$' is removed, as Go's file naming does; "
            "use layout='nested'"
        )
    return stripped


def go_prefix(components: Sequence[str]) -> list[str]:
    return [_go_component(f, v) for f, v in zip(KEY_FIELDS, components, strict=False)]


def go_file_name(key: PartitionKey) -> str:
    """Go's file name for ``key``: the components joined by ``_``, every ``$`` removed.

    Raises ``ValueError`` naming the component for what Go's naming can't store safely.
    """
    name = "_".join(go_prefix(key))
    if len(name.encode("utf-8")) > MAX_GO_NAME:
        raise ValueError(
            f"the go file layout's name for {key.describe()} is longer than {MAX_GO_NAME} bytes; "
            "use layout='nested'"
        )
    return name


def refuse_shared_go_files(keys: Sequence[PartitionKey], names: Sequence[str]) -> None:
    """``ValueError`` if two of ``keys`` (written together) share a file; ``names`` are theirs."""
    seen: dict[str, PartitionKey] = {}
    for key, name in zip(keys, names, strict=True):
        other = seen.setdefault(name, key)
        if other != key:
            raise ValueError(
                f"write_many got {other.describe()} and {key.describe()}, which share the file "
                f"{name!r} in Go's file naming; write them separately or use layout='nested'"
            )


def go_key(name: str, prefix: tuple[str, ...], go_prefix: Sequence[str]) -> PartitionKey | None:
    """The key a go-layout file ``name`` is listed under, or ``None`` if it doesn't match.

    With the full group as ``prefix`` the partition id is what follows it, if that has no
    ``_``: ``ns_hub_a_b_2`` may be partition ``b_2`` of group ``a`` or partition ``2`` of group
    ``a_b``, and listing (or deleting, or resetting) group ``a`` must not touch group ``a_b``.
    Otherwise the name must split into exactly four non-empty parts.
    """
    if len(prefix) == 3:
        head = "_".join(go_prefix) + "_"
        partition = name[len(head) :]
        if not name.startswith(head) or not partition or "_" in partition:
            return None
        parts = [*prefix, partition]
    else:
        split = name.split("_")
        if len(split) != 4 or not all(split) or split[: len(prefix)] != list(go_prefix):
            return None
        parts = [*prefix, *split[len(prefix) :]]
    return valid_key(parts)


# -- both layouts --------------------------------------------------------------------------


def valid_key(parts: Sequence[str]) -> PartitionKey | None:
    """``parts`` as a key, or ``None`` if they are not four valid components."""
    if len(parts) != 4:
        return None
    try:
        return make_key(parts[0], parts[1], parts[2], parts[3])
    except ValueError:
        return None


def check_layout(layout: object) -> Layout:
    """``layout`` if it is one of the two; ``ValueError`` otherwise."""
    if layout == "nested":
        return "nested"
    if layout == "go":
        return "go"
    raise ValueError(f"layout must be 'nested' or 'go', not {layout!r}")


class FileTarget(NamedTuple):
    """Where one checkpoint lives: a directory (names below the root) and a file name in it."""

    directory: tuple[str, ...]
    file: str


def file_target(key: PartitionKey, layout: Layout) -> FileTarget:
    """Where ``key``'s checkpoint lives in ``layout``."""
    if layout == "go":
        return FileTarget((), go_file_name(key))
    return _nested_target(key)


@functools.lru_cache(maxsize=4096)
def _nested_target(key: PartitionKey) -> FileTarget:
    """Cached: a consumer writes the same keys again and again."""
    *directory, file = nested_path(key)
    return FileTarget(tuple(directory), file)
