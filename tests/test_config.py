"""Configuration: loading, environment overrides, secrets, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from archiver.config import Secret, known_env_vars, load_config, parse_duration, parse_size
from archiver.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "archiver.example.toml"
BASE = """
[kore]
host = "https://platform.kore.ai"
bot_id = "st-abc"
client_id = "cs-abc"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "archiver.toml"
    path.write_text(text)
    return path


def test_example_config_loads_with_a_secret_from_the_environment():
    config = load_config(EXAMPLE, env={"ARCHIVER_KORE_CLIENT_SECRET": "s3cret-value"})
    assert config.kore.recordings_api == "v2"
    assert config.media.chunk_size == 1024 * 1024
    assert config.daemon.defer_delay == 600.0
    assert config.kore.client_secret.reveal() == "s3cret-value"
    assert "s3cret-value" not in repr(config)


def test_every_key_of_the_example_is_documented_with_a_comment():
    lines = EXAMPLE.read_text().splitlines()
    for index, line in enumerate(lines):
        if "=" in line and not line.startswith(("#", "[")):
            above = index - 1
            while "=" in lines[above] and not lines[above].startswith("#"):
                above -= 1  # keys of one group share the comment above the group
            assert lines[above].startswith("#"), f"key without comment: {line}"


def test_environment_overrides_every_section(tmp_path):
    env = {
        "ARCHIVER_KORE_CLIENT_SECRET": "x" * 12,
        "ARCHIVER_DAEMON_CONCURRENCY": "9",
        "ARCHIVER_MEDIA_MAX_FILE_SIZE": "2GiB",
        "ARCHIVER_HTTP_READ_TIMEOUT": "90s",
        "ARCHIVER_ARCHIVE_ROOT": str(tmp_path / "a"),
        "ARCHIVER_MEDIA_ALLOWED_HOSTS": "media.example.com, *.korebots.com",
        "ARCHIVER_KORE_JTI_PER_REQUEST": "yes",
    }
    config = load_config(write(tmp_path, BASE), env=env)
    assert config.daemon.concurrency == 9
    assert config.media.max_file_size == 2 * 1024**3
    assert config.http.read_timeout == 90.0
    assert config.archive.root == tmp_path / "a"
    assert config.media.allowed_hosts == ("media.example.com", "*.korebots.com")
    assert config.kore.jti_per_request is True
    assert "ARCHIVER_DAEMON_STATE_DIR" in known_env_vars()


def test_the_never_stuck_settings_have_their_defaults_and_overrides(tmp_path):
    config = load_config(write(tmp_path, BASE), env={"ARCHIVER_KORE_CLIENT_SECRET": "x" * 12})
    assert config.kore.max_retry_after == 900.0
    assert (config.daemon.breaker_threshold, config.daemon.breaker_probe_initial, config.daemon.breaker_probe_max) == (
        5, 5.0, 300.0)
    assert (config.http.header_timeout, config.http.body_timeout, config.daemon.session_timeout) == (60.0, 300.0, 3600.0)
    assert config.media.min_rate == 4096
    env = {
        "ARCHIVER_KORE_CLIENT_SECRET": "x" * 12, "ARCHIVER_KORE_MAX_RETRY_AFTER": "2m",
        "ARCHIVER_DAEMON_BREAKER_THRESHOLD": "0", "ARCHIVER_DAEMON_BREAKER_PROBE_INITIAL": "1s",
        "ARCHIVER_DAEMON_BREAKER_PROBE_MAX": "1m", "ARCHIVER_DAEMON_SESSION_TIMEOUT": "10m",
        "ARCHIVER_HTTP_HEADER_TIMEOUT": "20s", "ARCHIVER_HTTP_BODY_TIMEOUT": "1m", "ARCHIVER_MEDIA_MIN_RATE": "64KiB",
    }
    config = load_config(write(tmp_path, BASE), env=env)
    assert config.kore.max_retry_after == 120.0 and config.daemon.breaker_threshold == 0
    assert (config.daemon.breaker_probe_initial, config.daemon.breaker_probe_max, config.daemon.session_timeout) == (
        1.0, 60.0, 600.0)
    assert (config.http.header_timeout, config.http.body_timeout, config.media.min_rate) == (20.0, 60.0, 65536)


