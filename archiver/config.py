"""Configuration: one TOML file, loaded once into frozen dataclasses and passed down.

Every key can be overridden by ``ARCHIVER_<SECTION>_<KEY>``; durations and sizes are
normalised here (seconds as float, bytes as int) so no other module parses them. Nothing
here runs at import time. Errors name the key: ``config: kore.host: ...``.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from .errors import ConfigError

ENV_PREFIX = "ARCHIVER_"
CONFIG_ENV = "ARCHIVER_CONFIG"
CREDENTIAL_NAME = "kore_client_secret"
S3_CREDENTIAL_NAME = "s3_secret_access_key"
TARGETS = ("file", "s3")
# S3's own limits: one PUT carries at most 5 GiB; a multipart part is 5 MiB..5 GiB, 10,000 parts.
S3_MAX_PUT = 5 * 1024**3
S3_MIN_PART = 5 * 1024**2


class Secret:
    """A string that never shows itself in repr, str, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself; call only where it is used (signing)."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class KoreConfig:
    host: str = "https://platform.kore.ai"
    path_prefix: str = "/api/public"
    bot_id: str = ""
    client_id: str = ""
    client_secret: Secret = field(default_factory=lambda: Secret(""), repr=False)
    client_secret_file: str = ""
    recordings_api: str = "v2"
    fetch_recordings: bool = True
    fetch_voicemail: bool = True
    fetch_transcripts: bool = False
    jti_per_request: bool = False
    token_ttl: float = 55 * 60.0
    requests_per_minute: int = 60
    rate_window: float = 60.0
    max_retry_after: float = 900.0
    account_id: str = ""  # Call Details v2 (call.json, discovery, coverage) needs it
    vendor_retention: float = 0.0  # how long the vendor keeps recordings; 0: unknown (no deadlines)

    @property
    def origin(self) -> str:
        """scheme://host[:port] of the API, the only place the JWT is ever sent."""
        parts = urlsplit(self.host)
        return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True)
class MediaConfig:
    allowed_hosts: tuple[str, ...] = ()
    allow_private_addresses: bool = False
    max_redirects: int = 5
    max_file_size: int = 8 * 1024**3
    chunk_size: int = 1024**2
    concurrency: int = 4
    min_rate: int = 4 * 1024


@dataclass(frozen=True)
class ArchiveConfig:
    root: Path = Path("/var/lib/kore-archiver/archive")
    min_free_space: int = 1024**3
    target: str = "file"


@dataclass(frozen=True)
class S3Config:
    endpoint_url: str = ""
    region: str = "us-east-1"
    bucket: str = ""
    prefix: str = ""
    addressing_style: str = "auto"
    access_key_id: str = ""
    secret_access_key_file: str = ""
    secret_access_key: Secret = field(default_factory=lambda: Secret(""), repr=False)  # resolved, never read from TOML
    storage_class: str = ""
    server_side_encryption: str = ""
    sse_kms_key_id: str = ""
    object_lock_mode: str = ""
    object_lock_retention: float = 0.0
    legal_hold: bool = False
    spool_dir: str = ""
    keep_local_copy: bool = False
    multipart_threshold: int = 64 * 1024**2
    part_size: int = 16 * 1024**2


@dataclass(frozen=True)
class HttpConfig:
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    header_timeout: float = 60.0
    body_timeout: float = 300.0
    max_attempts: int = 5
    backoff_initial: float = 1.0
    backoff_max: float = 60.0


@dataclass(frozen=True)
class DaemonConfig:
    state_dir: Path = Path("/var/lib/kore-archiver/state")
    inbox_dir: Path = Path("/var/lib/kore-archiver/inbox")
    concurrency: int = 4
    inbox_scan_interval: float = 10.0
    inbox_settle_time: float = 2.0
    inbox_max_file_size: int = 256 * 1024**2
    sweep_interval: float = 30.0
    window: str = ""
    timezone: str = ""
    grace_period: float = 30.0
    max_attempts: int = 8
    defer_delay: float = 600.0
    not_ready_timeout: float = 3 * 86400.0
    session_timeout: float = 3600.0
    breaker_threshold: int = 5
    breaker_probe_initial: float = 5.0
    breaker_probe_max: float = 300.0
    inbox_retention: float = 30 * 86400.0


