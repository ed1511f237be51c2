"""Reading partitions to their end (readback.read_to_end) with a consumer that plays a broker's answers."""

from __future__ import annotations

from typing import Any

from aiokafka import TopicPartition

from cdr_stream.kafka.readback import read_to_end

TP = TopicPartition("t", 0)


class ScriptedConsumer:
    """A consumer of one partition whose broker answers (or not) round by round.

    `answers` is one entry per getmany round: None (the broker has not answered a fetch yet), or the
    records that answer brings (an empty list: it answered with nothing to give). `stuck_at` is where the
    position stays once the records run out (aiokafka issue #911: just below a trailing marker)."""

    def __init__(self, answers: list[list[int] | None], stuck_at: int | None = None) -> None:
        self.answers = answers
        self.stuck_at = stuck_at
        self.offset = 0
        self.polled: int | None = None
        self.rounds = 0

    def assign(self, tps: list[TopicPartition]) -> None:
        assert tps == [TP]

    async def seek_to_beginning(self, *tps: TopicPartition) -> None:
        self.offset = 0

    async def position(self, tp: TopicPartition) -> int:
        return self.offset

    def last_poll_timestamp(self, tp: TopicPartition) -> int | None:
        return self.polled

    async def getmany(self, *tps: TopicPartition, timeout_ms: int = 0) -> dict[TopicPartition, list[Any]]:
        answer = self.answers[self.rounds] if self.rounds < len(self.answers) else []
        self.rounds += 1
        if answer is None:
            return {}
        self.polled = self.rounds  # a fetch answer arrived in this round
        if not answer:
            return {}
        self.offset = answer[-1] + 1
        return {TP: answer}


async def read(consumer: ScriptedConsumer, end: int) -> list[int]:
    out: list[int] = []
    async for records in read_to_end(consumer, [TP], {TP: end}):  # type: ignore[arg-type]
        out += records
    return out


async def test_a_slow_broker_is_waited_for_not_taken_for_the_end_of_the_partition() -> None:
    # Six rounds without any answer (more than the quiet rounds that end a partition), then everything.
    consumer = ScriptedConsumer([None] * 6 + [[0, 1, 2, 3, 4]])
    assert await read(consumer, 5) == [0, 1, 2, 3, 4]


async def test_a_partition_ending_in_a_marker_is_read_once_the_broker_has_nothing_more() -> None:
    consumer = ScriptedConsumer([[0, 1], [], [], [], [], []])
    assert await read(consumer, 3) == [0, 1]  # offset 2 is the commit marker the consumer never returns
    assert consumer.rounds == 5, "four answered rounds with nothing after the last records"


async def test_rounds_without_an_answer_do_not_count_toward_the_end() -> None:
    consumer = ScriptedConsumer([[0], [], None, None, None, None, [], [1, 2]])
    assert await read(consumer, 3) == [0, 1, 2]


async def test_an_empty_partition_is_not_fetched() -> None:
    consumer = ScriptedConsumer([])
    assert await read(consumer, 0) == []
    assert consumer.rounds == 0
