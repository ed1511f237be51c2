"""Fuzz the parser, validator and normalizer with the property tests' strategies and checks, at length.

    .venv/bin/python dev/fuzz.py [--inputs 1000000] [--seed N] [--round 2000] [--shrink]

Runs the checks of tests/properties.py on inputs drawn from tests/strategies.py (the same code the
property tests use) in rounds of `--round` examples per check, round robin, until `--inputs` generated
rows and bodies have been tried. Each round has its own seed, `--seed` plus the round's number, so a run
replays exactly with the same `--seed`. A failing example is counted (a property that did not hold, or a
crash: any other exception) and the first few are printed with their traceback; `--shrink` instead stops
at the first one and lets Hypothesis shrink it to a minimal example. Prints the counts (inputs, events,
dead letters by rule, refused answers, failures) and exits 1 if anything failed.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

# The strategies and checks live with the tests; this command imports them from the checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hypothesis import Phase, given, seed, settings
from hypothesis import strategies as st

from tests import properties, strategies

SHOWN_FAILURES: Final = 3


@dataclass
class Failures:
    count: int = 0
    crashes: int = 0
    shown: list[str] = field(default_factory=list)

    def add(self, check: str, example: Any, exc: BaseException) -> None:
        self.count += 1
        self.crashes += not isinstance(exc, AssertionError)
        if len(self.shown) < SHOWN_FAILURES:
            try:
                text = repr(example)
            except RecursionError:
                text = "(nested too deep to print)"
            trace = "".join(traceback.format_exception(exc))
            self.shown.append(f"{check}: {text[:2000]}\n{trace}")


def checks(tally: properties.Tally) -> list[tuple[str, st.SearchStrategy[Any], Callable[[Any], None]]]:
    """Each property test's strategy and check; a round runs each one as many times."""
    return [
        (
            "valid row fields",
            st.tuples(strategies.valid_rows(), strategies.utc_texts()),
            lambda drawn: properties.check_valid_row_fields(*drawn, tally),
        ),
        (
            "numbers as strings",
            strategies.plain_rows,
            lambda row: properties.check_strings_read_as_numbers(row, tally),
        ),
        (
            "valid rows",
            st.tuples(strategies.valid_row_lists, strategies.floors),
            lambda drawn: properties.check_valid_rows(*drawn, tally),
        ),
        (
            "any rows",
            st.tuples(strategies.row_lists(), strategies.floors),
            lambda drawn: properties.check_chunk(*drawn, tally),
        ),
        (
            "chunking",
            st.tuples(strategies.row_lists(), strategies.floors, st.lists(st.integers(0, 20), max_size=4)),
            lambda drawn: properties.check_chunking(*drawn, tally),
        ),
        ("bodies", strategies.bodies(), lambda body: properties.check_body(body, tally)),
    ]


def run_round(
    name: str,
    strategy: st.SearchStrategy[Any],
    check: Callable[[Any], None],
    *,
    examples: int,
    round_seed: int,
    failures: Failures,
    shrink: bool,
) -> None:
    def attempt(drawn: Any) -> None:
        if shrink:
            check(drawn)
            return
        try:
            check(drawn)
        except Exception as exc:  # counted and shown; the run goes on
            failures.add(name, drawn, exc)

    phases = [Phase.generate, Phase.shrink] if shrink else [Phase.generate]
    runner = seed(round_seed)(
        settings(strategies.SUITE_SETTINGS, derandomize=False, max_examples=examples, phases=phases)(
            given(strategy)(attempt)
        )
    )
    try:
        runner()
    except Exception as exc:  # only with shrink: Hypothesis has printed the minimal example
        failures.add(name, "(the minimal example is printed above)", exc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=int, default=1_000_000, help="generated rows and bodies to try")
    parser.add_argument("--seed", type=int, default=None, help="replay a run (default: a random seed)")
    parser.add_argument("--round", type=int, default=2000, help="examples per check and round")
    parser.add_argument("--shrink", action="store_true", help="stop at the first failure and shrink it")
    args = parser.parse_args(argv)
    base_seed = random.randrange(1 << 32) if args.seed is None else args.seed
    print(f"fuzz: seed {base_seed} (replay: dev/fuzz.py --seed {base_seed} --inputs {args.inputs})", flush=True)

    tally = properties.Tally()
    failures = Failures()
    started = time.monotonic()
    round_number = 0
    while tally.total_inputs() < args.inputs and not (args.shrink and failures.count):
        for name, strategy, check in checks(tally):
            run_round(
                name,
                strategy,
                check,
                examples=args.round,
                round_seed=base_seed + round_number,
                failures=failures,
                shrink=args.shrink,
            )
        round_number += 1
        print(
            f"fuzz: round {round_number}: {tally.total_inputs():,} inputs, {failures.count} failures, "
            f"{time.monotonic() - started:.0f} s",
            flush=True,
        )

    print(f"inputs: {tally.total_inputs():,} ({', '.join(f'{n:,} {k}' for k, n in sorted(tally.inputs.items()))})")
    print(f"events: {tally.events:,}")
    print(f"dead letters: {sum(tally.dead_letters.values()):,}")
    for rule, count in sorted(tally.dead_letters.items()):
        print(f"  {rule}: {count:,}")
    print(f"dropped (at or below the floor, or repeated): {tally.dropped:,}")
    print(f"answers refused: {sum(tally.refused_answers.values()):,}")
    for reason, count in sorted(tally.refused_answers.items()):
        print(f"  {reason}: {count:,}")
    held = failures.count - failures.crashes
    print(f"failures: {failures.count} (crashes: {failures.crashes}, properties that did not hold: {held})")
    print(f"time: {time.monotonic() - started:.0f} s, seed {base_seed}")
    for shown in failures.shown:
        print("\n" + shown)
    return 1 if failures.count else 0


if __name__ == "__main__":
    sys.exit(main())