@dataclass(frozen=True)
class DiscoveryConfig:
    enabled: bool = False
    interval: float = 900.0
    window: float = 86400.0
    overlap: float = 7200.0
    lookback: float = 86400.0
    page_size: int = 100
    source: str = "get_sessions"  # or "call_details" (needs kore.account_id)


@dataclass(frozen=True)
class AnalyticsConfig:
    """The Analytics APIs' budget (Kore counts it per bot, apart from the Contact Center's) and
    the channel their calls ask for; discovery and transcripts share both."""

    requests_per_minute: int = 60
    requests_per_hour: int = 1800
    channel: str = "korevg"


# Keys that moved from [discovery] to [analytics]; the old spelling works, with a warning.
MOVED_TO_ANALYTICS = ("requests_per_minute", "requests_per_hour", "channel")


@dataclass(frozen=True)
class CallDetailsConfig:
    requests_per_minute: int = 60
    rate_window: float = 60.0
    page_size: int = 100
    lookup_window: float = 600.0
    omit_fields: tuple[str, ...] = ()
    skip_voicemail: bool = True
    coverage_schedule: str = "30 0 * * *"


@dataclass(frozen=True)
class VerifyConfig:
    sample_interval: float = 0.0
    sample_size: int = 20


@dataclass(frozen=True)
class DeleteConfig:
    enabled: bool = False
    dry_run: bool = False
    audit_log: str = ""


@dataclass(frozen=True)
class ObservabilityConfig:
    log_format: str = "auto"
    log_level: str = "INFO"
    http_listen: str = "127.0.0.1:9464"


