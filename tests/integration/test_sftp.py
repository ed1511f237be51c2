"""SFTP collection end to end: simulator files -> a real OpenSSH server -> connector -> Kafka -> read_committed."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from cdr_stream.config import KafkaSettings, Settings, TopicSettings, parse_settings
from cdr_stream.connector import Connector
from cdr_stream.errors import ConnectorError
from cdr_stream.kafka.state import StoredOffset, read_offsets
from cdr_stream.ops.health import FeedHealth
from cdr_stream.ops.metrics import ConnectorMetrics
from cdr_stream.ops.progress import ProgressLog
from cdr_stream.pipeline.observer import ObserverGroup, PageReport
from cdr_stream.records.processor import RecordProcessor
from cdr_stream.simulator import FeedGenerator, GeneratorConfig
from cdr_stream.simulator.files import CdrFile, Period, write_cdr_files
from cdr_stream.simulator.formats import RowCache, framing, json_row
from tests.integration.sshd import SshServer, keygen
from tests.integration.support import (
    FEED,
    SETTLE_SECONDS,
    read_published,
    start_process,
    stop_process,
    wait_for,
    write_config,
)
from tests.rows import FILE_FORMATS

pytestmark = [pytest.mark.kafka, pytest.mark.usefixtures("cleanup_topics")]


class Recorder(ProgressLog):
    """The progress log, plus what a test checks: file anomalies and failed polls."""

    def __init__(self) -> None:
        super().__init__()
        self.anomalies: list[tuple[str, str]] = []
        self.failures: list[str] = []

    def file_anomaly(self, feed: str, *, name: str, reason: str, message: str) -> None:
        self.anomalies.append((name, reason))
        super().file_anomaly(feed, name=name, reason=reason, message=message)

    def poll_failed(self, feed: str, *, reason: str, message: str, retry_in: float, consecutive: int) -> None:
        self.failures.append(f"{reason}: {message}")
        super().poll_failed(feed, reason=reason, message=message, retry_in=retry_in, consecutive=consecutive)


def generator(records: int, days: float = 1.0, invalid_rate: float = 0.02) -> FeedGenerator:
    """`records` records over `days` simulated days (one day makes 24 hourly files, 72 of 20 minutes)."""
    return FeedGenerator(GeneratorConfig(seed=3, invalid_rate=invalid_rate, window_days=days, span_records=records))


def sftp_table(server: SshServer, directory: Path, auth: str, **changes: Any) -> dict[str, Any]:
    table: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "username": server.username,
        "known_hosts_file": str(server.known_hosts),
        "directory": str(directory),
        "settle_seconds": 0.3,
    }
    if auth == "password":
        table["password"] = server.password
    else:
        table["private_key_file"] = str(server.client_key)
        table["passphrase"] = server.passphrase
    table.update(changes)
    return table


def sftp_settings(
    kafka: KafkaSettings,
    topics: TopicSettings,
    sftp: dict[str, Any],
    fmt: str = "json",
    tmp_dir: Path | None = None,
    **feed: Any,
) -> Settings:
    values: dict[str, Any] = {
        "name": FEED,
        "source": "sftp",
        "format": fmt,
        "poll_interval_seconds": 0.2,
        "max_rows_per_transaction": 100,
        "backoff_initial_seconds": 0.1,
        "backoff_max_seconds": 1.0,
        "sftp": sftp,
        **feed,
    }
    return parse_settings(
        {
            "feeds": [values],
            "kafka": {"bootstrap_servers": kafka.bootstrap_servers, "commit_timeout_seconds": 20},
            "topics": topics.model_dump(),
            "http_port": 0,  # a connector process of its own may run beside others
            **({"tmp_dir": str(tmp_dir)} if tmp_dir else {}),
        },
        {},
    )


def all_collected(state: StoredOffset | None, files: list[CdrFile]) -> bool:
    return (
        state is not None
        and state.files is not None
        and state.files.current is None
        and {file.name for file in files} <= set(state.files.done)
    )


async def collect(settings: Settings, files: list[CdrFile], observer: Recorder | None = None) -> Connector:
    """Run a connector in this process until every file is committed, then stop it."""
    connector = Connector(settings, observer=observer)
    await connector.start()
    try:
        await wait_for(
            lambda: all_collected(connector.pollers[0].state, files) or connector.stopping,
            120,
            f"the connector to collect {len(files)} files",
        )
    finally:
        await connector.stop()
    await connector.wait()
    return connector


def done_files(connector: Connector) -> set[str]:
    state = connector.pollers[0].state
    return set(state.files.done) if state is not None and state.files is not None else set()


def expected_events(gen: FeedGenerator, ids: range) -> dict[int, bytes]:
    """The events the web service's JSON answer would give for the same records."""
    processor = RecordProcessor(FEED)
    rows = [orjson.loads(json_row(gen.row(record_id), "number")) for record_id in ids]
    return {event.id: event.value for event in processor.process_chunk(rows, floor_id=0).events}


