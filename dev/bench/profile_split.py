"""Split py-spy samples of a catch-up into where a record's CPU time goes.

    .venv/bin/python dev/bench/catchup.py --records 1000000 --py-spy /tmp/spy
    .venv/bin/python dev/bench/profile_split.py /tmp/spy/<run>.raw.txt [--top 10]

The input is py-spy's raw format (one folded stack a line, root first, then the sample count), as
`catchup.py --py-spy DIR` writes it, with the run's records and connector CPU seconds beside it in
<run>.json. Each sample goes to the category of the innermost frame that names one (see RULES): the
HTTP read, the parse, the ordering of the answer, validation, normalization, serialization, the Kafka
client, the commit, the start-up imports, or other (the poll loop, the event loop, metrics, logging).
Python frames only: native code (orjson, jsonschema-rs, the socket calls) counts to the Python
function that called it. The CPU per record of a category is its share of the samples times the
connector's CPU seconds over the records. It also lists the hottest functions by their own samples.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Final

import orjson

FRAME: Final = re.compile(r"^(?P<function>.*) \((?P<file>[^:()]*)(?::\d+)?\)$")

Rule = tuple[str, Callable[[str, str], bool]]


def ours(file: str, *modules: str) -> bool:
    """Whether `file` is one of the connector's `modules`, given by their path in the package."""
    return file.startswith("cdr_stream/") and file.removeprefix("cdr_stream/") in modules


#: Categories a sample takes when any frame of its stack matches: the transaction's own steps (begin,
#: add partitions, end, their handlers, the offset record) even where the socket write is innermost.
STACK_RULES: Final[list[Rule]] = [
    ("start-up imports", lambda file, fn: file.startswith("<frozen importlib")),
    ("commit", lambda file, fn: ours(file, "kafka/state.py") or file == "aiokafka/producer/transaction_manager.py"),
    ("commit", lambda file, fn: file.startswith("aiokafka/") and ("transaction" in fn.lower() or "txn" in fn.lower())),
]
#: Otherwise, the category the innermost frame that names one gives (each frame tried against the rules in order).
RULES: Final[list[Rule]] = [
    ("serialize", lambda file, fn: ours(file, "records/processor.py") and fn in {"dumps", "_encodable"}),
    ("validate", lambda file, fn: ours(file, "records/processor.py") and fn.startswith("RowValidator.")),
    ("normalize", lambda file, fn: ours(file, "records/processor.py")),
    ("order the answer", lambda file, fn: ours(file, "answers/order.py")),
    (
        "parse",
        lambda file, fn: (
            ours(file, "answers/parse.py", "answers/text.py", "answers/formats.py") or file.startswith("ijson/")
        ),
    ),
    # The transaction's own code, not the events it sends (those are _send_events, the Kafka client).
    ("commit", lambda file, fn: ours(file, "kafka/writer.py") and fn == "TransactionalWriter._transaction"),
    ("Kafka client", lambda file, fn: file.startswith("aiokafka/") or ours(file, "kafka/writer.py")),
    (
        "HTTP read",
        lambda file, fn: file.split("/")[0] in {"aiohttp", "yarl", "multidict"} or ours(file, "sources/http.py"),
    ),
]
ORDER: Final = (
    "HTTP read",
    "parse",
    "order the answer",
    "validate",
    "normalize",
    "serialize",
    "Kafka client",
    "commit",
    "start-up imports",
    "other",
)


def parse_frame(frame: str) -> tuple[str, str]:
    """(function, file) of a py-spy frame such as `RowValidator.check (cdr_stream/records.py:163)`."""
    found = FRAME.match(frame.strip())
    if found is None:
        return frame.strip(), ""
    return found["function"], found["file"]


def category(frames: list[tuple[str, str]]) -> str:
    for name, matches in STACK_RULES:
        if any(matches(file, function) for function, file in frames):
            return name
    for function, file in reversed(frames):
        for name, matches in RULES:
            if matches(file, function):
                return name
    return "other"


def read_samples(path: Path) -> list[tuple[list[tuple[str, str]], int]]:
    samples = []
    for line in path.read_text(encoding="utf-8").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = [parse_frame(frame) for frame in stack.split(";") if frame.strip()]
        samples.append((frames, int(count)))
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("samples", type=Path, help="py-spy raw output (<run>.raw.txt)")
    parser.add_argument("--top", type=int, default=10, help="how many of the hottest functions to list")
    args = parser.parse_args()
    figures = orjson.loads(args.samples.with_name(args.samples.name.removesuffix(".raw.txt") + ".json").read_bytes())
    records, cpu = figures["records"], figures["cpu_seconds"]
    samples = read_samples(args.samples)
    total = sum(count for _, count in samples)
    if not total:
        print(f"{args.samples} holds no samples", file=sys.stderr)
        return 1
    by_category: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    for frames, count in samples:
        by_category[category(frames)] += count
        function, file = frames[-1] if frames else ("(no Python frame)", "")
        by_function[f"{function} ({file})"] += count
    us_per_record = cpu * 1_000_000 / records
    print(f"{total} samples; the connector spent {cpu:.1f} CPU s on {records:,} records ({us_per_record:.1f} us each)")
    print(f"\n{'where':<18} {'samples':>8} {'share':>7} {'us/record':>10}")
    for name in ORDER:
        share = by_category[name] / total
        print(f"{name:<18} {by_category[name]:>8} {share:>7.1%} {share * us_per_record:>10.2f}")
    print(f"\nhottest functions by their own samples (native code counts to its caller), of {total}:")
    for function, count in by_function.most_common(args.top):
        print(f"{count:>8} {count / total:>7.1%}  {function}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
