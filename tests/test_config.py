from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cdr_stream.config import load_settings, parse_settings
from cdr_stream.errors import ConfigError
from tests.leaks import assert_no_secrets, captured_output

SECRET = "Sup3r-secret"


def minimal(**feed: Any) -> dict[str, Any]:
    values = {"name": "hero-nz", "url": "https://portal.example/billingfeed.php", "login": "81234567"}
    values.update(feed)
    return {"feeds": [values]}


def error_of(data: dict[str, Any], environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_settings(data, environ or {})
    return str(caught.value)


def test_defaults_follow_the_provider_etiquette() -> None:
    settings = parse_settings(minimal(password=SECRET), {})
    feed = settings.feeds[0]
    assert feed.poll_interval_seconds == 600
    assert feed.format == "json"
    assert not feed.callsonly and not feed.servicesonly
    assert settings.warnings() == []


@pytest.mark.parametrize("fmt", ["json", "csv", "txt", "pipe"])
def test_every_contract_format_can_be_chosen(fmt: str) -> None:
    assert parse_settings(minimal(password=SECRET, format=fmt), {}).feeds[0].format == fmt


def test_an_unknown_format_is_refused_with_the_choices() -> None:
    message = error_of(minimal(password=SECRET, format="xml"))
    assert "feeds[0].format" in message and "'pipe'" in message


def test_a_short_poll_interval_is_allowed_with_a_warning() -> None:
    settings = parse_settings(minimal(password=SECRET, poll_interval_seconds=1), {})
    (warning,) = settings.warnings()
    assert "poll_interval_seconds" in warning and "600" in warning


def test_secrets_are_masked_in_every_repr(caplog: pytest.LogCaptureFixture) -> None:
    data = minimal(password=SECRET)
    data["kafka"] = {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": "u",
        "sasl_password": SECRET + "2",
    }
    settings = parse_settings(data, {})
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("t").info("settings %s %r", settings, settings)
    for text in (repr(settings), str(settings), caplog.text, str(settings.model_dump())):
        assert SECRET not in text
    assert settings.feeds[0].secret == SECRET


def test_password_from_file_and_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret_file = tmp_path / "password"
    secret_file.write_text(SECRET + "\n")
    assert parse_settings(minimal(password_file=str(secret_file)), {}).feeds[0].secret == SECRET
    monkeypatch.setenv("FEED_PW", SECRET)
    assert parse_settings(minimal(password_env="FEED_PW"), {}).feeds[0].secret == SECRET
    overridden = parse_settings(minimal(password="old"), {"CDR_STREAM_FEEDS__HERO_NZ__PASSWORD": SECRET})
    assert overridden.feeds[0].secret == SECRET


def test_environment_overrides_reach_kafka_and_feed_fields() -> None:
    settings = parse_settings(
        minimal(password=SECRET),
        {
            "CDR_STREAM_KAFKA__BOOTSTRAP_SERVERS": "k1:9092,k2:9092",
            "CDR_STREAM_FEEDS__HERO_NZ__POLL_INTERVAL_SECONDS": "900",
            "CDR_STREAM_TOPICS__EVENTS": "cdr.v1",
        },
    )
    assert settings.kafka.bootstrap_servers == "k1:9092,k2:9092"
    assert settings.feeds[0].poll_interval_seconds == 900
    assert settings.topics.events == "cdr.v1"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (minimal(password=SECRET, poll_interval_seconds=-1), "feeds[0].poll_interval_seconds"),
        (minimal(password=SECRET, url="ftp://x"), "feeds[0].url"),
        (minimal(password=SECRET, url="https://x/feed.php?login=1"), "feeds[0].url"),
        (minimal(password=SECRET, url="https://812:pw@x/feed.php"), "feeds[0].url"),
        (minimal(password=SECRET, pollinterval=5), "feeds[0].pollinterval"),
        (minimal(), "feeds[0]"),
        (minimal(password=SECRET, callsonly=True, servicesonly=True), "feeds[0]"),
        ({"feeds": []}, "feeds"),
        ({**minimal(password=SECRET), "kafka": {"security_protocol": "SASL_SSL"}}, "kafka"),
        ({**minimal(password=SECRET), "topics": {"events": "a", "dead_letter": "a"}}, "topics"),
    ],
)
def test_a_bad_config_names_the_field(data: dict[str, Any], field: str) -> None:
    message = error_of(data)
    assert f"  {field}" in message


def test_a_missing_password_names_the_ways_to_give_one() -> None:
    message = error_of(minimal())
    assert "password_file" in message and "CDR_STREAM_FEEDS__HERO_NZ__PASSWORD" in message


def test_an_unknown_feed_in_the_environment_is_an_error() -> None:
    assert "CDR_STREAM_FEEDS__NOPE__PASSWORD" in error_of(
        minimal(password="x"), {"CDR_STREAM_FEEDS__NOPE__PASSWORD": "y"}
    )


def test_duplicate_feed_names_are_refused() -> None:
    feed = minimal(password="x")["feeds"][0]
    assert "hero-nz" in error_of({"feeds": [feed, feed]})