async def assert_exactly_once(kafka: KafkaSettings, topics: TopicSettings, gen: FeedGenerator, ids: range) -> None:
    published = await read_published(kafka, topics)
    all_ids = published.all_ids()
    duplicates = len(all_ids) - len(set(all_ids))
    missing = set(ids) - set(all_ids)
    assert duplicates == 0, f"{duplicates} IDs published twice"
    assert not missing, f"{len(missing)} IDs missing, e.g. {sorted(missing)[:5]}"
    assert set(published.dead_letter_ids()) == {i for i in ids if gen.is_invalid(i)}
    assert published.last_state()["last_id"] == ids[-1]


@pytest.mark.parametrize("fmt", FILE_FORMATS)
@pytest.mark.parametrize(("period", "auth"), [("daily", "password"), ("hourly", "key"), ("20min", "password")])
async def test_files_are_collected_in_order_exactly_once(
    kafka: KafkaSettings, topics: TopicSettings, sshd: SshServer, fmt: str, period: Period, auth: str
) -> None:
    gen = generator(1500, days=3.0 if period == "daily" else 1.0)
    ids = range(1, 1501)
    directory = sshd.new_directory()
    files = write_cdr_files(directory, gen, ids, fmt=fmt, period=period)
    (directory / "README.txt").write_text("not a CDR file\n")  # other files are ignored
    assert len(files) >= (3 if period == "daily" else 24)

    await collect(sftp_settings(kafka, topics, sftp_table(sshd, directory, auth), fmt), files)

    await assert_exactly_once(kafka, topics, gen, ids)
    published = await read_published(kafka, topics)
    expected = expected_events(gen, ids)
    assert {orjson.loads(r.value)["id"]: r.value for r in published.events} == expected
    # File order: the committed state walked through the files one by one, never back.
    done_counts = [len(orjson.loads(r.value)["files"]["done"]) for r in published.states]
    assert done_counts == sorted(done_counts) and done_counts[-1] == len(files)
    assert published.last_state()["files"]["current"] is None


def shuffle_rows(files: list[CdrFile], gen: FeedGenerator, fmt: str, rng: random.Random) -> None:
    """Write each file again with its rows in a random order (the provider promises no order)."""
    renderer, frame = RowCache(gen, "number"), framing(fmt)
    for file in files:
        ids = list(file.ids)
        rng.shuffle(ids)
        rows = [renderer.render(gen.row(record_id), fmt) for record_id in ids]
        file.path.write_bytes(frame.opening + frame.separator.join(rows) + frame.closing)


@pytest.mark.parametrize("fmt", ["json", "csv"])
async def test_a_file_in_any_order_is_published_whole(
    kafka: KafkaSettings, topics: TopicSettings, sshd: SshServer, tmp_path: Path, fmt: str
) -> None:
    # One day's file of 12,000 rows: more than are sorted in memory, so it is sorted on disk.
    gen = generator(12_000, days=1.0)
    ids = range(1, 12_001)
    directory = sshd.new_directory()
    files = write_cdr_files(directory, gen, ids, fmt=fmt, period="daily")
    shuffle_rows(files, gen, fmt, random.Random(5))
    settings = sftp_settings(kafka, topics, sftp_table(sshd, directory, "password"), fmt, tmp_dir=tmp_path / "spill")

    await collect(settings, files)

    await assert_exactly_once(kafka, topics, gen, ids)
    published = await read_published(kafka, topics)
    assert len(published.states) >= 100, "the file's rows went into many transactions (100 rows each)"
    assert list((tmp_path / "spill").iterdir()) == [], "the sort's files are removed"


def respelled(name: str, number: int) -> str:
    """`cdr_YYYYMMDD_HHMM.ext` spelled the ways providers date their files, in turn."""
    stem, ext = name.rsplit(".", 1)
    day, time_of_day = stem.removeprefix("cdr_").split("_")
    y, m, d, hh, mm = day[:4], day[4:6], day[6:], time_of_day[:2], time_of_day[2:]
    spellings = [
        f"CDR_{y}-{m}-{d}_{hh}.{ext}",
        f"cdr_{y}_{m}_{d}_{hh}{mm}.{ext}",
        f"CDR-{y}-{m}-{d}T{hh}-{mm}.{ext}",
        name,
    ]
    return spellings[number % len(spellings)]


