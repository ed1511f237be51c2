"""Put a whole answer in ID order before any of it is committed, within bounded memory.

The provider does not promise that an answer comes in ID order, and the stored offset is the highest ID
committed: a row committed in a later transaction than a higher one would fall below the offset and be
lost. So the whole answer is read first. A small one is sorted in memory; a large one is written to disk
in sorted runs and read back through a k-way merge (an external merge sort), so memory holds one run
and one chunk whatever the answer's size. Rows then come out in ID order, chunk by chunk, and each
chunk can be committed with its highest ID as the new offset.

The answer is parsed in chunks of `READ_ROWS`, each let go of as soon as its rows are held or spilled:
what a large answer keeps in memory is its first `MEMORY_ROWS` rows (until they spill), then one run
being filled, then one block of each run the merge reads (runs that follow one another in ID order are
read one after another, with no merge) and the chunk being cut.

The spill files live in a directory of their own under `TempSpace.root`, are counted against a byte
limit, and are removed when the answer is done (or abandoned), and by `TempSpace.sweep` at start.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import heapq
import marshal
import pickle
import shutil
import struct
import tempfile
import time
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator
from contextlib import aclosing
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import IO, Any, Final

import orjson

from cdr_stream.errors import SpillError
from cdr_stream.records.event import PreparedRow
from cdr_stream.records.processor import MalformedRow, usable_id

#: Rows held in memory before the answer is spilled to disk (22 MiB of the simulator's rows parsed by
#: orjson, 33 MiB parsed by ijson, whose keys are not shared between rows).
MEMORY_ROWS: Final = 10_000
#: Rows parsed at a time while an answer is read to be sorted: each parsed chunk is held or spilled at
#: once, so a small one costs nothing, and it is all that is parsed beside the held rows or the run.
READ_ROWS: Final = 1_000
#: Bytes of serialized rows sorted in memory and written as one run (about 28,000 rows).
RUN_BYTES: Final = 16 * 1024 * 1024
#: Runs merged at once; more are first merged down in passes (each open run holds a read buffer).
FAN_IN: Final = 64
DEFAULT_MAX_BYTES: Final = 4 * 1024**3
#: About how much of a run is one block: written at once, and read back at once (the merge holds one
#: block of each run it reads, up to FAN_IN of them).
_BLOCK_BYTES: Final = 64 * 1024
#: A run file is a sequence of blocks, each its length and then a marshal list of (key, kind, payload)
#: records in key order. The key is the ID (0 for a row without a usable one: any size). The payload is a
#: prepared row's (key, timestamp, tail), or the row's bytes in the encoding `kind` names.
_BLOCK_HEAD: Final = struct.Struct("<I")
_JSON, _PICKLE, _MALFORMED, _PREPARED = 0, 1, 2, 3
#: A record's size in a block beyond its payload's bytes, roughly (for counting a block's bytes).
_RECORD_BYTES: Final = 40
Record = tuple[int, int, Any]
_PREFIX: Final = "cdr-stream-spill-"
_LOCK: Final = "lock"
_SETUP_SECONDS: Final = 60.0

_key = itemgetter(0)

#: Told after each sorted run is written: rows spilled so far, and the disk they take.
OnRun = Callable[[int, int], None]


@dataclass(slots=True)
class OrderedRows:
    """Rows of an answer in ID order (rows without a usable ID first), each ID above the floor once,
    and how many rows were dropped on the way (counted in the chunk being filled when they were met)."""

    rows: list[Any] = field(default_factory=list)
    #: Rows at or below the floor (already delivered: a re-send).
    dropped_seen: int = 0
    #: Rows that repeated an ID earlier in the answer (the first one is kept).
    dropped_duplicate: int = 0


class TempSpace:
    """Where answers are spilled, and how much of it they may take, shared by all the feeds of a process.

    `used()` is what the spill files take now (a metric reads it); `reserve` refuses to pass `max_bytes`.
    """

    def __init__(self, root: Path | None = None, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root = Path(root) if root is not None else Path(tempfile.gettempdir())
        self.max_bytes = max_bytes
        self._used: dict[str, int] = {}

    def used(self, feed: str | None = None) -> int:
        return sum(self._used.values()) if feed is None else self._used.get(feed, 0)

    def reserve(self, feed: str, size: int) -> None:
        if self.used() + size > self.max_bytes:
            raise SpillError(
                f"sorting the answer needs more than tmp_max_bytes ({self.max_bytes} bytes) of temporary space "
                f"in {self.root}; raise tmp_max_bytes (and the volume behind tmp_dir)"
            )
        self._used[feed] = self._used.get(feed, 0) + size

    def release(self, feed: str, size: int) -> None:
        self._used[feed] = max(0, self._used.get(feed, 0) - size)

    def sweep(self) -> list[Path]:
        """Remove spill directories left by a process that died (their lock is free); return them."""
        removed = []
        with contextlib.suppress(FileNotFoundError):
            for path in self.root.glob(f"{_PREFIX}*"):
                if path.is_dir() and not _locked(path):
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path)
        return removed


def _locked(path: Path) -> bool:
    """Whether a live process holds the directory's lock (or may be about to: it was made a moment ago)."""
    try:
        with open(path / _LOCK, "rb") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            return False
    except FileNotFoundError:
        # Between mkdtemp and the lock, a live process's directory has no lock file yet.
        with contextlib.suppress(OSError):
            return time.time() - path.stat().st_mtime < _SETUP_SECONDS
        return False
    except OSError:
        return False


