"""Transactions of a feed that Kafka decided but left open on a partition (hanging transactions).

A Kafka 4.x transaction coordinator that finds no leader for a partition while it writes a transaction's
markers takes the partition for deleted and skips its marker (KAFKA-20734): on a single broker that stops
cleanly in the middle of a commit, or when every replica of a partition is down. The transaction reads
as complete to the coordinator, but the partition still counts the producer as inside it. Its records
stay invisible to read_committed readers, its last stable offset stops there, and the producer's next
marker on that partition decides them along with its own records. A writer that restarted and read the
offset below such a record would publish those rows again, and the next commit would make both copies
visible.

So a writer checks at start. Before it fences (which bumps the producer's epoch and clears the
coordinator's memory of the last transaction), it asks the coordinator for the last decision of its
transactional id. After fencing, it asks the leaders of the feed's partitions which of them still hold an
open transaction of its producer id from an older epoch. Those are closed with the coordinator's decision,
through an empty transaction that adds exactly those partitions, before the offset is read. A decision it
cannot tell stops the feed with HangingTransaction rather than guess.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.client import CoordinationType
from aiokafka.errors import (
    IncompatibleBrokerVersion,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    UnsupportedVersionError,
    for_code,
)

from cdr_stream.errors import HangingTransaction, StateReadError
from cdr_stream.kafka.protocol import DescribeProducersRequest, DescribeTransactionsRequest

log = logging.getLogger(__name__)

#: The coordinator's states whose markers commit, and those whose markers abort (an ongoing transaction
#: is aborted by the fencing that follows the question).
_COMMITTING: Final = frozenset({"PrepareCommit", "CompleteCommit"})
_ABORTING: Final = frozenset({"Ongoing", "PrepareAbort", "CompleteAbort", "PrepareEpochFence"})
_TRANSACTIONAL_ID_NOT_FOUND: Final = 105
_CLOSE_WAIT_SECONDS: Final = 30.0
_CLOSE_POLL_SECONDS: Final = 0.2
#: Refusals that mean the check cannot be made here (an older broker, a missing Describe or Read ACL).
_CANNOT_CHECK: Final = (
    IncompatibleBrokerVersion,
    UnsupportedVersionError,
    TransactionalIdAuthorizationFailed,
    TopicAuthorizationFailedError,
)


@dataclass(frozen=True, slots=True)
class LastTransaction:
    """What the coordinator holds for a transactional id: the state of its last transaction, and whose."""

    state: str
    producer_id: int
    producer_epoch: int


@dataclass(frozen=True, slots=True)
class OpenTransaction:
    """A partition that counts `producer_id` (at `producer_epoch`) as inside a transaction from `start_offset`."""

    partition: TopicPartition
    producer_id: int
    producer_epoch: int
    start_offset: int

    def __str__(self) -> str:
        return f"{_name(self.partition)} from offset {self.start_offset}"


def _name(tp: TopicPartition) -> str:
    return f"{tp.topic}[{tp.partition}]"


async def last_transaction(producer: AIOKafkaProducer, transactional_id: str) -> LastTransaction | None:
    """The coordinator's last transaction of `transactional_id`; None when it has none or cannot be asked."""
    client = producer.client
    try:
        node = await client.coordinator_lookup(CoordinationType.TRANSACTION, transactional_id)
        response: Any = await client.send(node, DescribeTransactionsRequest([transactional_id]))
        (described,) = response.transaction_states
        code = described[0]
        if code == _TRANSACTIONAL_ID_NOT_FOUND:  # never used: nothing of it can hang
            return None
        if code != 0:
            raise for_code(code)()
    except _CANNOT_CHECK as exc:
        log.warning(
            "cannot ask the coordinator about the last transaction (%s); transactions Kafka left open are "
            "not looked for (see docs/operations.md, hanging transactions)",
            type(exc).__name__,
            extra={"transactional_id": transactional_id},
        )
        return None
    return LastTransaction(state=described[2], producer_id=described[5], producer_epoch=described[6])


