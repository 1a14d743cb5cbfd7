"""The [s3] section: every key from the file and from ARCHIVER_S3_*, the secret key's sources,
and one clear line naming the key for each bad value."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from archiver.config import known_env_vars, load_config, spool_root
from archiver.errors import ConfigError

from .test_config import BASE, write

S3 = BASE + """
[archive]
target = "s3"

[s3]
bucket = "call-archive"
"""
ENV = {"ARCHIVER_KORE_CLIENT_SECRET": "x" * 12}


def test_every_s3_key_has_its_environment_override(tmp_path):
    secret = tmp_path / "s3-secret"
    secret.write_text("the-s3-secret\n")
    env = {
        **ENV,
        "ARCHIVER_S3_ENDPOINT_URL": "https://s3.eu-central-1.wasabisys.com",
        "ARCHIVER_S3_REGION": "eu-central-1",
        "ARCHIVER_S3_BUCKET": "other-bucket",
        "ARCHIVER_S3_PREFIX": "kore/acme/",
        "ARCHIVER_S3_ADDRESSING_STYLE": "path",
        "ARCHIVER_S3_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "ARCHIVER_S3_SECRET_ACCESS_KEY_FILE": str(secret),
        "ARCHIVER_S3_STORAGE_CLASS": "STANDARD_IA",
        "ARCHIVER_S3_SERVER_SIDE_ENCRYPTION": "aws:kms",
        "ARCHIVER_S3_SSE_KMS_KEY_ID": "alias/archive",
        "ARCHIVER_S3_OBJECT_LOCK_MODE": "COMPLIANCE",
        "ARCHIVER_S3_OBJECT_LOCK_RETENTION": "2190d",
        "ARCHIVER_S3_LEGAL_HOLD": "true",
        "ARCHIVER_S3_SPOOL_DIR": str(tmp_path / "spool"),
        "ARCHIVER_S3_KEEP_LOCAL_COPY": "yes",
        "ARCHIVER_S3_MULTIPART_THRESHOLD": "128MiB",
        "ARCHIVER_S3_PART_SIZE": "32MiB",
    }
    config = load_config(write(tmp_path, BASE), env={**env, "ARCHIVER_ARCHIVE_TARGET": "s3"})
    s3 = config.s3
    assert config.archive.target == "s3"
    assert (s3.endpoint_url, s3.region, s3.bucket, s3.prefix, s3.addressing_style) == (
        "https://s3.eu-central-1.wasabisys.com", "eu-central-1", "other-bucket", "kore/acme/", "path"
    )
    assert (s3.storage_class, s3.server_side_encryption, s3.sse_kms_key_id) == ("STANDARD_IA", "aws:kms", "alias/archive")
    assert (s3.object_lock_mode, s3.object_lock_retention, s3.legal_hold) == ("COMPLIANCE", 2190 * 86400.0, True)
    assert (s3.keep_local_copy, s3.multipart_threshold, s3.part_size) == (True, 128 * 1024**2, 32 * 1024**2)
    assert s3.secret_access_key.reveal() == "the-s3-secret" and "the-s3-secret" not in repr(config)
    assert spool_root(config) == tmp_path / "spool"
    names = {f"ARCHIVER_S3_{k}" for k in ("BUCKET", "SECRET_ACCESS_KEY_FILE", "PART_SIZE")}
    assert names <= known_env_vars() and "ARCHIVER_S3_SECRET_ACCESS_KEY" not in known_env_vars()


def test_the_secret_key_comes_from_a_file_or_the_systemd_credential_never_from_toml(tmp_path):
    with_id = S3 + 'access_key_id = "AKIAEXAMPLE"\n'
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "s3_secret_access_key").write_text("from-systemd\n")
    config = load_config(write(tmp_path, with_id), env={**ENV, "CREDENTIALS_DIRECTORY": str(tmp_path / "creds")})
    assert config.s3.secret_access_key.reveal() == "from-systemd"
    with pytest.raises(ConfigError, match="s3.secret_access_key_file"):
        load_config(write(tmp_path, with_id), env=ENV)
    with pytest.raises(ConfigError, match="s3.secret_access_key: unknown key"):
        load_config(write(tmp_path, with_id + 'secret_access_key = "inline"\n'), env=ENV)
    # Without an access key id the AWS credential chain is used and nothing is read here.
    assert not load_config(write(tmp_path, S3), env=ENV).s3.secret_access_key
    assert spool_root(load_config(write(tmp_path, S3), env=ENV)).name == "spool"


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ('target = "ftp"', "archive.target"),
        ('[s3]\nbucket = "Bad_Bucket"', "s3.bucket"),
        ('[s3]\nbucket = "call-archive"\nendpoint_url = "ftp://x"', "s3.endpoint_url"),
        ('[s3]\nbucket = "call-archive"\nendpoint_url = "https://k:s@x"', "s3.endpoint_url"),
        ('[s3]\nbucket = "call-archive"\nprefix = "kore"', "s3.prefix"),
        ('[s3]\nbucket = "call-archive"\nprefix = "../x/"', "s3.prefix"),
        ('[s3]\nbucket = "call-archive"\naddressing_style = "dns"', "s3.addressing_style"),
        ('[s3]\nbucket = "call-archive"\nserver_side_encryption = "aes"', "s3.server_side_encryption"),
        ('[s3]\nbucket = "call-archive"\nsse_kms_key_id = "k"', "s3.sse_kms_key_id"),
        ('[s3]\nbucket = "call-archive"\nobject_lock_mode = "WORM"', "s3.object_lock_mode"),
        ('[s3]\nbucket = "call-archive"\nobject_lock_mode = "COMPLIANCE"', "s3.object_lock_retention"),
        ('[s3]\nbucket = "call-archive"\nobject_lock_retention = "30d"', "s3.object_lock_retention"),
        ('[s3]\nbucket = "call-archive"\npart_size = "1MiB"', "s3.part_size"),
        ('[s3]\nbucket = "call-archive"\nmultipart_threshold = "6GiB"', "s3.multipart_threshold"),
        ('[s3]\nbucket = "call-archive"\nlegal_hold = "yes"', "s3.legal_hold"),
    ],
)
def test_bad_s3_values_name_their_key(tmp_path, extra, key):
    archive = "[archive]\n" + (extra if extra.startswith("target") else 'target = "s3"\n' + extra)
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, BASE + archive + "\n"), env=ENV)
    assert str(caught.value).startswith(f"config: {key}:")


def test_a_bad_s3_key_is_one_line_on_the_command_line(tmp_path):
    path = write(tmp_path, S3 + 'object_lock_mode = "WORM"\n')
    result = subprocess.run(
        [sys.executable, "-m", "archiver", "check", "--config", str(path)], capture_output=True, text=True,
        env={"PATH": "/usr/bin:/bin", **ENV, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}, timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "archiver: config: s3.object_lock_mode: expected '', 'GOVERNANCE' or 'COMPLIANCE'"
    ]
