"""What every command shares: exit codes, the --config option, argument types, signal handling."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from collections.abc import Callable
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from aiokafka.errors import KafkaError

from cdr_stream.errors import RunError, TopicMissingError, TopicSetupError
from cdr_stream.ops.logs import describe_error
from cdr_stream.pipeline.runs import MarkedRun, ProgressT

#: The commands' own logger (their lines read "cdr_stream: ...").
log = logging.getLogger("cdr_stream")


class Exit(IntEnum):
    """The exit status of a command."""

    OK = 0
    #: The work failed or found problems (the message says which).
    FAILED = 1
    #: The configuration or the command line is wrong.
    CONFIG = 2
    #: Every feed was taken over by another instance of the connector.
    FENCED = 3


# The subcommand table of the `cdr-stream` parser (argparse has no public name for its type).
if TYPE_CHECKING:
    Commands = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Commands = argparse._SubParsersAction


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


async def run_to_end(run: MarkedRun[ProgressT]) -> ProgressT | None:
    """Run a backfill or a replay until its end, stopped by SIGTERM or SIGINT; its final progress, or None
    (said in the log) when it stopped before its end. Running the same command again resumes it."""
    cancel_on_signals()
    try:
        return await run.run()
    except asyncio.CancelledError:
        log.error("%s stopped before its end; run the same command again to resume", run.kind)
    except RunError as exc:
        log.error("%s stopped: %s", run.kind, exc)
    except (TopicSetupError, TopicMissingError, KafkaError, OSError) as exc:
        log.error("%s failed: %s; run the same command again to resume", run.kind, describe_error(exc))
    return None
