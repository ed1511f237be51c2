"""The command line as a user meets it: exit codes and messages that need no broker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cdr_stream.cli import build_parser, main
from cdr_stream.commands.common import Exit


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cdr_stream.cli", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_a_bad_config_exits_2_and_names_the_field(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[[feeds]]\nname = "hero"\nlogin = "812"\npassword = "x"\npoll_interval_seconds = "soon"\n')
    result = run_cli("run", "--config", str(config))
    assert result.returncode == Exit.CONFIG
    assert "feeds[0].url" in result.stderr
    assert "feeds[0].poll_interval_seconds" in result.stderr


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    assert main(["state", "show", "--config", str(tmp_path / "nope.toml")]) == Exit.CONFIG


def test_config_errors_never_print_the_password(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[[feeds]]\nname = "hero"\nurl = "gopher://x"\nlogin = "812"\npassword = "Hunter2-secret"\n')
    result = run_cli("run", "--config", str(config))
    assert result.returncode == Exit.CONFIG
    assert "Hunter2-secret" not in result.stderr + result.stdout


def test_state_set_is_refused_for_an_unknown_feed(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[[feeds]]\nname = "hero"\nurl = "http://127.0.0.1:9/f"\nlogin = "1"\npassword = "p"\n')
    assert main(["state", "set", "--config", str(config), "--feed", "other", "--last-id", "5"]) == Exit.CONFIG


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--date", "2023-02-30"], "argument --date: '2023-02-30' is not a date: day is out of range for month"),
        (["--date", "02/04/2023"], "argument --date: '02/04/2023' is not a date in the form YYYY-MM-DD"),
        (["--date", "2023-04-02", "--hour", "24"], "argument --hour: '24' is not an hour from 0 to 23"),
        (["--date", "2023-04-02", "--to-date", "2023-04-01"], "--to-date 2023-04-01 is before --date 2023-04-02"),
        (["--date", "2023-04-02", "--hour", "3", "--to-date", "2023-04-03"], "--hour picks one hour of --date"),
        (["--date", "2999-01-01"], "the window 2999-01-01 has not begun anywhere yet"),
        (["--date", "2023-04-02", "--topic", "cdr.events.dlq"], "--topic 'cdr.events.dlq' cannot be used"),
        (["--date", "2023-04-02", "--feed", "other"], "no feed named 'other'"),
    ],
)
def test_backfill_refuses_a_bad_window_with_exit_2_and_says_why(
    tmp_path: Path, options: list[str], message: str
) -> None:
    config = tmp_path / "c.toml"
    # Kafka is unreachable on purpose: the command must refuse before it tries it.
    config.write_text(
        '[[feeds]]\nname = "hero"\nurl = "http://127.0.0.1:9/f"\nlogin = "1"\npassword = "p"\n'
        '[kafka]\nbootstrap_servers = "127.0.0.1:1"\n'
    )
    feed = [] if "--feed" in options else ["--feed", "hero"]
    result = run_cli("backfill", "--config", str(config), *feed, *options)
    assert result.returncode == Exit.CONFIG, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["run"],
        ["status"],
        ["backfill"],
        ["verify"],
        ["simulate"],
        ["state", "show"],
        ["state", "set"],
        ["dlq", "show"],
        ["dlq", "replay"],
    ],
)
def test_every_command_has_help(command: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([*command, "--help"])
    assert exited.value.code == 0


@pytest.mark.parametrize(
    ("expect", "message"),
    [
        (["--feed", "other"], "no feed named 'other'"),
        (["--feed", "hero", "--expect-range", "9-1"], "the first ID is above the last"),
        (["--feed", "hero", "--expect-ids", "/nonexistent/ids.txt"], "cannot read"),
    ],
)
def test_verify_refuses_an_unknown_feed_or_a_bad_expectation_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], expect: list[str], message: str
) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[[feeds]]\nname = "hero"\nurl = "http://127.0.0.1:9/f"\nlogin = "1"\npassword = "p"\n')
    assert main(["verify", "--config", str(config), *expect]) == Exit.CONFIG
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--feed", "other"], "no feed named 'other'"),
        (["--feed", "hero", "--from-id", "9", "--to-id", "3"], "--to-id 3 is below --from-id 9"),
    ],
)
def test_dlq_replay_refuses_an_unknown_feed_or_an_empty_range_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str], message: str
) -> None:
    config = tmp_path / "c.toml"
    # Kafka is unreachable on purpose: the command must refuse before it tries it.
    config.write_text(
        '[[feeds]]\nname = "hero"\nurl = "http://127.0.0.1:9/f"\nlogin = "1"\npassword = "p"\n'
        '[kafka]\nbootstrap_servers = "127.0.0.1:1"\n'
    )
    assert main(["dlq", "replay", "--config", str(config), *options]) == Exit.CONFIG
    assert message in capsys.readouterr().err
    assert main(["dlq", "show", "--config", str(config), "--feed", "other"]) == Exit.CONFIG


def test_dlq_replay_arguments() -> None:
    selection = ["--rule", "pointer_row", "--from-id", "5", "--to-id", "50"]
    args = build_parser().parse_args(
        ["dlq", "replay", "--config", "c", "--feed", "f", *selection, "--chunk-size", "7", "--metrics-file", "m.prom"]
    )
    assert (args.rule, args.from_id, args.to_id, args.chunk_size, args.metrics_file) == (
        "pointer_row",
        5,
        50,
        7,
        Path("m.prom"),
    )
    defaults = build_parser().parse_args(["dlq", "replay", "--config", "c", "--feed", "f"])
    assert (defaults.rule, defaults.from_id, defaults.to_id, defaults.chunk_size) == (None, None, None, None)


@pytest.mark.parametrize("bad", [["--chunk-size", "0"], ["--from-id", "-3"], ["--to-id", "x"], ["--from-id", "\u0661"]])
def test_dlq_replay_refuses_what_is_not_a_positive_whole_number(
    bad: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["dlq", "replay", "--config", "c", "--feed", "f", *bad])
    assert exited.value.code == 2
    assert "is not a whole number of at least 1" in capsys.readouterr().err


def test_verify_takes_one_expectation_at_most() -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(
            ["verify", "--config", "c", "--feed", "f", "--expect-range", "1-2", "--expect-ids", "x"]
        )
    assert exited.value.code == 2


def test_sigterm_while_kafka_is_unreachable_at_start_is_a_clean_stop(tmp_path: Path) -> None:
    import signal
    import time

    config = tmp_path / "c.toml"
    config.write_text(
        'http_port = 0\n[[feeds]]\nname = "f"\nurl = "http://127.0.0.1:9/f"\nlogin = "l"\npassword = "pw-123456"\n'
        '[kafka]\nbootstrap_servers = "127.0.0.1:1"\n'
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "cdr_stream.cli", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    time.sleep(3)  # a few failed attempts to reach Kafka
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=15)
    assert process.returncode == 0, output
    assert "topic setup failed (KafkaConnectionError" in output
    assert "KafkaConnectionError: KafkaConnectionError" not in output


def test_a_taken_http_port_exits_1_naming_the_setting(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "c.toml"
        config.write_text(
            f'http_host = "127.0.0.1"\nhttp_port = {port}\n[[feeds]]\nname = "f"\nurl = "http://127.0.0.1:9/f"\n'
            'login = "l"\npassword = "pw-123456"\n[kafka]\nbootstrap_servers = "127.0.0.1:1"\n'
        )
        result = run_cli("run", "--config", str(config))
    assert result.returncode == 1
    assert f"cannot serve /metrics on 127.0.0.1:{port} (http_port)" in result.stderr