def test_secret_from_a_file_and_from_systemd_credentials(tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-file-secret\n")
    config = load_config(write(tmp_path, BASE + f'client_secret_file = "{secret_file}"\n'), env={})
    assert config.kore.client_secret.reveal() == "from-file-secret"
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "kore_client_secret").write_text("from-credentials")
    config = load_config(write(tmp_path, BASE), env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert config.kore.client_secret.reveal() == "from-credentials"


@pytest.mark.parametrize(
    "extra, env, key",
    [
        ('recordings_api = "v3"\n', {}, "kore.recordings_api"),
        ('token_ttl = "2h"\n', {}, "kore.token_ttl"),
        ("requests_per_minute = 0\n", {}, "kore.requests_per_minute"),
        ("requests_per_minute = \"many\"\n", {}, "kore.requests_per_minute"),
        ("colour = 1\n", {}, "kore.colour"),
        ("", {"ARCHIVER_DAEMON_CONCURRENCY": "lots"}, "daemon.concurrency"),
        ("", {"ARCHIVER_MEDIA_CHUNK_SIZE": "4KiB"}, "media.chunk_size"),
        ("", {"ARCHIVER_DAEMON_WINDOW": "not cron"}, "daemon.window"),
        ("", {"ARCHIVER_KORE_HOST": "http://platform.kore.ai"}, "kore.host"),
        ("", {"ARCHIVER_KORE_HOST": "https://platform.kore.ai/api"}, "kore.host"),
        ("", {"ARCHIVER_OBSERVABILITY_HTTP_LISTEN": "nowhere"}, "observability.http_listen"),
        ("", {"ARCHIVER_KORE_MAX_RETRY_AFTER": "0s"}, "kore.max_retry_after"),
        ("", {"ARCHIVER_DAEMON_BREAKER_THRESHOLD": "-1"}, "daemon.breaker_threshold"),
        ("", {"ARCHIVER_DAEMON_BREAKER_PROBE_INITIAL": "0s"}, "daemon.breaker_probe_initial"),
        ("", {"ARCHIVER_DAEMON_SESSION_TIMEOUT": "0"}, "daemon.session_timeout"),
        ("", {"ARCHIVER_HTTP_HEADER_TIMEOUT": "0s"}, "http.header_timeout"),
        ("", {"ARCHIVER_HTTP_BODY_TIMEOUT": "soon"}, "http.body_timeout"),
        ("", {"ARCHIVER_MEDIA_MIN_RATE": "fast"}, "media.min_rate"),
    ],
)
def test_bad_values_name_the_key(tmp_path, extra, env, key):
    env = {"ARCHIVER_KORE_CLIENT_SECRET": "secret-value", **env}
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, BASE + extra), env=env)
    assert info.value.key == key
    assert str(info.value).startswith(f"config: {key}: ")


def test_missing_secret_is_named_and_plain_http_allowed_on_loopback(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, BASE), env={})
    assert info.value.key == "kore.client_secret"
    config = load_config(
        write(tmp_path, BASE), env={"ARCHIVER_KORE_CLIENT_SECRET": "abcd1234", "ARCHIVER_KORE_HOST": "http://127.0.0.1:8700"}
    )
    assert config.kore.origin == "http://127.0.0.1:8700"


def test_unreadable_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "missing.toml", env={})
    assert info.value.key == "--config"
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "[kore\n"), env={})
    assert "not valid TOML" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "[nope]\n"), env={})
    assert info.value.key == "nope"


def test_units():
    assert parse_duration("k", "500ms") == 0.5
    assert parse_duration("k", "2h") == 7200
    assert parse_duration("k", 7) == 7.0
    assert parse_size("k", "64MiB") == 64 * 1024**2
    assert parse_size("k", "1GB") == 10**9
    with pytest.raises(ConfigError):
        parse_duration("k", "soon")
    with pytest.raises(ConfigError):
        parse_size("k", "-1")
    assert "hunter2" not in repr(Secret("hunter2")) + str(Secret("hunter2"))


