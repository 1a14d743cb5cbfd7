"""``archiver check``: can the service start with this configuration?

Each check reports one line through ``line(good, text)``: the configuration, the archive (or
spool), inbox and state directories (writable, free space), the bucket on an S3 target, the
job store (writable by this user), the metrics listener, the JWT, then one call per API scope
the configuration uses. ``cli.py`` prints the lines and the verdict.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from .analytics import AnalyticsClient
from .client import KoreClient, api_session
from .config import Config, format_size, parse_listen, spool_root
from .errors import ArchiverError, AuthError, TransientError
from .ids import SESSION
from .retry import RetryPolicy
from .store import JobStore, StateLock


async def check_start(config: Config, line: Callable[[bool, str], None], out: Any) -> None:
    """Run every check, calling ``line(good, text)`` for each; notes go to ``out``."""
    line(True, f"configuration {config.source} is valid")
    archive = ("spool", spool_root(config)) if config.archive.target == "s3" else ("archive", config.archive.root)
    for label, path in (archive, ("inbox", config.daemon.inbox_dir), ("state", config.daemon.state_dir)):
        line(*_check_dir(label, path, config.archive.min_free_space if label == archive[0] else 0))
    if config.archive.target == "s3":
        from .s3check import check_bucket  # aiobotocore is loaded for an S3 target only

        await check_bucket(config, line, out)
    store = None
    owner = _foreign_owner(config.daemon.state_dir)
    if owner is not None:
        # Root would create (or leave) files in there that the service's user cannot write.
        line(False, f"check runs as root, but {config.daemon.state_dir} belongs to uid {owner}: "
                    "run check as that user (sudo -u, or archiverctl under systemd); the job store was not opened")
    else:
        try:
            # The API budget is shared with a daemon running on the same state directory.
            store = JobStore.open_in(config.daemon.state_dir)
        except (ArchiverError, OSError, sqlite3.Error) as exc:
            line(False, f"cannot open the job store in {config.daemon.state_dir}: {exc}")
    if store is not None:
        line(*_check_store_writable(store))
    line(*_check_listen(config))
    try:
        async with api_session(config) as http:
            # One attempt: the operator wants the answer now, not a retried one.
            client = KoreClient(config, http, store=store, retry=RetryPolicy(max_attempts=1))
            token = client.signer.token()
            line(bool(token), "signed a JWT (HS256) with the client secret")
            for good, text in await _probe_scopes(config, client, store):
                line(good, text)
    except ArchiverError as exc:
        line(False, f"API call failed: {exc}")
    finally:
        if store is not None:
            store.close()
    if config.delete.enabled:
        print(
            "note scope 'Delete Recordings' (delete.enabled) cannot be probed without deleting a recording; "
            "the first deletion shows whether it is mapped", file=out,
        )


PROBE_SESSION = "000000000000000000000000"  # a session id no account has


async def _probe_scopes(config: Config, client: Any, store: Any) -> list[tuple[bool, str]]:
    """One call per API scope the configuration uses, for a session that does not exist.

    A 401 names a scope the app lacks; any other answer (even "no such session") shows the
    call got past authentication and scope. Delete is not probed: the only probe is a delete.
    """
    analytics = AnalyticsClient(client, ledger=store)
    now = datetime.now(timezone.utc)
    probes: list[tuple[str, str, Callable[[], Awaitable[Any]]]] = []
    if config.kore.fetch_recordings:
        probes.append(("SmartAssist Recordings", "recordings", lambda: client.recordings_v2(SESSION, PROBE_SESSION)))
    if config.kore.fetch_voicemail:
        probes.append(("SmartAssist Voicemail", "voicemail", lambda: client.voicemail(PROBE_SESSION)))
    if config.discovery.enabled:
        probes.append((
            "Bot Sessions", "discovery",
            lambda: analytics.get_sessions(now - timedelta(hours=1), now, skip=0, limit=1),
        ))
    if config.kore.fetch_transcripts:
        probes.append(("Chat History", "transcripts", lambda: analytics.get_messages([PROBE_SESSION], skip=0, limit=1)))
    if config.kore.account_id:
        from .calldetails import CallDetails

        second = int(now.timestamp())
        probes.append((
            "SmartAssist Analytics", "call details, kore.account_id",
            lambda: CallDetails(client).page(second - 1, second, 0),
        ))
    results = []
    for scope, used_by, call in probes:
        what = f"scope {scope!r} ({used_by})"
        try:
            await call()
            results.append((True, f"{what}: the API at {config.kore.origin} accepted the credentials and scope"))
        except (AuthError, TransientError) as exc:
            results.append((False, f"{what}: API call failed: {exc}"))
        except ArchiverError as exc:
            results.append((True, f"{what}: accepted the credentials and scope (answered: {exc})"))
    return results


def _foreign_owner(state_dir: Path) -> int | None:
    """The owner's uid when this process is root and the state directory is someone else's."""
    if os.geteuid() != 0:
        return None
    try:
        owner = state_dir.stat().st_uid
    except OSError:
        return None
    return owner if owner != 0 else None


def _check_store_writable(store: Any) -> tuple[bool, str]:
    """The job store takes a write from the user running check (the service's user, we hope)."""
    try:
        store.check_writable()
    except sqlite3.Error as exc:
        return False, f"the job store {store.path} is not writable by uid {os.geteuid()}: {exc}"
    return True, f"the job store {store.path} is writable by uid {os.geteuid()}"


def _check_listen(config: Config) -> tuple[bool, str]:
    """observability.http_listen can be bound (or is bound by the archiver running now)."""
    if not config.observability.http_listen:
        return True, "observability.http_listen is empty: no /healthz or /metrics"
    host, port = parse_listen(config.observability.http_listen)
    holder = StateLock(config.daemon.state_dir).holder()
    if holder:
        return True, f"observability.http_listen {host}:{port}: not tried, the archiver running now{holder} serves it"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        return False, f"observability.http_listen {host}:{port} cannot be bound: {exc.strerror or exc}"
    return True, f"observability.http_listen {host}:{port} can be bound"


def _check_dir(label: str, path: Path, min_free: int) -> tuple[bool, str]:
    """A file can be written in ``path``, and ``min_free`` bytes are free there."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".archiver-check-{os.getpid()}"
        with open(probe, "wb") as handle:
            handle.write(b"ok")
        probe.unlink()
    except OSError as exc:
        return False, f"{label} directory {path} is not writable: {exc.strerror or exc}"
    free = shutil.disk_usage(path).free
    if free < min_free:
        return False, f"{label} directory {path}: only {format_size(free)} free (archive.min_free_space is {format_size(min_free)})"
    return True, f"{label} directory {path} is writable, {format_size(free)} free"