def test_load_settings_reads_toml_and_reports_syntax_errors(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[[feeds]]\nname = "a"\nurl = "http://h/f.php"\nlogin = "l"\npassword = "p"\n')
    assert load_settings(path, {}).feeds[0].name == "a"
    path.write_text("[[feeds]\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(path, {})
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.toml", {})


def test_the_readme_documents_every_setting() -> None:
    from cdr_stream.config import FeedSettings, KafkaSettings, Settings, SftpSettings, TopicSettings

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for model in (Settings, FeedSettings, SftpSettings, KafkaSettings, TopicSettings):
        for name in model.model_fields:
            assert f"`{name}`" in readme, f"README.md does not document the setting {name!r}"


def test_a_problem_with_a_whole_feed_gets_no_misleading_hint() -> None:
    message = error_of(minimal(password_env="CDR_STREAM_TEST_SURELY_UNSET"))
    assert "feeds[0]: password_env names the environment variable" in message
    assert "at least one [[feeds]] table" not in message


def sftp_feed(tmp_path: Path, **sftp: Any) -> dict[str, Any]:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("[sftp.example]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample\n")
    table: dict[str, Any] = {
        "host": "sftp.example",
        "port": 2222,
        "username": "812",
        "known_hosts_file": str(known_hosts),
    }
    table.update(sftp)
    return {"feeds": [{"name": "files", "source": "sftp", "sftp": table}]}


def test_an_sftp_feed_needs_no_url_and_keeps_its_password_secret(tmp_path: Path) -> None:
    settings = parse_settings(sftp_feed(tmp_path, password=SECRET), {})
    sftp = settings.feeds[0].sftp
    assert sftp is not None and sftp.password_secret == SECRET and sftp.directory == "."
    assert SECRET not in repr(settings) and SECRET not in str(settings.model_dump())
    overridden = parse_settings(
        sftp_feed(tmp_path, password="old"), {"CDR_STREAM_FEEDS__FILES__SFTP__PASSWORD": SECRET}
    )
    assert overridden.feeds[0].sftp is not None and overridden.feeds[0].sftp.password_secret == SECRET
    assert overridden.secrets() == [SECRET], "the log redaction knows the sftp password"


def test_an_sftp_feed_may_log_in_with_a_key_and_its_passphrase_file(tmp_path: Path) -> None:
    key, passphrase = tmp_path / "id_ed25519", tmp_path / "passphrase"
    key.write_text("a key")
    passphrase.write_text(SECRET + "\n")
    sftp = parse_settings(sftp_feed(tmp_path, private_key_file=str(key), passphrase_file=str(passphrase)), {})
    settings = sftp.feeds[0].sftp
    assert settings is not None and settings.passphrase_secret == SECRET and settings.password_secret is None
    assert sftp.secrets() == [SECRET]


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({}, "feeds[0].sftp", "no credentials"),
        ({"password": "p", "known_hosts_file": "/nonexistent/known_hosts"}, "feeds[0].sftp", "known_hosts_file"),
        ({"password": "p", "known_hosts_file": None}, "feeds[0].sftp.known_hosts_file", ""),
        ({"password": "p", "file_pattern": r"cdr_\d{8}\.csv"}, "feeds[0].sftp.file_pattern", "stamp"),
        ({"password": "p", "file_pattern": "cdr_(("}, "feeds[0].sftp.file_pattern", "regular expression"),
        ({"password": "p", "passphrase": "x"}, "feeds[0].sftp", "no private_key_file"),
        ({"password": "p", "port": 0}, "feeds[0].sftp.port", ""),
        ({"password": "p", "host": ""}, "feeds[0].sftp.host", ""),
    ],
)
def test_a_bad_sftp_table_names_the_field(tmp_path: Path, changes: dict[str, Any], field: str, words: str) -> None:
    data = sftp_feed(tmp_path, **changes)
    table = data["feeds"][0]["sftp"]
    data["feeds"][0]["sftp"] = {key: value for key, value in table.items() if value is not None}
    message = error_of(data)
    assert f"  {field}: " in message and words in message, message


def test_web_service_settings_on_an_sftp_feed_are_refused(tmp_path: Path) -> None:
    data = sftp_feed(tmp_path, password="p")
    data["feeds"][0].update(url="https://x/feed.php", password="p")
    message = error_of(data)
    assert "feeds[0]: url, password: only for source" in message


def test_source_and_table_must_agree(tmp_path: Path) -> None:
    assert "needs a [feeds.sftp] table" in error_of({"feeds": [{"name": "f", "source": "sftp"}]})
    data = minimal(password=SECRET)
    data["feeds"][0]["sftp"] = sftp_feed(tmp_path, password="p")["feeds"][0]["sftp"]
    assert "only belongs to a feed with source" in error_of(data)
    assert "feeds[0].url: Field required" in error_of({"feeds": [{"name": "f", "login": "l", "password": "p"}]})


SASL_SECRET = "Sasl-Sup3r-secret"


