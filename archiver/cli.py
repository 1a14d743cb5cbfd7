"""The ``archiver`` command line.

    archiver run      --config FILE          the daemon (systemd Type=notify)
    archiver once     --config FILE [--ids FILE] [ID ...]   ingest inbox + ids, drain, exit
    archiver check    --config FILE          can the service start? (config, dirs, credentials)
    archiver status   --config FILE [--json] queue counts, oldest pending, recent errors
    archiver enqueue  --config FILE [--force] [--user] ID ...
    archiver retry    --config FILE [--failed] [--deferred] [ID ...]
    archiver verify   --config FILE [--since DATE] [--session ID] [--requeue] [--json] [--deep]
    archiver backfill --config FILE --from DATE --to DATE   queue the sessions of a past range
    archiver coverage --config FILE --from DATE --to DATE [--json] [--enqueue-missing]
    archiver find     --config FILE [filters] [--json|--csv]  search the catalog of archived sessions
    archiver export   --config FILE (--session ID... | filters) (--to DIR | --zip FILE)
    archiver state    backup FILE | rebuild  --config FILE   back up / rebuild the state directory
    archiver demo     [--dir DIR] [--s3 URL] archive a few sessions from the bundled simulator
    archiver simulate [--api-port N] [--media-port N]   run the simulator on loopback

``--config`` defaults to ``$ARCHIVER_CONFIG`` and may stand before or after the command. Exit
codes: 0 success, 1 failure (or an unexpected error, logged as one line with its traceback),
2 usage or configuration error, 3 (``once``) sessions left waiting (not ready yet, or to be
retried), 75 another archiver holds the state directory, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from . import __version__
from .config import CONFIG_ENV, Config, format_size, load_config
from .errors import ArchiverError, ConfigError, StateLocked, UnsafeInputError
from .ids import SESSION, USER, id_problem
from .manifest import MANIFEST

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_WAITING = 0, 1, 2, 3
EXIT_LOCKED = 75  # EX_TEMPFAIL from sysexits.h: another archiver runs; try again later
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what `yes | head` reports for yes

log = logging.getLogger("archiver.cli")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used by tests to check the deploy files' commands)."""
    parser = argparse.ArgumentParser(prog="archiver", description="Archive Kore.ai call recordings and voicemails.")
    parser.add_argument("--version", action="version", version=f"kore-archiver {__version__}")
    config_help = f"configuration file (default ${CONFIG_ENV})"
    # A global option, before or after the command: the command's copy has no default of its
    # own (SUPPRESS), so it does not overwrite a --config given before the command.
    parser.add_argument("--config", default=os.environ.get(CONFIG_ENV), help=config_help)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", default=argparse.SUPPRESS, help=config_help)
        return p

    with_config(sub.add_parser("run", help="run the daemon"))
    once = with_config(sub.add_parser("once", help="ingest the inbox and the given ids, drain the queue, exit"))
    once.add_argument("--ids", type=Path, help="a file of ids (any inbox format)")
    once.add_argument("--user", action="store_true", help="the given ids are user ids (recordings by userId)")
    once.add_argument("ids_args", nargs="*", metavar="ID", help="session ids")
    once.add_argument(
        "--waiting-ok", action="store_true",
        help="exit 0, not 3, when sessions are only left waiting (for schedulers that count 3 as failed)",
    )
    with_config(sub.add_parser("check", help="check configuration, directories and credentials"))
    status = with_config(sub.add_parser("status", help="show the queue"))
    status.add_argument("--json", action="store_true", help="machine-readable output")
    enqueue = with_config(sub.add_parser("enqueue", help="queue session ids"))
    enqueue.add_argument("--force", action="store_true", help="archive again even if already archived")
    enqueue.add_argument("--user", action="store_true", help="the ids are user ids")
    enqueue.add_argument("ids_args", nargs="+", metavar="ID")
    retry = with_config(sub.add_parser("retry", help="put failed/deferred jobs back in the queue"))
    retry.add_argument("--failed", action="store_true")
    retry.add_argument("--deferred", action="store_true")
    retry.add_argument("ids_args", nargs="*", metavar="ID")
    verify = with_config(sub.add_parser("verify", help="re-read archived files and check them against their manifests"))
    verify.add_argument("--since", type=_date_arg, help="only sessions from this date on (YYYY-MM-DD or ISO 8601, UTC)")
    verify.add_argument("--session", help="only this session id")
    verify.add_argument("--requeue", action="store_true", help="put damaged sessions back in the queue")
    verify.add_argument("--json", action="store_true", help="machine-readable output")
    verify.add_argument("--deep", action="store_true", help="S3 target: read every object back and hash it")
    backfill = with_config(sub.add_parser("backfill", help="discover and queue the sessions of a past date range"))
    backfill.add_argument("--from", dest="date_from", type=_date_arg, required=True, help="start (YYYY-MM-DD, UTC)")
    backfill.add_argument("--to", dest="date_to", type=_date_arg, required=True, help="end (YYYY-MM-DD, UTC; inclusive)")
    coverage = with_config(sub.add_parser("coverage", help="per day: the vendor's voice calls against the archive"))
    coverage.add_argument("--from", dest="date_from", type=_date_arg, required=True, help="first day (YYYY-MM-DD, UTC)")
    coverage.add_argument("--to", dest="date_to", type=_date_arg, required=True, help="last day (YYYY-MM-DD, UTC; inclusive)")
    coverage.add_argument("--json", action="store_true", help="machine-readable output, every id listed")
    coverage.add_argument("--enqueue-missing", action="store_true", help="queue the sessions found missing")
    find = with_filters(with_config(sub.add_parser("find", help="search the catalog of archived sessions")))
    find.add_argument("--to", dest="date_to", type=_date_arg, metavar="DATE",
                      help="started on or before (a date: that whole day)")
    shape = find.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_const", dest="fmt", const="json", help="a JSON array")
    shape.add_argument("--csv", action="store_const", dest="fmt", const="csv", help="CSV with a header line")
    find.add_argument("--limit", type=int, default=0, help="at most this many sessions (default: all)")
    export = with_filters(with_config(sub.add_parser("export", help="copy sessions out, verified, with custody.json")))
    export.add_argument("--session", dest="sessions", nargs="+", action="extend", default=[], metavar="ID",
                        help="these session ids (instead of, or with, the filters)")
    where = export.add_mutually_exclusive_group(required=True)
    where.add_argument("--to", dest="to_dir", type=Path, metavar="DIR", help="a new (or empty) folder")
    where.add_argument("--zip", dest="to_zip", type=Path, metavar="FILE", help="a new zip file")
    state = sub.add_parser("state", help="back up or rebuild the state directory")
    state_sub = state.add_subparsers(dest="state_command", required=True, metavar="ACTION")
    backup = with_config(state_sub.add_parser("backup", help="a consistent copy of the state (safe while running)"))
    backup.add_argument("file", type=Path, metavar="FILE", help="the tar file to write (.tar.gz: compressed)")
    with_config(state_sub.add_parser("rebuild", help="rebuild the catalog and job store from the archive"))
    demo = sub.add_parser("demo", help="archive a few sessions from the bundled simulator")
    demo.add_argument("--dir", type=Path, default=Path("demo-archive"), help="where to put the demo (default ./demo-archive)")
    demo.add_argument(
        "--s3", metavar="URL", default="",
        help="archive to a bucket: http(s)://host:port/bucket[/prefix] (S3-compatible) or s3://bucket[/prefix] (AWS)",
    )
    simulate = sub.add_parser("simulate", help="run the Kore.ai simulator on loopback")
    simulate.add_argument("--host", default="127.0.0.1")
    simulate.add_argument("--api-port", type=int, default=8700)
    simulate.add_argument("--media-port", type=int, default=8701)
    simulate.add_argument("--rate-limit", type=int, default=60, help="requests per minute (0: no limit)")
    return parser


