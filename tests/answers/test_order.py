"""Putting a whole answer in ID order: in memory, and through sorted runs on disk, with the same result."""

from __future__ import annotations

import fcntl
import os
import random
import time
import weakref
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdr_stream.answers.order import OrderedRows, TempSpace, ordered_rows
from cdr_stream.errors import SpillError
from cdr_stream.records.event import PreparedRow
from cdr_stream.records.processor import MalformedRow, usable_id
from tests.strategies import SUITE_SETTINGS


async def answer(rows: list[Any], chunk_rows: int = 7) -> AsyncGenerator[list[Any], None]:
    for begin in range(0, len(rows), chunk_rows):
        yield rows[begin : begin + chunk_rows]


async def collect(rows: list[Any], space: TempSpace, *, floor: int = 0, **limits: int) -> list[OrderedRows]:
    chunk_rows = limits.pop("chunk_rows", 5)
    chunks = ordered_rows(answer(rows), floor=floor, chunk_rows=chunk_rows, space=space, feed="f", **limits)
    return [chunk async for chunk in chunks]


def model(rows: list[Any], floor: int) -> tuple[list[Any], int, int]:
    """What the order must be: rows without a usable ID first (in answer order), then each new ID once
    (its first row), ascending; and how many rows were re-sent or repeated."""
    unkeyed = [row for row in rows if usable_id(row) is None]
    first: dict[int, Any] = {}
    seen = duplicate = 0
    for row in rows:
        row_id = usable_id(row)
        if row_id is None:
            continue
        if row_id <= floor:
            seen += 1
        elif row_id in first:
            duplicate += 1
        else:
            first[row_id] = row
    return unkeyed + [first[key] for key in sorted(first)], seen, duplicate


def flat(chunks: list[OrderedRows]) -> tuple[list[Any], int, int]:
    rows = [row for chunk in chunks for row in chunk.rows]
    return rows, sum(c.dropped_seen for c in chunks), sum(c.dropped_duplicate for c in chunks)


def spill_dirs(root: Path) -> list[Path]:
    return sorted(root.glob("cdr-stream-spill-*"))


def shuffled(count: int, seed: int = 7) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [
        {"ID": str(n) if n % 3 else n, "AccountCode": f"a{n % 5}"} for n in range(1, count + 1)
    ]
    random.Random(seed).shuffle(rows)
    return rows


async def test_a_small_answer_is_sorted_in_memory_and_cut_into_chunks(tmp_path: Path) -> None:
    rows = [{"ID": "7"}, {"ID": 2}, {"nothing": 1}, {"ID": 9}, {"ID": 1}, {"ID": 2, "second": True}, {"ID": 0}]
    chunks = await collect(rows, TempSpace(tmp_path), floor=1, chunk_rows=2)
    assert [chunk.rows for chunk in chunks] == [[{"nothing": 1}, {"ID": 0}], [{"ID": 2}, {"ID": "7"}], [{"ID": 9}]]
    assert flat(chunks)[1:] == (1, 1)  # ID 1 is at the floor; the second ID 2 repeats the first
    assert spill_dirs(tmp_path) == []


@pytest.mark.parametrize("memory_rows", [0, 10_000])
async def test_prepared_rows_come_back_as_they_went_in_spilled_or_held(tmp_path: Path, memory_rows: int) -> None:
    rows: list[Any] = [
        PreparedRow(n, b"acct-%d" % (n % 7), n * 1000, b',"account_code":"x"}' * (n % 3)) for n in range(400, 0, -1)
    ]
    rows += [{"ID": 5, "again": True}, {"ID": "900"}]
    chunks = await collect(rows, TempSpace(tmp_path), floor=3, memory_rows=memory_rows, run_bytes=2048)
    assert flat(chunks) == model(rows, 3)
    assert all(row.__class__ is PreparedRow for row in flat(chunks)[0][:-1])


@pytest.mark.parametrize("repeat", [1, 2, 3])
async def test_an_answer_in_id_order_spills_to_runs_read_one_after_another(tmp_path: Path, repeat: int) -> None:
    # Each ID `repeat` times in a row: a run may end and the next begin with the same ID (the first one counts).
    rows: list[Any] = [{"ID": n, "copy": copy} for n in range(1, 1_500) for copy in range(repeat)]
    rows.insert(700, {"ID": 3, "late": True})  # one row out of order: those runs overlap and are merged
    chunks = await collect(rows, TempSpace(tmp_path), memory_rows=50, run_bytes=2048, chunk_rows=100)
    assert flat(chunks) == model(rows, 0)


async def test_a_large_answer_spills_to_sorted_runs_and_comes_back_in_order(tmp_path: Path) -> None:
    rows = shuffled(3_000)
    rows += [MalformedRow(["1", "2"], "line 9: 2 values for the 26 columns"), {"ID": 2**70}, {"ID": 5, "again": True}]
    space = TempSpace(tmp_path)
    seen_dirs: list[list[Path]] = []
    runs: list[tuple[int, int]] = []
    chunks = ordered_rows(
        answer(rows, 100),
        floor=10,
        chunk_rows=500,
        space=space,
        feed="f",
        memory_rows=200,
        run_bytes=4096,
        fan_in=4,
        on_run=lambda spilled, disk: runs.append((spilled, disk)),
    )
    out = []
    async for chunk in chunks:
        seen_dirs.append(spill_dirs(tmp_path))
        out.append(chunk)
    assert flat(out) == model(rows, 10)
    assert all(len(chunk.rows) <= 500 for chunk in out)
    assert seen_dirs[0], "a large answer is sorted on disk"
    assert len(runs) > 4, "in more runs than are merged at once"
    assert [spilled for spilled, _ in runs] == sorted(spilled for spilled, _ in runs) and runs[-1][0] == len(
        rows
    ) - flat(out)[1]
    assert all(disk > 0 for _, disk in runs)
    assert spill_dirs(tmp_path) == [] and space.used() == 0, "the spill files are removed after the answer"