@pytest.mark.parametrize(
    "data",
    [
        minimal(password=SECRET, poll_interval_seconds=-1),
        minimal(password=SECRET, password_env="SOME_VARIABLE"),
        minimal(password=SECRET, pasword=SECRET),  # a misspelt setting holding the password
        minimal(password=[SECRET]),  # the wrong type
        minimal(password=SECRET, url=f"https://user:{SECRET}@portal.example/billingfeed.php"),
        {**minimal(password=SECRET), "kafka": {"security_protocol": "SASL_SSL", "sasl_password": SASL_SECRET}},
        {**minimal(password=SECRET), "kafka": {"security_protocol": "SASL", "sasl_password": SASL_SECRET}},
        {**minimal(password=SECRET), "kafka": {"sasl_password": SASL_SECRET, "sasl_password_env": SASL_SECRET}},
    ],
)
def test_a_config_error_never_shows_a_password(data: dict[str, Any]) -> None:
    assert_no_secrets(error_of(data), [SECRET, SASL_SECRET], "the configuration error")


def bad_config(tmp_path: Path) -> Path:
    config = tmp_path / "c.toml"
    config.write_text(
        f'log_level = "DEBUG"\n[[feeds]]\nname = "f"\nurl = "https://portal.example/billingfeed.php"\n'
        f'login = "l"\npassword = "{SECRET}"\npoll_interval_seconds = 0\n'
        f'[kafka]\nsecurity_protocol = "SASL_PLAINTEXT"\nsasl_password = "{SASL_SECRET}"\n'
    )
    return config


def test_state_commands_with_a_bad_config_never_show_a_password(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from cdr_stream.cli import main

    for command in (["state", "show"], ["state", "set", "--feed", "f", "--last-id", "1"]):
        assert main([*command, "--config", str(bad_config(tmp_path))]) == 2
    output = captured_output(capfd)
    assert output.count("poll_interval_seconds") == 2
    assert_no_secrets(output, [SECRET, SASL_SECRET], "the commands' output")


def test_the_run_command_with_a_bad_config_never_shows_a_password(tmp_path: Path) -> None:
    config = bad_config(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "cdr_stream.cli", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "poll_interval_seconds" in done.stderr
    assert_no_secrets(done.stdout + done.stderr, [SECRET, SASL_SECRET], "the command's output")


def test_secrets_are_read_again_from_their_file_or_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret_file = tmp_path / "password"
    secret_file.write_text("old\n")
    feed = parse_settings(minimal(password_file=str(secret_file)), {}).feeds[0]
    secret_file.write_text(SECRET + "\n")  # the Secret rotated in place
    fresh = feed.with_fresh_secrets()
    assert fresh.secret == SECRET and feed.secret == "old" and fresh.secrets() == [SECRET]
    secret_file.unlink()
    with pytest.raises(ConfigError) as caught:
        feed.with_fresh_secrets()
    assert (
        str(caught.value)
        == f"feeds (hero-nz): password_file {str(secret_file)!r} cannot be read: No such file or directory"
    )

    monkeypatch.setenv("FEED_PW", "old")
    by_env = parse_settings(minimal(password_env="FEED_PW"), {}).feeds[0]
    monkeypatch.setenv("FEED_PW", SECRET)
    assert by_env.with_fresh_secrets().secret == SECRET
    inline = parse_settings(minimal(password=SECRET), {}).feeds[0]
    assert inline.with_fresh_secrets() is inline, "nothing to read again"


def test_an_sftp_feed_reads_its_password_and_passphrase_files_again(tmp_path: Path) -> None:
    key, passphrase, password = tmp_path / "id_ed25519", tmp_path / "passphrase", tmp_path / "password"
    key.write_text("a key")
    passphrase.write_text("old-phrase")
    password.write_text("old-password")
    data = sftp_feed(tmp_path, private_key_file=str(key), passphrase_file=str(passphrase), password_file=str(password))
    feed = parse_settings(data, {}).feeds[0]
    passphrase.write_text(SECRET)
    password.write_text(SECRET + "2")
    fresh = feed.with_fresh_secrets().sftp
    assert fresh is not None and fresh.passphrase_secret == SECRET and fresh.password_secret == SECRET + "2"
    passphrase.unlink()
    with pytest.raises(ConfigError, match=r"feeds.sftp \(files\): passphrase_file .* cannot be read"):
        feed.with_fresh_secrets()


def test_the_failed_feed_settings_have_sane_defaults_and_bounds() -> None:
    settings = parse_settings(minimal(password="p"), {})
    assert (settings.failed_retry_initial_seconds, settings.failed_retry_max_seconds) == (60.0, 900.0)
    assert settings.give_up_after_attempts == 0 and settings.exit_when_any_feed_fails is False
    message = error_of({**minimal(password="p"), "failed_retry_initial_seconds": 600, "failed_retry_max_seconds": 60})
    assert "failed_retry_max_seconds must be >= failed_retry_initial_seconds" in message
    assert "give_up_after_attempts" in error_of({**minimal(password="p"), "give_up_after_attempts": -1})