def _record(key: int, row: Any) -> Record:
    """The row as a record of a run."""
    if row.__class__ is PreparedRow:
        return key, _PREPARED, (row[1], row[2], row[3])
    kind, payload = _encode(row)
    return key, kind, payload


def _size(record: Record) -> int:
    """About how many bytes a record takes in a run (a prepared row: its tail; else its payload)."""
    payload = record[2]
    return (len(payload[2]) if record[1] == _PREPARED else len(payload)) + _RECORD_BYTES


def _encode(row: Any) -> tuple[int, bytes]:
    if isinstance(row, MalformedRow):
        return _MALFORMED, bytes(memoryview(orjson.dumps([row.values, row.reason])))
    try:
        # An exact-size copy: orjson's own result keeps a buffer of kilobytes whatever its length, which
        # the thousands of rows of a run being filled would pin.
        return _JSON, bytes(memoryview(orjson.dumps(row)))
    except TypeError:  # integers beyond 64 bits, nesting deeper than orjson goes: pickle keeps them exactly
        return _PICKLE, pickle.dumps(row, protocol=pickle.HIGHEST_PROTOCOL)


def _decode(kind: int, payload: Any, key: int) -> Any:
    if kind == _PREPARED:
        # tuple.__new__: the named tuple's own __new__ is a Python function, a fifth of this call.
        return tuple.__new__(PreparedRow, (key, *payload))
    if kind == _JSON:
        return orjson.loads(payload)
    if kind == _MALFORMED:
        values, reason = orjson.loads(payload)
        return MalformedRow(values, reason)
    return pickle.loads(payload)  # noqa: S301  # written by this process, a moment ago, into its own directory


def _records(path: Path) -> Iterator[Record]:
    """The records of a run file, in order, a block at a time."""
    with open(path, "rb", buffering=0) as run:
        while head := run.read(_BLOCK_HEAD.size):
            (size,) = _BLOCK_HEAD.unpack(head)
            # Written by this process, a moment ago, into its own locked directory.
            yield from marshal.loads(run.read(size))  # noqa: S302