async def open_transactions(
    producer: AIOKafkaProducer, partitions: Iterable[TopicPartition], producer_id: int, below_epoch: int
) -> list[OpenTransaction]:
    """The partitions, of `partitions`, that count `producer_id` at an epoch below `below_epoch` as inside
    a transaction. Partitions whose leader refuses the question (no Read ACL) are logged and left out."""
    client = producer.client
    by_leader: dict[int, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for tp in partitions:
        leader = client.cluster.leader_for_partition(tp)
        if leader is None or leader < 0:
            raise StateReadError(f"partition {_name(tp)} has no leader")
        by_leader[leader][tp.topic].append(tp.partition)
    found: list[OpenTransaction] = []
    refused: list[str] = []
    for leader, topics in by_leader.items():
        response: Any = await client.send(leader, DescribeProducersRequest(dict(topics)))
        for name, answers, _ in response.topics:
            for index, code, message, producers, _ in answers:
                where = f"{name}[{index}]"
                if code != 0:
                    error = for_code(code)
                    if issubclass(error, TopicAuthorizationFailedError):
                        refused.append(where)
                        continue
                    raise StateReadError(f"cannot describe the producers of {where}: {message or error.__name__}")
                found.extend(
                    OpenTransaction(TopicPartition(name, index), pid, epoch, start)
                    for pid, epoch, _sequence, _timestamp, _coordinator_epoch, start, _ in producers
                    if pid == producer_id and epoch < below_epoch and start >= 0
                )
    if refused:
        log.warning(
            "no Read ACL to look for transactions Kafka left open on %s (see docs/operations.md)", ", ".join(refused)
        )
    return found


def decision(last: LastTransaction | None, hanging: list[OpenTransaction]) -> bool:
    """True to commit the hanging transactions, False to abort them: what the coordinator decided for them.

    Only the coordinator's last transaction is known, and only when it is the hanging one's (same producer
    id and epoch); anything else raises HangingTransaction.
    """
    where = ", ".join(map(str, hanging))
    if last is not None and all(
        (h.producer_id, h.producer_epoch) == (last.producer_id, last.producer_epoch) for h in hanging
    ):
        if last.state in _COMMITTING:
            return True
        if last.state in _ABORTING:
            return False
    told = "nothing" if last is None else f"{last.state} for epoch {last.producer_epoch}"
    raise HangingTransaction(
        f"Kafka left a transaction of this feed open on {where} (a skipped transaction marker, KAFKA-20734), "
        f"and its coordinator's last decision ({told}) is not that transaction's. The feed waits: close it "
        "with kafka-transactions.sh (docs/operations.md, hanging transactions)"
    )


async def close_hanging(
    producer: AIOKafkaProducer, last: LastTransaction | None, partitions: list[TopicPartition]
) -> None:
    """Close the transactions the started (fenced) `producer` finds left open on `partitions` by an older
    epoch of its producer id, with the coordinator's decision, and wait until their leaders agree."""
    manager = producer._txn_manager
    producer_id, epoch = manager.producer_id, manager.producer_epoch
    hanging = await open_transactions(producer, partitions, producer_id, epoch)
    if not hanging:
        return
    commit = decision(last, hanging)
    log.warning(
        "closing transactions Kafka left open (KAFKA-20734) with the coordinator's decision: %s on %s",
        "commit" if commit else "abort",
        ", ".join(map(str, hanging)),
        extra={"transactional_id": manager.transactional_id},
    )
    await producer.begin_transaction()
    for tp in {h.partition for h in hanging}:
        manager.maybe_add_partition_to_txn(tp)
    await (producer.commit_transaction() if commit else producer.abort_transaction())
    # The markers are written after the coordinator answers; the offset must not be read before them.
    left = [h.partition for h in hanging]
    deadline = time.monotonic() + _CLOSE_WAIT_SECONDS
    while left := [h.partition for h in await open_transactions(producer, left, producer_id, epoch + 1)]:
        if time.monotonic() > deadline:
            raise HangingTransaction(
                f"the transactions Kafka left open on {', '.join(map(_name, left))} "
                f"were still open {_CLOSE_WAIT_SECONDS:g} s after this writer closed them"
            )
        await asyncio.sleep(_CLOSE_POLL_SECONDS)