@SUITE_SETTINGS
@given(
    rows=st.lists(
        st.one_of(
            st.fixed_dictionaries(
                {"ID": st.integers(-2, 40) | st.from_regex(r"\A[0-9]{1,3}\Z")}, optional={"n": st.integers()}
            ),
            st.integers(),
            st.text(max_size=3),
        ),
        max_size=120,
    ),
    floor=st.integers(0, 10),
    memory_rows=st.integers(0, 30),
    run_bytes=st.integers(1, 400),
    fan_in=st.integers(2, 4),
    chunk_rows=st.integers(1, 9),
)
async def test_any_answer_comes_out_as_the_model_says_on_either_path(
    tmp_path_factory: pytest.TempPathFactory,
    rows: list[Any],
    floor: int,
    memory_rows: int,
    run_bytes: int,
    fan_in: int,
    chunk_rows: int,
) -> None:
    root = tmp_path_factory.mktemp("spill")
    chunks = ordered_rows(
        answer(rows, 4),
        floor=floor,
        chunk_rows=chunk_rows,
        space=TempSpace(root),
        feed="f",
        memory_rows=memory_rows,
        run_bytes=run_bytes,
        fan_in=fan_in,
    )
    out = [chunk async for chunk in chunks]
    assert flat(out) == model(rows, floor)
    assert out and all(len(chunk.rows) <= chunk_rows for chunk in out)
    assert spill_dirs(root) == []


class WatchedChunk(list[Any]):
    """A parsed chunk a weak reference can follow (a plain list cannot have one)."""


@pytest.mark.parametrize("memory_rows", [1_000, 25], ids=["in memory", "spilled"])
async def test_a_parsed_chunk_is_let_go_once_its_rows_are_held_or_spilled(tmp_path: Path, memory_rows: int) -> None:
    watched: list[weakref.ref[WatchedChunk]] = []
    alive_when_asked: list[int] = []

    async def parsed() -> AsyncGenerator[list[Any], None]:
        for begin in range(0, 200, 10):
            alive_when_asked.append(sum(ref() is not None for ref in watched))
            chunk = WatchedChunk({"ID": 200 - n} for n in range(begin, begin + 10))
            watched.append(weakref.ref(chunk))
            yield chunk
            del chunk

    chunks = ordered_rows(
        parsed(), floor=0, chunk_rows=50, space=TempSpace(tmp_path), feed="f", memory_rows=memory_rows
    )
    first = await anext(chunks)
    assert [row["ID"] for row in first.rows] == list(range(1, 51))
    # Not one parsed chunk was kept while the next was parsed, nor the last one through the output.
    assert alive_when_asked == [0] * 20
    assert [ref() for ref in watched] == [None] * 20
    await chunks.aclose()


async def test_the_size_limit_fails_the_answer_clearly_and_leaves_nothing_behind(tmp_path: Path) -> None:
    space = TempSpace(tmp_path, max_bytes=50_000)
    with pytest.raises(SpillError, match=r"tmp_max_bytes \(50000 bytes\)"):
        await collect(shuffled(2_000), space, memory_rows=100, run_bytes=10_000)
    assert spill_dirs(tmp_path) == [] and space.used() == 0


async def test_an_unusable_tmp_dir_is_named_in_the_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(SpillError, match="cannot use tmp_dir"):
        await collect(shuffled(50), TempSpace(blocker / "spill"), memory_rows=10)


async def test_an_answer_abandoned_midway_removes_its_files(tmp_path: Path) -> None:
    chunks = ordered_rows(
        answer(shuffled(1_000)), floor=0, chunk_rows=10, space=TempSpace(tmp_path), feed="f", memory_rows=50
    )
    first = await anext(chunks)
    assert first.rows and spill_dirs(tmp_path)
    await chunks.aclose()
    assert spill_dirs(tmp_path) == []


def test_sweep_removes_what_a_dead_process_left_and_keeps_a_live_spill(tmp_path: Path) -> None:
    dead = tmp_path / "cdr-stream-spill-f-dead"
    dead.mkdir()
    (dead / "lock").touch()
    (dead / "run-000001").write_bytes(b"x" * 100)
    live = tmp_path / "cdr-stream-spill-g-live"
    live.mkdir()
    other = tmp_path / "someone-elses"
    other.mkdir()
    starting = tmp_path / "cdr-stream-spill-h-starting"  # made a moment ago, not locked yet
    starting.mkdir()
    unfinished = tmp_path / "cdr-stream-spill-h-unfinished"  # never locked, long ago
    unfinished.mkdir()
    os.utime(unfinished, (time.time() - 3600, time.time() - 3600))
    with open(live / "lock", "wb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        assert sorted(TempSpace(tmp_path).sweep()) == [dead, unfinished]
    assert live.exists() and starting.exists() and other.exists()