async def test_files_dated_with_dashes_and_underscores_are_collected_in_time_order_and_others_reported(
    kafka: KafkaSettings, topics: TopicSettings, sshd: SshServer, caplog: pytest.LogCaptureFixture
) -> None:
    gen = generator(600)
    ids = range(1, 601)
    directory = sshd.new_directory()
    files = write_cdr_files(directory, gen, ids, fmt="json", period="hourly")
    renamed = []
    for number, file in enumerate(files):
        target = directory / respelled(file.name, number)
        file.path.rename(target)
        renamed.append(CdrFile(target, file.ids))
    # By name, "CDR-..." < "CDR_..." < "cdr_...": read in name order, later hours would come first and
    # the rows of the earlier ones would be dropped as already delivered.
    assert sorted(f.name for f in renamed) != [f.name for f in renamed]
    others = ["CDR-01032026.json", "README.txt", f"{files[0].name}.part"]  # a day-first date, a note, an upload
    for name in others:
        (directory / name).write_text("not a CDR file\n")

    recorder = Recorder()
    settings = sftp_settings(kafka, topics, sftp_table(sshd, directory, "key"))
    metrics = ConnectorMetrics([FEED], FeedHealth(settings))
    with caplog.at_level(logging.WARNING, logger="cdr_stream.ops.progress"):
        connector = Connector(settings, observer=ObserverGroup(recorder, metrics))
        await connector.start()
        try:
            await wait_for(lambda: all_collected(connector.pollers[0].state, renamed), 60, "the files")
            polls = connector.pollers[0]
            await asyncio.sleep(1.0)  # several more polls: each name is reported once, not at every poll
        finally:
            await connector.stop()
        await connector.wait()

    assert polls.last_id == ids[-1]
    await assert_exactly_once(kafka, topics, gen, ids)
    assert sorted(recorder.anomalies) == sorted((name, "not_cdr_file") for name in others)
    lines = [record.getMessage() for record in caplog.records]
    for name in others:
        assert sum(f"file {name} in {directory} is not collected" in line for line in lines) == 1, lines
    text = metrics.render().decode()
    assert f'cdr_stream_files_unmatched_total{{feed="{FEED}"}} 3.0' in text


