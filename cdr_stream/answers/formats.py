"""What every answer parser shares: how a body is read, how it fails, and how to show a piece of it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final, Literal, get_args

#: The answer formats the contract names: a JSON array, or a header row and rows separated by "," "\t" or "|".
AnswerFormat = Literal["json", "csv", "txt", "pipe"]
ANSWER_FORMATS: Final[tuple[AnswerFormat, ...]] = get_args(AnswerFormat)
TextFormat = Literal["csv", "txt", "pipe"]
TEXT_DELIMITERS: Final[dict[str, str]] = {"csv": ",", "txt": "\t", "pipe": "|"}
#: Reads up to `size` bytes of a body; b"" at its end.
Read = Callable[[int], Awaitable[bytes]]
#: How many bytes a parser asks for at a time.
READ_SIZE: Final = 256 * 1024


def describe_body(body: bytes, limit: int = 80) -> str:
    """A short, printable start of a body, for error messages."""
    text = body[:limit].decode("utf-8", "replace")
    text = "".join(ch if ch.isprintable() else " " for ch in text).strip()
    return repr(text + ("..." if len(body) > limit else ""))