class _Spill:
    """The sorted runs of one answer, in a private directory held by a lock."""

    def __init__(self, space: TempSpace, feed: str, *, run_bytes: int, fan_in: int, on_run: OnRun | None) -> None:
        self._space = space
        self._feed = feed
        self._on_run = on_run
        self._rows = 0
        self._run_bytes = run_bytes
        self._fan_in = fan_in
        self._bytes = 0
        self._runs: list[Path] = []
        #: Each run's lowest and highest key: runs that follow one another (an answer sent in ID order) are
        #: read one after the other, with no merge.
        self._ranges: dict[Path, tuple[int, int]] = {}
        self._written = 0
        self._pending: list[Record] = []
        self._pending_bytes = 0
        try:
            space.root.mkdir(parents=True, exist_ok=True)
            self.directory = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{feed}-", dir=space.root))
            self._lock: IO[bytes] | None = open(self.directory / _LOCK, "wb")  # noqa: SIM115  # held until close()
            fcntl.flock(self._lock, fcntl.LOCK_EX)
        except OSError as exc:
            raise SpillError(f"cannot use tmp_dir {str(space.root)!r} for sorting an answer: {exc}") from None

    def add(self, key: int, row: Any) -> None:
        record = _record(key, row)
        self._pending.append(record)
        self._pending_bytes += _size(record)
        if self._pending_bytes >= self._run_bytes:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        self._pending.sort(key=_key)  # stable: equal IDs keep the answer's order
        self._write(self._pending, (self._pending[0][0], self._pending[-1][0]))
        self._rows += len(self._pending)
        self._pending, self._pending_bytes = [], 0
        if self._on_run is not None:
            self._on_run(self._rows, self._bytes)

    def _write(self, records: Iterable[Record], keys: tuple[int, int]) -> None:
        self._written += 1
        path = self.directory / f"run-{self._written:06d}"
        try:
            with open(path, "wb", buffering=0) as run:
                block: list[Record] = []
                size = 0
                for record in records:
                    block.append(record)
                    size += _size(record)
                    if size >= _BLOCK_BYTES:
                        self._write_block(run, block)
                        block, size = [], 0
                if block:
                    self._write_block(run, block)
        except OSError as exc:
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
            what = "the disk behind tmp_dir is full" if full else "it cannot be written"
            raise SpillError(f"sorting the answer in {str(self.directory)!r} failed: {what} ({exc})") from None
        self._runs.append(path)
        self._ranges[path] = keys

    def _write_block(self, run: IO[bytes], block: list[Record]) -> None:
        data = marshal.dumps(block)
        self._space.reserve(self._feed, _BLOCK_HEAD.size + len(data))
        self._bytes += _BLOCK_HEAD.size + len(data)
        run.write(_BLOCK_HEAD.pack(len(data)))
        run.write(data)

    def _merge_down(self) -> None:
        """Merge the oldest runs in groups of `fan_in` until at most `fan_in` remain."""
        fan_in = self._fan_in
        while len(self._runs) > fan_in:
            group, self._runs = self._runs[:fan_in], self._runs[fan_in:]
            merged = heapq.merge(*(_records(path) for path in group), key=_key)
            keys = (min(self._ranges[path][0] for path in group), max(self._ranges[path][1] for path in group))
            self._write(merged, keys)
            # The merged run goes first: for equal IDs, its rows came before those of the later runs.
            self._runs.insert(0, self._runs.pop())
            for path in group:
                self._drop(path)

    def _drop(self, path: Path) -> None:
        size = path.stat().st_size
        path.unlink()
        del self._ranges[path]
        self._space.release(self._feed, size)
        self._bytes -= size

    def rows(self) -> Iterator[tuple[int, Any]]:
        """Every spilled row as (key, row), in key order; equal keys in the order they were added."""
        self._flush()
        self._merge_down()
        runs = self._runs
        if all(self._ranges[runs[i]][1] <= self._ranges[runs[i + 1]][0] for i in range(len(runs) - 1)):
            records: Iterable[Record] = chain.from_iterable(_records(path) for path in runs)
        else:
            records = heapq.merge(*(_records(path) for path in runs), key=_key)
        for key, kind, payload in records:
            yield key, _decode(kind, payload, key)

    def close(self) -> None:
        self._space.release(self._feed, self._bytes)
        self._bytes = 0
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        shutil.rmtree(self.directory, ignore_errors=True)


async def ordered_rows(
    chunks: AsyncGenerator[list[Any], None],
    *,
    floor: int,
    chunk_rows: int,
    space: TempSpace,
    feed: str,
    memory_rows: int = MEMORY_ROWS,
    run_bytes: int = RUN_BYTES,
    fan_in: int = FAN_IN,
    on_run: OnRun | None = None,
) -> AsyncGenerator[OrderedRows, None]:
    """Read the whole answer from `chunks`, then yield it in ID order, at most `chunk_rows` rows at a time.

    Rows at or below `floor` and repeated IDs are dropped and counted; rows without
    a usable ID come first, in the answer's order, for the caller to dead-letter. Yields at least one
    chunk, empty when nothing is left. `on_run` hears of each sorted run written to disk.
    """
    dropped_seen = 0
    held: list[tuple[int, Any]] = []
    spill: _Spill | None = None
    try:
        async with aclosing(chunks):
            async for rows in chunks:
                if spill is None and len(held) + len(rows) > memory_rows:
                    spill = _Spill(space, feed, run_bytes=run_bytes, fan_in=fan_in, on_run=on_run)
                    held.reverse()  # popped from the end, in the answer's order: each row goes once written
                    while held:
                        spill.add(*held.pop())
                for row in rows:
                    row_id = row[0] if row.__class__ is PreparedRow else usable_id(row)
                    if row_id is not None and row_id <= floor:
                        dropped_seen += 1
                    elif spill is None:
                        held.append((row_id or 0, row))
                    else:
                        spill.add(row_id or 0, row)
                del rows  # held or spilled now: not kept while the next chunk is parsed, nor through the merge
        if spill is None:
            held.sort(key=_key)
            keyed: Iterator[tuple[int, Any]] = iter(held)
        else:
            keyed = spill.rows()
        out = OrderedRows(dropped_seen=dropped_seen)
        yielded = False
        previous = 0
        for key, row in keyed:
            if key and key == previous:
                out.dropped_duplicate += 1
                continue
            previous = key
            out.rows.append(row)
            if len(out.rows) >= chunk_rows:
                yield out
                yielded = True
                out = OrderedRows()
        if out.rows or out.dropped_seen or out.dropped_duplicate or not yielded:
            yield out
    finally:
        if spill is not None:
            spill.close()