def test_call_details_settings_from_the_environment(tmp_path):
    env = {
        "ARCHIVER_KORE_CLIENT_SECRET": "x", "ARCHIVER_KORE_ACCOUNT_ID": "acct-1", "ARCHIVER_KORE_VENDOR_RETENTION": "90d",
        "ARCHIVER_DISCOVERY_SOURCE": "call_details", "ARCHIVER_CALL_DETAILS_OMIT_FIELDS": "metaInfo.caller, caller",
        "ARCHIVER_CALL_DETAILS_SKIP_VOICEMAIL": "false", "ARCHIVER_CALL_DETAILS_REQUESTS_PER_MINUTE": "30",
        "ARCHIVER_CALL_DETAILS_RATE_WINDOW": "2m", "ARCHIVER_CALL_DETAILS_PAGE_SIZE": "50",
        "ARCHIVER_CALL_DETAILS_LOOKUP_WINDOW": "20m", "ARCHIVER_CALL_DETAILS_COVERAGE_SCHEDULE": "0 2 * * *",
    }
    config = load_config(write(tmp_path, BASE), env=env)
    assert config.kore.account_id == "acct-1" and config.kore.vendor_retention == 90 * 86400
    assert config.discovery.source == "call_details"
    calls = config.call_details
    assert calls.omit_fields == ("metaInfo.caller", "caller") and calls.skip_voicemail is False
    assert (calls.requests_per_minute, calls.rate_window, calls.page_size, calls.lookup_window) == (30, 120.0, 50, 1200.0)
    assert calls.coverage_schedule == "0 2 * * *"


@pytest.mark.parametrize("extra, key", [
    ({"ARCHIVER_DISCOVERY_SOURCE": "call_details"}, "discovery.source"),
    ({"ARCHIVER_DISCOVERY_SOURCE": "webhooks"}, "discovery.source"),
    ({"ARCHIVER_KORE_ACCOUNT_ID": "../etc"}, "kore.account_id"),
    ({"ARCHIVER_KORE_VENDOR_RETENTION": "1h"}, "kore.vendor_retention"),
    ({"ARCHIVER_CALL_DETAILS_PAGE_SIZE": "101"}, "call_details.page_size"),
    ({"ARCHIVER_CALL_DETAILS_OMIT_FIELDS": "metaInfo..caller"}, "call_details.omit_fields"),
    ({"ARCHIVER_CALL_DETAILS_COVERAGE_SCHEDULE": "every day"}, "call_details.coverage_schedule"),
])
def test_call_details_settings_are_checked(tmp_path, extra, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(write(tmp_path, BASE), env={"ARCHIVER_KORE_CLIENT_SECRET": "x", **extra})


def test_the_analytics_keys_moved_to_their_section_and_the_old_ones_still_work(tmp_path):
    from archiver.config import load_config

    old = tmp_path / "old.toml"
    old.write_text('[discovery]\nrequests_per_minute = 7\nrequests_per_hour = 70\nchannel = "x"\n')
    config = load_config(old, env={}, need_credentials=False)
    assert (config.analytics.requests_per_minute, config.analytics.requests_per_hour, config.analytics.channel) == (7, 70, "x")
    assert [w for w in config.warnings if "deprecated" in w] == [
        f"discovery.{key} is deprecated: write it as analytics.{key}"
        for key in ("requests_per_minute", "requests_per_hour", "channel")
    ]
    both = tmp_path / "both.toml"
    both.write_text("[discovery]\nrequests_per_minute = 7\n[analytics]\nrequests_per_minute = 9\n")
    assert load_config(both, env={}, need_credentials=False).analytics.requests_per_minute == 9
    env = {"ARCHIVER_DISCOVERY_CHANNEL": "y", "ARCHIVER_ANALYTICS_REQUESTS_PER_HOUR": "5"}
    config = load_config(None, env=env, need_credentials=False)
    assert (config.analytics.channel, config.analytics.requests_per_hour) == ("y", 5)
    assert config.warnings == ("ARCHIVER_DISCOVERY_CHANNEL is deprecated: set ARCHIVER_ANALYTICS_CHANNEL",)
