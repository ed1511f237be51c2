"""Parse benchmark: rows per second and peak memory of each answer format, on the same simulated rows.

    .venv/bin/python dev/bench/parse_formats.py [--rows 200000] [--answer-rows 10000] [--repeat 3] [--process]

The simulator renders the same rows in every format (JSON with numbers, JSON with numbers as strings,
csv, txt, pipe) into answer files of `--answer-rows` rows each (0: one answer holding every row). Each
format is then parsed in a fresh child process: it reads its answers from disk in 256 KiB pieces through
`answer_row_chunks`, exactly as the feed client reads an HTTP body, and drops each chunk once counted.
The clocks (wall and CPU; CPU time is steadier on a shared machine) cover the parsing only (with
`--process`, also validation and normalization into events).
Peak memory is the child's VmHWM minus its VmRSS just before parsing, so the interpreter and the modules
are not counted. Each child checks it saw every row. The figure per format is the median of `--repeat`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

from cdr_stream.answers.parse import AnswerFormat, answer_row_chunks
from cdr_stream.records.processor import RecordProcessor
from cdr_stream.simulator import FeedGenerator, GeneratorConfig
from cdr_stream.simulator.formats import NumbersAs, RowCache, framing

READ_SIZE: Final = 256 * 1024
CHUNK_ROWS: Final = 10_000
# (label, format asked for, how the JSON renders numbers)
VARIANTS: Final[tuple[tuple[str, AnswerFormat, NumbersAs], ...]] = (
    ("json", "json", "number"),
    ("json (strings)", "json", "string"),
    ("csv", "csv", "number"),
    ("txt", "txt", "number"),
    ("pipe", "pipe", "number"),
)


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def write_answers(folder: Path, rows: int, answer_rows: int, seed: int) -> dict[str, list[Path]]:
    """Every variant's answers as files; the same rows in each."""
    generator = FeedGenerator(GeneratorConfig(seed=seed, span_records=rows))
    size = answer_rows or rows
    answers: dict[str, list[Path]] = {}
    for label, fmt, numbers_as in VARIANTS:
        cache = RowCache(generator, numbers_as)
        frame = framing(fmt)
        paths = []
        for start in range(1, rows + 1, size):
            ids = range(start, min(start + size, rows + 1))
            path = folder / f"{label.replace(' ', '_')}-{start:09d}.{fmt}"
            with path.open("wb") as out:
                out.write(frame.opening)
                out.write(frame.separator.join(cache.rows(ids, fmt)))
                out.write(frame.closing)
            paths.append(path)
        answers[label] = paths
    return answers


async def parse_files(paths: list[str], fmt: AnswerFormat, process: bool) -> tuple[int, float, float]:
    processor = RecordProcessor("bench") if process else None
    rows = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    for path in paths:
        with open(path, "rb") as body:  # noqa: ASYNC230 - a local file read stands in for the HTTP body

            async def read(size: int, body: Any = body) -> bytes:
                data: bytes = body.read(size)
                return data

            async for chunk in answer_row_chunks(read, fmt=fmt, chunk_rows=CHUNK_ROWS):
                rows += len(chunk)
                if processor is not None:
                    processor.process_chunk(chunk, 0)
    return rows, time.perf_counter() - started, time.process_time() - cpu_started


def child(args: argparse.Namespace) -> int:
    baseline = status_kib("VmRSS")
    rows, seconds, cpu = asyncio.run(parse_files(args.files, args.fmt, args.process))
    print(json.dumps({"rows": rows, "seconds": seconds, "cpu": cpu, "peak_kib": status_kib("VmHWM") - baseline}))
    return 0


def measure(paths: list[Path], fmt: AnswerFormat, process: bool) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", "--fmt", fmt, *(["--process"] if process else [])]
    done = subprocess.run([*command, *map(str, paths)], capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000, help="rows in every format (default %(default)s)")
    parser.add_argument("--answer-rows", type=int, default=10_000, help="rows per answer, 0 = one answer")
    parser.add_argument("--repeat", type=int, default=3, help="runs per format; the median is shown")
    parser.add_argument("--seed", type=int, default=1, help="simulated data seed")
    parser.add_argument("--process", action="store_true", help="also validate and normalize every row")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--fmt", help=argparse.SUPPRESS)
    parser.add_argument("files", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    with tempfile.TemporaryDirectory(prefix="cdr-parse-bench-") as work:
        answers = write_answers(Path(work), args.rows, args.answer_rows, args.seed)
        what = "parse + validate + normalize" if args.process else "parse"
        print(
            f"{what}: {args.rows:,} rows in answers of {args.answer_rows or args.rows:,} rows, median of {args.repeat}"
        )
        print(
            f"{'format':<16} {'MB':>7} {'seconds':>8} {'rows/s':>10} {'vs json':>8} "
            f"{'rows/cpu-s':>11} {'vs json':>8} {'peak MB':>8}"
        )
        json_rate = json_cpu_rate = None
        failed = False
        for label, fmt, _ in VARIANTS:
            runs = [measure(answers[label], fmt, args.process) for _ in range(args.repeat)]
            if any(run["rows"] != args.rows for run in runs):
                print(f"{label}: parsed {[run['rows'] for run in runs]} rows, expected {args.rows}")
                failed = True
                continue
            seconds = statistics.median(run["seconds"] for run in runs)
            rate = args.rows / seconds
            cpu_rate = args.rows / statistics.median(run["cpu"] for run in runs)
            json_rate, json_cpu_rate = json_rate or rate, json_cpu_rate or cpu_rate
            megabytes = sum(path.stat().st_size for path in answers[label]) / 1e6
            peak = max(run["peak_kib"] for run in runs) / 1024
            print(
                f"{label:<16} {megabytes:>7.1f} {seconds:>8.2f} {rate:>10,.0f} {rate / json_rate:>7.2f}x "
                f"{cpu_rate:>11,.0f} {cpu_rate / json_cpu_rate:>7.2f}x {peak:>8.1f}"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
