"""The command line as a user meets it: exit codes and messages that need no broker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cdr_stream.cli import EXIT_CONFIG, build_parser, main


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cdr_stream.cli", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_a_bad_config_exits_2_and_names_the_field(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[[feeds]]\nname = "hero"\nlogin = "812"\npassword = "x"\npoll_interval_seconds = "soon"\n')
    result = run_cli("run", "--config", str(config))
    assert result.returncode == EXIT_CONFIG
    assert "feeds[0].url" in result.stderr
    assert "feeds[0].poll_interval_seconds" in result.stderr


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    assert main(["state", "show", "--config", str(tmp_path / "nope.toml")]) == EXIT_CONFIG


def test_config_errors_never_print_the_password(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[[feeds]]\nname = "hero"\nurl = "gopher://x"\nlogin = "812"\npassword = "Hunter2-secret"\n')
    result = run_cli("run", "--config", str(config))
    assert result.returncode == EXIT_CONFIG
    assert "Hunter2-secret" not in result.stderr + result.stdout


def test_state_set_is_refused_for_an_unknown_feed(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[[feeds]]\nname = "hero"\nurl = "http://127.0.0.1:9/f"\nlogin = "1"\npassword = "p"\n')
    assert main(["state", "set", "--config", str(config), "--feed", "other", "--last-id", "5"]) == EXIT_CONFIG


@pytest.mark.parametrize("command", [["run"], ["simulate"], ["state", "show"], ["state", "set"], ["verify"]])
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
    assert main(["verify", "--config", str(config), *expect]) == EXIT_CONFIG
    assert message in capsys.readouterr().err


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
        '[[feeds]]\nname = "f"\nurl = "http://127.0.0.1:9/f"\nlogin = "l"\npassword = "p"\n'
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
