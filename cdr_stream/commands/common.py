"""What every command shares: exit codes, the --config option, argument types, signal handling."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

#: The commands' own logger (their lines read "cdr_stream: ...").
log = logging.getLogger("cdr_stream")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_FENCED = 3

if TYPE_CHECKING:
    #: The subcommand table of the `cdr-stream` parser (argparse has no public name for its type).
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]


def add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=os.environ.get("CDR_STREAM_CONFIG"),
        required="CDR_STREAM_CONFIG" not in os.environ,
        help="the TOML configuration file (default: $CDR_STREAM_CONFIG)",
    )


T = TypeVar("T")


def argument(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse type from a parser that raises ValueError with a message for people."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__
    return convert


def positive(text: str) -> int:
    """A whole number of at least 1."""
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise ValueError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def cancel_on_signals() -> None:
    """SIGTERM or SIGINT cancels the running task: what was committed stays committed, with its progress;
    a commit cut short is aborted."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, task.cancel)