@dataclass(frozen=True)
class Config:
    kore: KoreConfig = field(default_factory=KoreConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    archive: ArchiveConfig = field(default_factory=ArchiveConfig)
    s3: S3Config = field(default_factory=S3Config)
    http: HttpConfig = field(default_factory=HttpConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    discovery: DiscoveryConfig = field(default_factory=DiscoveryConfig)
    analytics: AnalyticsConfig = field(default_factory=AnalyticsConfig)
    call_details: CallDetailsConfig = field(default_factory=CallDetailsConfig)
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    delete: DeleteConfig = field(default_factory=DeleteConfig)
    observability: ObservabilityConfig = field(default_factory=ObservabilityConfig)
    source: str = ""  # where it was loaded from, for messages
    warnings: tuple[str, ...] = ()  # said once the log is set up (unknown ARCHIVER_* variables)


SECTIONS: dict[str, type] = {
    "kore": KoreConfig,
    "media": MediaConfig,
    "archive": ArchiveConfig,
    "s3": S3Config,
    "http": HttpConfig,
    "daemon": DaemonConfig,
    "discovery": DiscoveryConfig,
    "analytics": AnalyticsConfig,
    "call_details": CallDetailsConfig,
    "verify": VerifyConfig,
    "delete": DeleteConfig,
    "observability": ObservabilityConfig,
}

# Keys whose values are durations (seconds) or sizes (bytes) in the file.
DURATIONS = {
    "kore.token_ttl", "kore.rate_window", "kore.max_retry_after", "http.connect_timeout", "http.read_timeout",
    "http.header_timeout", "http.body_timeout",
    "http.backoff_initial", "http.backoff_max", "daemon.inbox_scan_interval",
    "daemon.inbox_settle_time", "daemon.sweep_interval", "daemon.grace_period",
    "daemon.defer_delay", "daemon.not_ready_timeout", "daemon.session_timeout", "daemon.breaker_probe_initial",
    "daemon.breaker_probe_max", "daemon.inbox_retention", "discovery.interval", "discovery.window",
    "discovery.overlap", "discovery.lookback", "verify.sample_interval",
    "kore.vendor_retention", "call_details.rate_window", "call_details.lookup_window", "s3.object_lock_retention",
}
SIZES = {"media.max_file_size", "media.chunk_size", "media.min_rate", "archive.min_free_space", "daemon.inbox_max_file_size",
         "s3.multipart_threshold", "s3.part_size"}
# Keys that exist only as resolved values: never read from the file or the environment.
RESOLVED = {"s3.secret_access_key"}

_DURATION_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", re.I)
_DURATION_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?\s*", re.I)
_SIZE_UNITS = {
    None: 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}


def parse_duration(key: str, value: Any) -> float:
    """Seconds from ``30``, ``"500ms"``, ``"5m"``, ``"2h"``, ``"1d"``."""
    if isinstance(value, bool):
        raise ConfigError(key, f"expected a duration, got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION_RE.fullmatch(str(value))
        if not match:
            raise ConfigError(key, f"expected a duration like '30s', '5m', '2h', got {value!r}")
        unit = match.group(2).lower() if match.group(2) else None
        seconds = float(match.group(1)) * _DURATION_UNITS[unit]
    if seconds < 0:
        raise ConfigError(key, "must not be negative")
    return seconds


def parse_size(key: str, value: Any) -> int:
    """Bytes from ``1048576``, ``"512KiB"``, ``"64MiB"``, ``"4GiB"``, ``"1GB"``."""
    if isinstance(value, bool):
        raise ConfigError(key, f"expected a size, got {value!r}")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE_RE.fullmatch(str(value))
        if not match:
            raise ConfigError(key, f"expected a size like '64MiB', '4GiB', got {value!r}")
        unit = match.group(2).lower() if match.group(2) else None
        size = int(float(match.group(1)) * _SIZE_UNITS[unit])
    if size < 0:
        raise ConfigError(key, "must not be negative")
    return size


def format_size(size: float) -> str:
    """A size for people, in the IEC units the configuration takes: ``512 B``, ``1.5 MiB``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _coerce(key: str, field_type: Any, value: Any, from_env: bool) -> Any:
    """Turn a TOML (or environment string) value into the field's type."""
    if key in DURATIONS:
        return parse_duration(key, value)
    if key in SIZES:
        return parse_size(key, value)
    type_name = field_type if isinstance(field_type, str) else getattr(field_type, "__name__", str(field_type))
    if type_name == "bool":
        if isinstance(value, bool):
            return value
        if from_env and str(value).strip().lower() in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
            return str(value).strip().lower() in {"1", "true", "yes", "on"}
        raise ConfigError(key, f"expected true or false, got {value!r}")
    if type_name == "int":
        if isinstance(value, bool):
            raise ConfigError(key, f"expected a whole number, got {value!r}")
        try:
            return int(str(value).strip()) if from_env else _strict_int(value)
        except (TypeError, ValueError):
            raise ConfigError(key, f"expected a whole number, got {value!r}") from None
    if type_name == "Path":
        if not isinstance(value, str) or not value:
            raise ConfigError(key, f"expected a path, got {value!r}")
        return Path(value)
    if type_name == "tuple[str, ...]":
        if from_env:
            return tuple(item.strip() for item in str(value).split(",") if item.strip())
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ConfigError(key, "expected a list of strings")
        return tuple(value)
    if type_name == "Secret":
        if not isinstance(value, str):
            raise ConfigError(key, "expected a string")
        return Secret(value)
    if not isinstance(value, str):
        raise ConfigError(key, f"expected a string, got {type(value).__name__}")
    return value


def _strict_int(value: Any) -> int:
    if isinstance(value, int):
        return value
    raise ValueError(value)


def known_env_vars() -> set[str]:
    """Every environment variable the configuration reads."""
    names = {CONFIG_ENV}
    for section, cls in SECTIONS.items():
        for f in fields(cls):
            if f"{section}.{f.name}" in RESOLVED:
                continue
            names.add(f"{ENV_PREFIX}{section.upper()}_{f.name.upper()}")
    return names


def unknown_env_warnings(env: Mapping[str, str]) -> list[str]:
    """A line for each ``ARCHIVER_*`` variable that is no setting (a typo), naming the closest."""
    known = known_env_vars()
    out = []
    for name in sorted(env):
        if name.startswith(ENV_PREFIX) and name not in known:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else ""
            out.append(f"environment variable {name} is not a setting and is ignored{hint}")
    return out


def load_config(
    path: str | os.PathLike | None, env: Mapping[str, str] | None = None, *, need_credentials: bool = True
) -> Config:
    """Read, override from the environment, resolve the secret and validate.

    ``path`` may be None to run on defaults and the environment alone. Operator commands
    that only read the job store pass ``need_credentials=False``.
    """
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    source = "<environment>"
    if path is not None:
        source = str(path)
        try:
            with open(path, "rb") as handle:
                raw = tomllib.load(handle)
        except FileNotFoundError:
            raise ConfigError("--config", f"file not found: {path}") from None
        except PermissionError:
            raise ConfigError("--config", f"cannot read {path}: permission denied") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("--config", f"{path} is not valid TOML: {exc}") from None
    sections: dict[str, Any] = {}
    for name, value in raw.items():
        if name not in SECTIONS:
            raise ConfigError(name, f"unknown section (expected one of {', '.join(SECTIONS)})")
        if not isinstance(value, dict):
            raise ConfigError(name, "expected a [section] table")
    raw, env, moved = _move_to_analytics(raw, env)
    for name, cls in SECTIONS.items():
        sections[name] = _build_section(name, cls, raw.get(name, {}), env)
    config = Config(**sections, source=source, warnings=tuple(moved + unknown_env_warnings(env)))
    config = replace(config, kore=replace(config.kore, client_secret=_resolve_secret(config.kore, env)))
    config = replace(config, s3=replace(config.s3, secret_access_key=_resolve_s3_secret(config, env)))
    validate(config, need_credentials=need_credentials)
    return config


def _move_to_analytics(
    raw: dict[str, Any], env: Mapping[str, str]
) -> tuple[dict[str, Any], Mapping[str, str], list[str]]:
    """Read the Analytics keys still written under [discovery] (file or environment) as
    [analytics] ones, unless [analytics] sets them too; one warning line each."""
    discovery = dict(raw.get("discovery") or {})
    analytics = dict(raw.get("analytics") or {})
    env = dict(env)
    warnings = []
    for key in MOVED_TO_ANALYTICS:
        if key in discovery and isinstance(raw.get("discovery"), dict):
            value = discovery.pop(key)
            analytics.setdefault(key, value)
            warnings.append(f"discovery.{key} is deprecated: write it as analytics.{key}")
        old, new = f"{ENV_PREFIX}DISCOVERY_{key.upper()}", f"{ENV_PREFIX}ANALYTICS_{key.upper()}"
        if old in env:
            value = env.pop(old)
            env.setdefault(new, value)
            warnings.append(f"{old} is deprecated: set {new}")
    if isinstance(raw.get("discovery"), dict):
        raw = dict(raw, discovery=discovery, analytics=analytics)
    elif analytics:
        raw = dict(raw, analytics=analytics)
    return raw, env, warnings


def _build_section(name: str, cls: type, table: dict[str, Any], env: Mapping[str, str]) -> Any:
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known or f"{name}.{key}" in RESOLVED:
            raise ConfigError(f"{name}.{key}", "unknown key")
        values[key] = _coerce(f"{name}.{key}", known[key].type, value, from_env=False)
    for key, f in known.items():
        if f"{name}.{key}" in RESOLVED:
            continue
        env_name = f"{ENV_PREFIX}{name.upper()}_{key.upper()}"
        if env_name in env:
            values[key] = _coerce(f"{name}.{key}", f.type, env[env_name], from_env=True)
    return cls(**values)


def _resolve_secret(kore: KoreConfig, env: Mapping[str, str]) -> Secret:
    """Environment first, then a file (configured or systemd credential), then the TOML value."""
    if env.get(f"{ENV_PREFIX}KORE_CLIENT_SECRET"):
        return Secret(env[f"{ENV_PREFIX}KORE_CLIENT_SECRET"])
    candidates: list[tuple[str, str]] = []
    if kore.client_secret_file:
        candidates.append(("kore.client_secret_file", kore.client_secret_file))
    if env.get("CREDENTIALS_DIRECTORY"):
        cred = os.path.join(env["CREDENTIALS_DIRECTORY"], CREDENTIAL_NAME)
        if os.path.exists(cred):
            candidates.append(("$CREDENTIALS_DIRECTORY", cred))
    for key, file_path in candidates[:1]:
        try:
            with open(file_path, encoding="utf-8") as handle:
                value = handle.read().strip()
        except OSError as exc:
            raise ConfigError(key, f"cannot read the secret file {file_path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            # The decoder's message quotes the offending byte and its position: never show it.
            raise ConfigError(key, f"the secret file {file_path} is not UTF-8 text") from None
        if not value:
            raise ConfigError(key, f"the secret file {file_path} is empty")
        return Secret(value)
    return kore.client_secret


def _resolve_s3_secret(config: Config, env: Mapping[str, str]) -> Secret:
    """The S3 secret key: ``s3.secret_access_key_file``, else the systemd credential
    ``s3_secret_access_key``; only with ``s3.access_key_id`` (without it the standard AWS
    credential chain applies and no secret is read here)."""
    s3 = config.s3
    if config.archive.target != "s3" or not s3.access_key_id:
        return Secret("")
    if s3.secret_access_key_file:
        key, file_path = "s3.secret_access_key_file", s3.secret_access_key_file
    elif env.get("CREDENTIALS_DIRECTORY") and os.path.exists(os.path.join(env["CREDENTIALS_DIRECTORY"], S3_CREDENTIAL_NAME)):
        key, file_path = "$CREDENTIALS_DIRECTORY", os.path.join(env["CREDENTIALS_DIRECTORY"], S3_CREDENTIAL_NAME)
    else:
        raise ConfigError(
            "s3.secret_access_key_file",
            f"s3.access_key_id is set: give the secret key in a file, or as a systemd credential named {S3_CREDENTIAL_NAME}",
        )
    try:
        with open(file_path, encoding="utf-8") as handle:
            value = handle.read().strip()
    except OSError as exc:
        raise ConfigError(key, f"cannot read the secret file {file_path}: {exc.strerror}") from None
    if not value:
        raise ConfigError(key, f"the secret file {file_path} is empty")
    return Secret(value)


def spool_root(config: Config) -> Path:
    """Where sessions are downloaded before upload: ``s3.spool_dir``, else ``<state_dir>/spool``."""
    return Path(config.s3.spool_dir) if config.s3.spool_dir else config.daemon.state_dir / "spool"


def local_root(config: Config) -> Path:
    """The directory sessions are written to: the archive itself, or the spool of an S3 target."""
    return spool_root(config) if config.archive.target == "s3" else config.archive.root


def is_loopback_host(hostname: str) -> bool:
    """True for localhost names and loopback addresses."""
    if hostname in {"localhost", "localhost.localdomain"} or hostname.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(hostname.strip("[]")).is_loopback
    except ValueError:
        return False


_BOT_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


def validate(config: Config, *, need_credentials: bool = True) -> None:
    """Check the values that cannot be checked by type alone; raise ConfigError on the first."""
    kore = config.kore
    try:
        parts = urlsplit(kore.host)
        parts.port  # noqa: B018 - raises on a port out of range or not a number
    except ValueError as exc:
        raise ConfigError("kore.host", f"not a valid URL ({exc}): {kore.host!r}") from None
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise ConfigError("kore.host", f"expected an https:// URL, got {kore.host!r}")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ConfigError("kore.host", "plain http:// is allowed only for loopback hosts; use https://")
    if parts.path not in {"", "/"} or parts.query or parts.fragment or parts.username:
        raise ConfigError("kore.host", "give only scheme://host[:port]; the path goes in kore.path_prefix")
    if not re.fullmatch(r"(/[A-Za-z0-9._-]+)+", kore.path_prefix):
        raise ConfigError("kore.path_prefix", f"expected a path like '/api/public', got {kore.path_prefix!r}")
    if not _BOT_ID_RE.fullmatch(kore.bot_id) and (need_credentials or kore.bot_id):
        raise ConfigError("kore.bot_id", "missing or not a valid bot id (letters, digits, '-', '_')")
    if need_credentials and (not kore.client_id or any(ch.isspace() for ch in kore.client_id)):
        raise ConfigError("kore.client_id", "missing or contains white space")
    if need_credentials and not kore.client_secret:
        raise ConfigError(
            "kore.client_secret",
            "missing: set ARCHIVER_KORE_CLIENT_SECRET, kore.client_secret_file, or a systemd credential "
            f"named {CREDENTIAL_NAME}",
        )
    if kore.recordings_api not in {"v1", "v2"}:
        raise ConfigError("kore.recordings_api", f"expected 'v1' or 'v2', got {kore.recordings_api!r}")
    if not (kore.fetch_recordings or kore.fetch_voicemail):
        raise ConfigError("kore.fetch_recordings", "nothing to archive: enable fetch_recordings or fetch_voicemail")
    if not 60 <= kore.token_ttl <= 3600:
        raise ConfigError("kore.token_ttl", "must be between 1m and 1h (Kore rejects longer-lived tokens)")
    if kore.requests_per_minute < 1:
        raise ConfigError("kore.requests_per_minute", "must be at least 1")
    if kore.rate_window <= 0:
        raise ConfigError("kore.rate_window", "must be more than 0")
    if kore.max_retry_after <= 0:
        raise ConfigError("kore.max_retry_after", "must be more than 0")
    media = config.media
    if media.chunk_size < 256 * 1024 or media.chunk_size > 64 * 1024**2:
        raise ConfigError("media.chunk_size", "must be between 256KiB and 64MiB")
    if media.max_file_size < 1024:
        raise ConfigError("media.max_file_size", "must be at least 1KiB")
    if not 1 <= media.concurrency <= 256:
        raise ConfigError("media.concurrency", "must be between 1 and 256")
    if not 0 <= media.max_redirects <= 20:
        raise ConfigError("media.max_redirects", "must be between 0 and 20")
    for pattern in media.allowed_hosts:
        if not re.fullmatch(r"(\*\.)?[A-Za-z0-9.-]+", pattern):
            raise ConfigError("media.allowed_hosts", f"not a host name or *.domain pattern: {pattern!r}")
    http = config.http
    if http.max_attempts < 1:
        raise ConfigError("http.max_attempts", "must be at least 1")
    if http.connect_timeout <= 0 or http.read_timeout <= 0:
        raise ConfigError("http.read_timeout" if http.read_timeout <= 0 else "http.connect_timeout", "must be more than 0")
    if http.header_timeout <= 0 or http.body_timeout <= 0:
        raise ConfigError("http.header_timeout" if http.header_timeout <= 0 else "http.body_timeout", "must be more than 0")
    if http.backoff_max < http.backoff_initial:
        raise ConfigError("http.backoff_max", "must not be less than http.backoff_initial")
    daemon = config.daemon
    if not 1 <= daemon.concurrency <= 512:
        raise ConfigError("daemon.concurrency", "must be between 1 and 512")
    if daemon.max_attempts < 1:
        raise ConfigError("daemon.max_attempts", "must be at least 1")
    if daemon.session_timeout <= 0:
        raise ConfigError("daemon.session_timeout", "must be more than 0")
    if daemon.breaker_threshold < 0:
        raise ConfigError("daemon.breaker_threshold", "must not be negative (0 turns the breaker off)")
    if daemon.breaker_probe_initial <= 0:
        raise ConfigError("daemon.breaker_probe_initial", "must be more than 0")
    if daemon.window:
        _validate_window(daemon.window)
    if daemon.timezone:
        _validate_timezone(daemon.timezone)
    discovery = config.discovery
    if not 3600 <= discovery.window < 7 * 86400:
        raise ConfigError("discovery.window", "must be at least 1h and under 7d (the getSessions limit)")
    if discovery.overlap >= discovery.window:
        raise ConfigError("discovery.overlap", "must be shorter than discovery.window")
    if discovery.enabled and discovery.interval < 60:
        raise ConfigError("discovery.interval", "must be at least 1m")
    if not 1 <= discovery.page_size <= 10000:
        raise ConfigError("discovery.page_size", "must be between 1 and 10000")
    if config.analytics.requests_per_minute < 1 or config.analytics.requests_per_hour < 1:
        raise ConfigError("analytics.requests_per_hour", "rate budgets must be at least 1")
    if discovery.source not in {"get_sessions", "call_details"}:
        raise ConfigError("discovery.source", f"expected 'get_sessions' or 'call_details', got {discovery.source!r}")
    _validate_call_details(config)
    if config.verify.sample_size < 0:
        raise ConfigError("verify.sample_size", "must not be negative")
    _validate_s3(config)
    obs = config.observability
    if obs.log_format not in {"auto", "json", "text"}:
        raise ConfigError("observability.log_format", "expected 'auto', 'json' or 'text'")
    if obs.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError("observability.log_level", "expected DEBUG, INFO, WARNING or ERROR")
    if obs.http_listen:
        parse_listen(obs.http_listen)


_ACCOUNT_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_FIELD_PATH_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def _validate_call_details(config: Config) -> None:
    kore, calls = config.kore, config.call_details
    if kore.account_id and not _ACCOUNT_ID_RE.fullmatch(kore.account_id):
        raise ConfigError("kore.account_id", "not a valid account id (letters, digits, '-', '_')")
    if config.discovery.source == "call_details" and not kore.account_id:
        raise ConfigError("discovery.source", "'call_details' needs kore.account_id")
    if kore.vendor_retention and kore.vendor_retention < 86400:
        raise ConfigError("kore.vendor_retention", "must be at least 1d (the vendor keeps recordings 1 day to 7 years)")
    if calls.requests_per_minute < 1:
        raise ConfigError("call_details.requests_per_minute", "must be at least 1")
    if calls.rate_window <= 0:
        raise ConfigError("call_details.rate_window", "must be more than 0")
    if not 1 <= calls.page_size <= 100:
        raise ConfigError("call_details.page_size", "must be between 1 and 100 (the vendor's largest page)")
    if not 60 <= calls.lookup_window <= 86400:
        raise ConfigError("call_details.lookup_window", "must be between 1m and 1d")
    for path in calls.omit_fields:
        if not _FIELD_PATH_RE.fullmatch(path):
            raise ConfigError("call_details.omit_fields", f"not a field name or dotted path: {path!r}")
    if calls.coverage_schedule:
        _validate_window(calls.coverage_schedule, "call_details.coverage_schedule")


_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PREFIX_RE = re.compile(r"([A-Za-z0-9!_.*'()=+,@-]+/)*")


def _validate_s3(config: Config) -> None:
    if config.archive.target not in TARGETS:
        raise ConfigError("archive.target", f"expected 'file' or 's3', got {config.archive.target!r}")
    if config.archive.target != "s3":
        return
    s3 = config.s3
    if not _BUCKET_RE.fullmatch(s3.bucket) or ".." in s3.bucket:
        raise ConfigError("s3.bucket", f"missing or not a valid bucket name: {s3.bucket!r}")
    if s3.endpoint_url:
        parts = urlsplit(s3.endpoint_url)
        if parts.scheme not in {"https", "http"} or not parts.hostname:
            raise ConfigError("s3.endpoint_url", f"expected an https:// URL, got {s3.endpoint_url!r}")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ConfigError("s3.endpoint_url", "give only scheme://host[:port][/path], no credentials or query")
    if not re.fullmatch(r"[a-z]{2}(-[a-z0-9]+)+|[a-z0-9-]{1,40}", s3.region):
        raise ConfigError("s3.region", f"not a region name: {s3.region!r}")
    if not _PREFIX_RE.fullmatch(s3.prefix) or {".", ".."} & set(s3.prefix.split("/")):
        raise ConfigError("s3.prefix", "expected path segments of safe characters, each ending in '/', e.g. 'kore/'")
    if s3.addressing_style not in {"auto", "path", "virtual"}:
        raise ConfigError("s3.addressing_style", "expected 'auto', 'path' or 'virtual'")
    if s3.storage_class and not re.fullmatch(r"[A-Z_]{2,40}", s3.storage_class):
        raise ConfigError("s3.storage_class", f"expected a storage class like 'STANDARD_IA', got {s3.storage_class!r}")
    if s3.server_side_encryption not in {"", "AES256", "aws:kms"}:
        raise ConfigError("s3.server_side_encryption", "expected '', 'AES256' or 'aws:kms'")
    if s3.sse_kms_key_id and s3.server_side_encryption != "aws:kms":
        raise ConfigError("s3.sse_kms_key_id", "needs s3.server_side_encryption = \"aws:kms\"")
    if s3.object_lock_mode not in {"", "GOVERNANCE", "COMPLIANCE"}:
        raise ConfigError("s3.object_lock_mode", "expected '', 'GOVERNANCE' or 'COMPLIANCE'")
    if s3.object_lock_mode and s3.object_lock_retention < 86400:
        raise ConfigError("s3.object_lock_retention", "with an object_lock_mode, give at least 1d (e.g. \"2190d\")")
    if s3.object_lock_retention and not s3.object_lock_mode:
        raise ConfigError("s3.object_lock_retention", "needs s3.object_lock_mode")
    if not S3_MIN_PART <= s3.part_size <= S3_MAX_PUT:
        raise ConfigError("s3.part_size", "must be between 5MiB and 5GiB (S3's part limits)")
    if not 0 < s3.multipart_threshold <= S3_MAX_PUT:
        raise ConfigError("s3.multipart_threshold", "must be more than 0 and at most 5GiB (S3's single PUT limit)")


def _validate_window(expression: str, key: str = "daemon.window") -> None:
    from apscheduler.triggers.cron import CronTrigger  # only needed when a window is set

    try:
        CronTrigger.from_crontab(expression)
    except ValueError as exc:
        raise ConfigError(key, f"not a valid 5-field cron expression: {exc}") from None


def _validate_timezone(name: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError("daemon.timezone", f"not a known IANA time zone like 'Europe/Berlin': {name!r}") from None


def parse_listen(value: str) -> tuple[str, int]:
    """``host:port`` of the observability endpoint."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError("observability.http_listen", f"expected host:port, got {value!r}")
    return host, int(port)
