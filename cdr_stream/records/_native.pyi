from collections.abc import Callable
from typing import Any

from cdr_stream.records.event import Event, PreparedRow

SOURCE_SHA256: str

class Normalizer:
    def __init__(
        self,
        *,
        prefix: bytes,
        event_type: type[Event],
        dates: dict[Any, Any],
        read_date: Callable[[Any], Any],
        offsets: dict[Any, Any],
        read_offset: Callable[[Any], Any],
        amounts: dict[Any, Any],
        read_amount: Callable[[Any], Any],
        read_count: Callable[[Any], Any],
        give_up: type[Exception],
        max_event_bytes: int,
    ) -> None: ...
    def event(self, row_id: int, row: dict[str, Any], latest_us: int, /) -> Event | None: ...
    def prepared(self, row: PreparedRow, /) -> Event: ...

def parse_page(
    page: bytes | bytearray,
    latest_us: int,
    loads: Callable[[bytes], Any],
    prepared_type: type[PreparedRow],
    max_bytes: int,
    /,
) -> list[Any] | None: ...
def scan_rows(
    data: bytes | bytearray,
    first: bool,
    latest_us: int,
    loads: Callable[[bytes], Any],
    prepared_type: type[PreparedRow],
    max_bytes: int,
    /,
) -> tuple[list[Any], int, bool] | None: ...