def with_filters(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The catalog filters ``find`` and ``export`` share (``--until`` is ``find``'s ``--to``;
    ``export`` spends ``--to`` on its destination)."""
    p.add_argument("--from", dest="date_from", type=_date_arg, metavar="DATE",
                   help="started on or after (YYYY-MM-DD or ISO 8601, UTC)")
    p.add_argument("--until", dest="date_to", type=_date_arg, metavar="DATE",
                   help="started on or before (a date: that whole day)")
    p.add_argument("--agent", metavar="TEXT", help="an agent's name, e-mail or id contains this (any case)")
    p.add_argument("--caller", metavar="TEXT", help="the caller, callee or dialled number contains this (digits alone also match)")
    p.add_argument("--queue", metavar="TEXT", help="a queue's name contains this")
    p.add_argument("--disposition", metavar="TEXT", help="a disposition or its remark contains this")
    p.add_argument("--text", metavar="WORDS", nargs="+",
                   help="every word appears in a voicemail transcription or call transcript")
    return p


def _filters(args: argparse.Namespace) -> Any:
    from .catalog import Filters
    from .find import date_bounds

    start, end = date_bounds(args.date_from, args.date_to)
    if start is not None and end is not None and end <= start:
        raise ConfigError("--until", "must be after --from")
    return Filters(date_from=start, date_to=end, agent=args.agent, caller=args.caller, queue=args.queue,
                   disposition=args.disposition, text=" ".join(args.text) if args.text else None)


def _date_arg(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date: {value!r} (use YYYY-MM-DD)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = COMMANDS[args.command]
    try:
        code = handler(args)
        sys.stdout.flush()  # here, where a closed pipe can still be handled
        return code
    except (ConfigError, UnsafeInputError) as exc:
        print(f"archiver: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StateLocked as exc:
        print(f"archiver: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    except ArchiverError as exc:
        print(f"archiver: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return _broken_pipe()
    except Exception as exc:  # noqa: BLE001 - the last resort: one log line, not a traceback dump
        _log_unexpected(exc)
        return EXIT_FAILED


def _broken_pipe() -> int:
    """The reader went away (``archiver status | head``): stop quietly, as ``cat`` would."""
    # Python flushes stdout again at exit; point it at /dev/null so that flush cannot fail.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_BROKEN_PIPE


def _log_unexpected(exc: BaseException) -> None:
    """An error no code path expected: one log line, the traceback in its ``exc`` field."""
    from .config import ObservabilityConfig
    from .logsetup import has_handler, setup_logging

    if not has_handler():
        setup_logging(ObservabilityConfig())
    log.critical("unexpected error (please report it): %s: %s", type(exc).__name__, exc, exc_info=exc)


def _config(args: argparse.Namespace, *, need_credentials: bool = True, logs: bool = False) -> Config:
    """Load the configuration; with ``logs`` set up logging for a long-running command too."""
    if not args.config:
        raise ConfigError("--config", f"no configuration file given (use --config FILE or ${CONFIG_ENV})")
    config = load_config(args.config, need_credentials=need_credentials)
    if logs:
        from .logsetup import setup_logging

        setup_logging(config.observability, _secrets(config))
        for warning in config.warnings:
            log.warning("%s", warning)
    else:
        for warning in config.warnings:
            print(f"archiver: warning: {warning}", file=sys.stderr)
    return config


def _secrets(config: Config) -> tuple[str, ...]:
    values = (config.kore.client_secret.reveal(), config.s3.secret_access_key.reveal())
    return tuple(value for value in values if value)


# -- run / once ---------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from .service import run_daemon

    config = _config(args, logs=True)
    asyncio.run(run_daemon(config))
    return EXIT_OK


def cmd_once(args: argparse.Namespace) -> int:
    config = _config(args, logs=True)
    id_type = USER if args.user else SESSION
    ids = list(_read_ids(args.ids, id_type)) if args.ids else []
    ids += _checked_ids(args.ids_args, id_type)
    code = asyncio.run(run_once(config, ids, progress=sys.stdout.isatty()))
    return EXIT_OK if code == EXIT_WAITING and args.waiting_ok else code


async def run_once(config: Config, ids: list[tuple[str, str]], *, progress: bool = False) -> int:
    """``archiver once``: drain the queue (see ``service.run_once``), print the summary, return the exit code."""
    from .service import run_once as drain

    watch = None
    if progress:
        from .progress import show_progress as watch
    result = await drain(config, ids, watch=watch, file_threads=True)
    for line in result.summary():
        print(line)
    return result.exit_code


def _checked_ids(values: Sequence[str], id_type: str) -> list[tuple[str, str]]:
    out = []
    for value in values:
        problem = id_problem(id_type, value)
        if problem:
            raise ConfigError("ID", f"{value[:60]!r} is not a valid {id_type} id: {problem}")
        out.append((id_type, value))
    return out


def _read_ids(path: Path, id_type: str) -> list[tuple[str, str]]:
    from .idfile import InvalidItem, parse_ids

    out: list[tuple[str, str]] = []
    bad = 0
    with open(path, "rb") as handle:
        for item in parse_ids(handle, path.name):
            if isinstance(item, InvalidItem):
                bad += 1
                print(f"archiver: {path}: line {item.line}: {item.reason}", file=sys.stderr)
                continue
            out.append((item.id_type, item.ext_id))
    if bad and not out:
        raise ConfigError("--ids", f"{path} holds no valid ids")
    return out


# -- operator commands --------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    from .outlook import measured_ratio, outlook
    from .store import JobStore

    config = _config(args, need_credentials=False)
    with JobStore.open_existing(config.daemon.state_dir) as store:
        status = store.status(recent=10)
        now = time.time()
        ahead = outlook(config, store, now)
        measured = measured_ratio(store)
    eta_minutes = ahead.drain_seconds / 60.0 if ahead.backlog else None
    if args.json:
        data = status.as_dict()
        data["estimated_drain_minutes"] = eta_minutes
        data["api_calls_per_archived_session"] = round(measured[0], 4) if measured else None
        data["deadlines"] = {
            **ahead.as_dict(),
            "vendor_retention_seconds": config.kore.vendor_retention or None,
            "earliest_deadline_iso": _iso(ahead.earliest_deadline),
        }
        print(json.dumps(data, indent=2, default=str))
        return EXIT_OK
    print("jobs: " + ", ".join(f"{state} {count}" for state, count in status.counts.items()))
    if status.oldest_pending_at:
        age = now - status.oldest_pending_at
        print(f"oldest pending: queued {age / 60:.0f} min ago")
    if measured:
        print(f"API calls per archived session: {measured[0]:.2f} (Contact Center, over {measured[1]:.0f} sessions)")
    if eta_minutes:
        print(
            f"estimated time to drain at {config.kore.requests_per_minute} requests/min: {eta_minutes:.0f} min "
            f"({ahead.calls_per_session:.2f} calls a session, {'measured' if ahead.measured else 'estimated'})"
        )
    if ahead.earliest_deadline is not None:
        verdict = "drains before it" if ahead.drains_before_earliest_deadline else "does NOT drain before it"
        print(f"earliest vendor deadline: {_iso(ahead.earliest_deadline)}; the backlog {verdict} at the configured budget")
        print(f"sessions at risk of missing their deadline: {ahead.at_risk} ({ahead.past_deadline} already past it)")
    for ext_id, state, error, updated in status.recent_errors:
        print(f"  {state:<8} {ext_id}: {error}")
    return EXIT_OK


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def cmd_enqueue(args: argparse.Namespace) -> int:
    from .store import JobStore

    config = _config(args, need_credentials=False)
    ids = _checked_ids(args.ids_args, USER if args.user else SESSION)
    with JobStore.open_in(config.daemon.state_dir) as store:
        result = store.enqueue(ids, force=args.force)
    print(f"added {result.added}, requeued {result.requeued}, already known {result.skipped}")
    return EXIT_OK


def cmd_retry(args: argparse.Namespace) -> int:
    from .store import JobStore

    config = _config(args, need_credentials=False)
    if not (args.failed or args.deferred or args.ids_args):
        raise ConfigError("retry", "say what to retry: --failed, --deferred or ids")
    with JobStore.open_existing(config.daemon.state_dir, read_only=False) as store:
        count = store.retry(failed=args.failed, deferred=args.deferred, ext_ids=args.ids_args)
    print(f"requeued {count} jobs")
    return EXIT_OK


# -- check --------------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    config = _config(args)
    return asyncio.run(run_check(config))


async def run_check(config: Config, out: Any = None) -> int:
    """The operator's first command: can the service start with this configuration?"""
    from .check import check_start

    out = out or sys.stdout
    ok = True

    def line(good: bool, text: str) -> None:
        nonlocal ok
        ok = ok and good
        print(f"{'ok  ' if good else 'FAIL'} {text}", file=out)

    await check_start(config, line, out)
    print("the service can start" if ok else "the service cannot start: fix the lines marked FAIL", file=out)
    return EXIT_OK if ok else EXIT_FAILED


# -- verify -------------------------------------------------------------------------------------


def cmd_verify(args: argparse.Namespace) -> int:
    from .store import JobStore
    from .verify import run_verify

    config = _config(args, need_credentials=False)
    if args.requeue:  # before the long read, not after it
        JobStore.open_existing(config.daemon.state_dir).close()
    return asyncio.run(
        run_verify(
            config, since=args.since, session_id=args.session, requeue=args.requeue, as_json=args.json,
            deep=args.deep, out=sys.stdout,
        )
    )


# -- coverage -----------------------------------------------------------------------------------


def cmd_coverage(args: argparse.Namespace) -> int:
    from .coverage import run_coverage

    config = _config(args)
    if not config.kore.account_id:
        raise ConfigError("kore.account_id", "coverage needs the Call Details API: set kore.account_id")
    date_from, date_to = args.date_from.date(), args.date_to.date()
    if date_to < date_from:
        raise ConfigError("--to", "must not be before --from")
    if (date_to - date_from).days > 366:
        raise ConfigError("--to", "at most a year at a time")
    return asyncio.run(
        run_coverage(config, date_from, date_to, as_json=args.json, enqueue=args.enqueue_missing, out=sys.stdout)
    )


# -- backfill -----------------------------------------------------------------------------------


def cmd_backfill(args: argparse.Namespace) -> int:
    config = _config(args)
    date_to = args.date_to
    if date_to.time() == datetime.min.time():
        date_to = date_to.replace(hour=23, minute=59, second=59)  # a date means the whole day
    if date_to <= args.date_from:
        raise ConfigError("--to", "must be after --from")
    return asyncio.run(run_backfill(config, args.date_from, date_to))


async def run_backfill(config: Config, date_from: datetime, date_to: datetime, out: Any = None) -> int:
    """``archiver backfill``: queue the sessions of a past range (see ``discovery.backfill_range``)."""
    from .discovery import backfill_range

    result = await backfill_range(config, date_from, date_to)
    print(
        f"backfill {date_from:%Y-%m-%d %H:%M} .. {date_to:%Y-%m-%d %H:%M}: {result.windows} windows, "
        f"{result.pages} pages, {result.seen} voice sessions: {result.added} queued, {result.known} already known",
        file=out or sys.stdout,
    )
    return EXIT_OK


# -- catalog: find, export, state ---------------------------------------------------------------


def cmd_find(args: argparse.Namespace) -> int:
    from .find import run_find

    config = _config(args, need_credentials=False)
    if args.limit < 0:
        raise ConfigError("--limit", "must be 0 (all) or more")
    run_find(config, _filters(args), sys.stdout, sys.stderr, fmt=args.fmt or "table", limit=args.limit)
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from .targets import open_reader
    from .catalog import Catalog
    from .export import Selection, export, sessions_from
    from .state import EXPORT_LOG_NAME

    config = _config(args, need_credentials=False)
    filters = _filters(args)
    ids = _checked_ids(args.sessions, SESSION)
    if not ids and filters.empty():
        raise ConfigError("export", "say what to export: --session ID ... or catalog filters (--from, --agent, ...)")
    described: dict[str, Any] = {}
    chosen = list(dict.fromkeys(ids))
    if ids:
        described["session_ids"] = [i for _t, i in chosen]
    if not filters.empty():
        described["filters"] = {k: v for k, v in vars(args).items()
                                if k in ("date_from", "date_to", "agent", "caller", "queue", "disposition") and v}
        if filters.text:
            described["filters"]["text"] = filters.text
        with Catalog.open_existing(config.daemon.state_dir) as catalog:
            chosen += [key for key in sessions_from(catalog.find(filters)) if key not in chosen]
    if not chosen:
        print("archiver: no session matches; nothing exported", file=sys.stderr)
        return EXIT_FAILED
    with open_reader(config) as reader:
        result = export(reader, Selection(chosen, json.loads(json.dumps(described, default=str))),
                        to_dir=args.to_dir, to_zip=args.to_zip,
                        log_path=config.daemon.state_dir / EXPORT_LOG_NAME, bot_id=config.kore.bot_id)
    summary = result.custody["summary"]
    print(f"exported {summary['sessions']} sessions, {summary['files_exported']} files "
          f"({format_size(summary['bytes_exported'])}) to {result.destination}")
    for session in result.custody["sessions"]:
        if session["result"] == "not_found":
            print(f"  not found {session['id']}: {session['detail']}")
        for entry in session["files"]:
            if entry["result"] == "refused":
                print(f"  refused {entry['path']}: {entry['detail']}")
    if not result.logged:
        print(f"archiver: could not append to the export log {config.daemon.state_dir / EXPORT_LOG_NAME}",
              file=sys.stderr)
    return EXIT_OK if result.complete and result.logged else EXIT_FAILED


def cmd_state(args: argparse.Namespace) -> int:
    from . import state

    config = _config(args, need_credentials=False)
    if args.state_command == "backup":
        result = state.backup(config, args.file)
        print(f"backed up {config.daemon.state_dir} to {result.path}: "
              + ", ".join(f"{name} ({format_size(size)})" for name, size in result.members))
        return EXIT_OK
    from .store import StateLock

    with StateLock(config.daemon.state_dir):  # the daemon must not run while its job store is rebuilt
        result = state.rebuild(config)
    print(f"rebuilt from {result.source}: {result.sessions} archived sessions in the catalog, "
          f"{result.jobs_added} added to the job store as done"
          + (f" ({result.failed_sessions} with a failed part: failed)" if result.failed_sessions else ""))
    if result.deleted_from_log:
        print(f"  {result.deleted_from_log} sessions are deleted at the vendor by the audit log but not by their "
              "manifest: the catalog marks them deleted")
    for location, why in result.skipped[:20]:
        print(f"  skipped {location}: {MANIFEST} {why}")
    for aside in result.set_aside:
        print(f"  unreadable database moved to {aside}")
    return EXIT_OK if not result.skipped else EXIT_FAILED


# -- demo and simulator -------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return asyncio.run(run_demo(args.dir, args.s3))


def cmd_simulate(args: argparse.Namespace) -> int:
    from .simulator import SimConfig, serve

    def ready(sim: Any) -> None:
        print(f"Kore.ai simulator: API {sim.api_url}  media {sim.media_url}  bot {sim.config.bot_id}", flush=True)
        # The simulator's own secret, not a real one: printed so the archiver can be pointed at it.
        print(f"client id {sim.config.client_id}", flush=True)
        print(f"client secret {sim.config.client_secret}", flush=True)
        print(f"  export ARCHIVER_KORE_CLIENT_SECRET={shlex.quote(sim.config.client_secret)}", flush=True)

    cfg = SimConfig(rate_limit=args.rate_limit, client_secret=os.environ.get("ARCHIVER_KORE_CLIENT_SECRET", "sim-client-secret"))
    try:
        asyncio.run(serve(cfg, host=args.host, api_port=args.api_port, media_port=args.media_port, ready=ready))
    except ValueError as exc:
        raise ConfigError("--host", str(exc)) from None
    return EXIT_OK


COMMANDS = {
    "run": cmd_run,
    "once": cmd_once,
    "check": cmd_check,
    "status": cmd_status,
    "enqueue": cmd_enqueue,
    "retry": cmd_retry,
    "verify": cmd_verify,
    "backfill": cmd_backfill,
    "coverage": cmd_coverage,
    "find": cmd_find,
    "export": cmd_export,
    "state": cmd_state,
    "demo": cmd_demo,
    "simulate": cmd_simulate,
}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
