from collections.abc import Callable

from cdr_stream.records.event import Event

SOURCE_SHA256: str
HEADER_SIZE: int
CRC_INSTRUCTION: int

def fill(
    events: list[Event],
    partition_of: dict[bytes, int],
    partition: Callable[[bytes], int],
    headers: bytes,
    max_bytes: int,
    transactional: bool,
    /,
) -> list[tuple[int, bytearray, int]]: ...
def seal(batch: bytearray, producer_id: int, producer_epoch: int, base_sequence: int, /) -> None: ...
def crc32c(data: bytes | bytearray | memoryview, /) -> int: ...