def grow(target: Path, content: bytes, pieces: int, pause: float) -> None:
    """Write `content` into `target` in `pieces` appends, `pause` seconds apart, as a slow writer does."""
    with target.open("ab") as out:
        for step in range(1, pieces + 1):
            out.write(content[len(content) * (step - 1) // pieces : len(content) * step // pieces])
            out.flush()
            time.sleep(pause)


@pytest.mark.parametrize("fmt", FILE_FORMATS)
async def test_a_file_still_being_written_is_read_only_once_it_stops_changing(
    kafka: KafkaSettings, topics: TopicSettings, sshd: SshServer, tmp_path: Path, fmt: str
) -> None:
    gen = generator(600)
    ids = range(1, 601)
    staged = write_cdr_files(tmp_path, gen, ids, fmt=fmt, period="hourly")
    directory = sshd.new_directory()
    *complete, growing = staged
    for file in complete:
        (directory / file.name).write_bytes(file.path.read_bytes())

    recorder = Recorder()
    table = sftp_table(sshd, directory, "key", settle_seconds=1.0)
    connector = Connector(sftp_settings(kafka, topics, table, fmt), observer=recorder)
    # The last file grows in small steps, more often than the settle time, from a thread of its own.
    writer = asyncio.create_task(asyncio.to_thread(grow, directory / growing.name, growing.path.read_bytes(), 50, 0.1))
    await connector.start()
    try:
        await wait_for(lambda: all_collected(connector.pollers[0].state, complete), 60, "the complete files")
        assert not writer.done(), "the file stopped growing too early for this test"
        while not writer.done():
            state = connector.pollers[0].state
            assert state is not None and state.files is not None
            assert growing.name not in state.files.done
            assert state.files.current is None or state.files.current.name != growing.name
            await asyncio.sleep(0.05)
        await writer
        await wait_for(lambda: all_collected(connector.pollers[0].state, staged), 60, "the grown file")
    finally:
        await connector.stop()
        await writer
    await connector.wait()
    assert recorder.failures == [], "a file read while it was being written fails to parse"
    await assert_exactly_once(kafka, topics, gen, ids)


@pytest.mark.parametrize("fmt", FILE_FORMATS)
async def test_a_renamed_or_shrunk_file_is_reported_and_not_published_again(
    kafka: KafkaSettings, topics: TopicSettings, sshd: SshServer, fmt: str
) -> None:
    gen = generator(400)
    ids = range(1, 401)
    directory = sshd.new_directory()
    files = write_cdr_files(directory, gen, ids, fmt=fmt, period="hourly")
    settings = sftp_settings(kafka, topics, sftp_table(sshd, directory, "password"), fmt)
    await collect(settings, files)
    before = await read_published(kafka, topics)

    renamed, shrunk = files[2], files[5]
    new_name = "again_" + renamed.name
    (directory / renamed.name).rename(directory / new_name)
    content = (directory / shrunk.name).read_bytes()
    (directory / shrunk.name).write_bytes(content[: len(content) // 2])

    recorder = Recorder()
    connector = Connector(settings, observer=recorder)
    await connector.start()
    try:
        await wait_for(lambda: len(recorder.anomalies) >= 2, 60, "both files to be reported")
        await wait_for(lambda: new_name in done_files(connector), 60, "the renamed file to be stored as collected")
        await asyncio.sleep(1.0)  # several more polls: each anomaly is reported once, not at every poll
    finally:
        await connector.stop()
    await connector.wait()

    assert sorted(recorder.anomalies) == sorted([(new_name, "renamed"), (shrunk.name, "shrunk")])
    after = await read_published(kafka, topics)
    assert after.all_ids() == before.all_ids(), "nothing may be published again"
    state = connector.pollers[0].state
    assert state is not None and state.files is not None
    assert renamed.name not in state.files.done
    await assert_exactly_once(kafka, topics, gen, ids)


async def test_a_file_that_vanishes_in_the_middle_of_its_read_is_reported_with_what_it_lost(
    kafka: KafkaSettings, topics: TopicSettings, sshd: SshServer
) -> None:
    gen = generator(600, days=2.0, invalid_rate=0.0)
    ids = range(1, 601)
    directory = sshd.new_directory()
    first, second = write_cdr_files(directory, gen, ids, fmt="csv", period="daily")
    settings = sftp_settings(kafka, topics, sftp_table(sshd, directory, "password"), "csv", max_rows_per_transaction=50)

    # A first run stops after one transaction: 50 rows of the first file are committed, the rest are not.
    class StopAfterOnePage(Recorder):
        connector: Connector | None = None

        def page_committed(self, feed: str, page: PageReport) -> None:
            super().page_committed(feed, page)
            if page.committed and self.connector is not None:
                self.connector.request_stop()

    stopper = StopAfterOnePage()
    connector = Connector(settings, observer=stopper)
    stopper.connector = connector
    await connector.start()
    await asyncio.wait_for(connector.wait(), 60)
    await connector.stop()
    state = await stored_state(kafka, topics)
    assert state is not None and state.files is not None and state.files.current is not None
    assert (state.files.current.name, state.files.current.rows) == (first.name, 50)
    committed = set((await read_published(kafka, topics)).all_ids())
    assert len(committed) == 50

    (directory / first.name).unlink()  # the provider removes the file before the rest is collected
    recorder = Recorder()
    health = FeedHealth(settings)
    metrics = ConnectorMetrics([FEED], health)
    collected = await collect(settings, [second], ObserverGroup(recorder, metrics, health))

    assert recorder.anomalies == [(first.name, "vanished_in_flight")]
    published = await read_published(kafka, topics)
    all_ids = published.all_ids()
    assert len(all_ids) == len(set(all_ids)), "nothing published twice"
    assert committed <= set(all_ids), "what was committed of the vanished file stays"
    lost = set(first.ids) - set(all_ids)
    assert len(lost) == len(first.ids) - 50 and set(second.ids) <= set(all_ids)
    text = metrics.render().decode()
    assert f'cdr_stream_file_anomalies_total{{feed="{FEED}",reason="vanished_in_flight"}} 1.0' in text
    assert done_files(collected) == {second.name}


async def test_a_wrong_host_key_is_refused_and_nothing_is_published(
    kafka: KafkaSettings, topics: TopicSettings, sshd: SshServer
) -> None:
    gen = generator(50)
    directory = sshd.new_directory()
    write_cdr_files(directory, gen, range(1, 51), fmt="json", period="hourly")
    table = sftp_table(sshd, directory, "password", known_hosts_file=str(sshd.wrong_known_hosts))
    settings = sftp_settings(kafka, topics, table).model_copy(update={"give_up_after_attempts": 1})
    connector = Connector(settings)
    await connector.start()
    with pytest.raises(ConnectorError) as caught:
        await asyncio.wait_for(connector.wait(), 60)
    await connector.stop()
    message = str(caught.value)
    assert "host key" in message and str(sshd.wrong_known_hosts) in message
    assert sshd.password not in message
    published = await read_published(kafka, topics)
    assert published.events == [] and published.dead_letters == [] and published.states == []


@pytest.mark.parametrize("auth", ["password", "key"])
async def test_wrong_credentials_are_refused_without_retrying(
    kafka: KafkaSettings, topics: TopicSettings, sshd: SshServer, tmp_path: Path, auth: str
) -> None:
    directory = sshd.new_directory()
    write_cdr_files(directory, generator(50), range(1, 51), fmt="json", period="hourly")
    wrong = "Wrong-Password-42"
    if auth == "password":
        table = sftp_table(sshd, directory, auth, password=wrong)
    else:
        # A key the server does not list in authorized_keys.
        keygen(tmp_path / "stranger", wrong)
        table = sftp_table(sshd, directory, auth, private_key_file=str(tmp_path / "stranger"), passphrase=wrong)
    recorder = Recorder()
    settings = sftp_settings(kafka, topics, table).model_copy(update={"give_up_after_attempts": 1})
    connector = Connector(settings, observer=recorder)
    await connector.start()
    with pytest.raises(ConnectorError) as caught:
        await asyncio.wait_for(connector.wait(), 60)
    await connector.stop()
    assert "refused user" in str(caught.value)
    assert wrong not in str(caught.value)
    assert recorder.failures == [], "a refused login must not be retried"
    published = await read_published(kafka, topics)
    assert published.events == [] and published.states == []


def write_sftp_config(path: Path, settings: Settings, secrets: Path) -> Path:
    """The settings of an sftp feed as a TOML file for a `cdr-stream run` process, the passphrase in a file."""
    sftp = settings.feeds[0].sftp
    assert sftp is not None and sftp.private_key_file is not None and sftp.passphrase_secret is not None
    (secrets / "passphrase").write_text(sftp.passphrase_secret)
    return write_config(path, settings, {"passphrase_file": secrets / "passphrase"})


async def stored_state(kafka: KafkaSettings, topics: TopicSettings) -> StoredOffset | None:
    try:
        return (await read_offsets(kafka, topics.state, timeout=10, settle_seconds=SETTLE_SECONDS)).get(FEED)
    except Exception:  # the topic may not exist yet while the process starts
        return None


@pytest.mark.parametrize("fmt", FILE_FORMATS)
async def test_kill_9_in_the_middle_of_a_file_then_restart_leaves_no_duplicate_and_no_gap(
    kafka: KafkaSettings, topics: TopicSettings, sshd: SshServer, tmp_path: Path, fmt: str
) -> None:
    seed = random.randrange(1 << 30)
    print(f"kill -9 seed: {seed}")  # replays the same kill moments
    rng = random.Random(seed)
    gen = generator(24_000)
    ids = range(1, 24_001)
    directory = sshd.new_directory()
    files = write_cdr_files(directory, gen, ids, fmt=fmt, period="hourly")
    shuffle_rows(files, gen, fmt, rng)  # the committed rows of a file are then the lowest IDs, not its first lines
    settings = sftp_settings(kafka, topics, sftp_table(sshd, directory, "key"), fmt, max_rows_per_transaction=60)
    config = write_sftp_config(tmp_path / "c.toml", settings, tmp_path)
    log = tmp_path / "connector.log"

    kills_mid_file = 0
    for _ in range(3):
        commits_before = log.read_text().count("committed IDs") if log.exists() else 0
        process = start_process("run", "--config", str(config), log=log)
        deadline = time.monotonic() + 90
        # The progress log's line per transaction tells at once that this run has committed.
        while log.read_text().count("committed IDs") <= commits_before:
            assert time.monotonic() < deadline and process.poll() is None, log.read_text()[-3000:]
            await asyncio.sleep(0.05)
        await asyncio.sleep(rng.uniform(0.0, 0.5))
        process.kill()
        await asyncio.to_thread(process.wait, 10)
        state = await stored_state(kafka, topics)
        assert state is not None and state.files is not None
        if all_collected(state, files):
            break
        if state.files.current is not None and state.files.current.rows > 0:
            kills_mid_file += 1
    print(f"kills in the middle of a file: {kills_mid_file}")
    assert kills_mid_file >= 1, "no kill landed in the middle of a file"

    process = start_process("run", "--config", str(config), log=log)
    deadline = time.monotonic() + 180
    while not all_collected(await stored_state(kafka, topics), files):
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        await asyncio.sleep(0.3)
    assert await stop_process(process) == 0, log.read_text()[-3000:]
    await assert_exactly_once(kafka, topics, gen, ids)
