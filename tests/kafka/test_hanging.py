from __future__ import annotations

import pytest
from aiokafka import TopicPartition

from cdr_stream.errors import FailureReason, HangingTransaction
from cdr_stream.kafka.hanging import LastTransaction, OpenTransaction, decision

_STATE = TopicPartition("cdr.state", 0)
_EVENTS = TopicPartition("cdr.events", 4)


def _open(epoch: int = 3, producer_id: int = 7) -> list[OpenTransaction]:
    return [OpenTransaction(_STATE, producer_id, epoch, 12), OpenTransaction(_EVENTS, producer_id, epoch, 900)]


@pytest.mark.parametrize("state", ["PrepareCommit", "CompleteCommit"])
def test_a_transaction_the_coordinator_committed_is_closed_by_a_commit(state: str) -> None:
    assert decision(LastTransaction(state, 7, 3), _open()) is True


@pytest.mark.parametrize("state", ["Ongoing", "PrepareAbort", "CompleteAbort", "PrepareEpochFence"])
def test_a_transaction_the_coordinator_aborted_or_was_about_to_is_closed_by_an_abort(state: str) -> None:
    assert decision(LastTransaction(state, 7, 3), _open()) is False


@pytest.mark.parametrize(
    ("last", "why"),
    [
        (None, "no last transaction known"),
        (LastTransaction("CompleteCommit", 7, 4), "the last decision is a later epoch's"),
        (LastTransaction("CompleteCommit", 8, 3), "another producer id"),
        (LastTransaction("Empty", 7, 3), "a state that decides nothing"),
    ],
)
def test_a_decision_that_cannot_be_told_stops_the_feed_and_says_where(last: LastTransaction | None, why: str) -> None:
    with pytest.raises(HangingTransaction) as caught:
        decision(last, _open())
    message = str(caught.value)
    assert "cdr.state[0] from offset 12" in message and "cdr.events[4] from offset 900" in message, why
    assert "KAFKA-20734" in message and "kafka-transactions.sh" in message
    assert caught.value.reason == FailureReason.HANGING_TRANSACTION and not caught.value.retriable


def test_every_open_transaction_must_be_the_last_ones_for_its_decision_to_apply() -> None:
    mixed = [*_open(epoch=3), OpenTransaction(TopicPartition("cdr.dlq", 0), 7, 2, 5)]
    with pytest.raises(HangingTransaction, match=r"cdr\.dlq\[0\] from offset 5"):
        decision(LastTransaction("CompleteCommit", 7, 3), mixed)
