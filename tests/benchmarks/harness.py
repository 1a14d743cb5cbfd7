"""What every benchmark scenario needs: measured child processes, servers, tools, configs.

A measured program always runs as a child of this process, reaped with ``os.wait4`` so that
its wall time, CPU (user + sys) and peak RSS are its own. Linux starts a child's peak RSS
at its parent's resident size (the figure survives fork and exec), so the process driving
the benchmarks stays small: it streams the test data to disk instead of holding it, and it
never imports aiohttp; servers and store builders are children too.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[2]
SECRET = "bench-client-secret"
BOT_ID = "st-bench-bot"
CLIENT_ID = "cs-bench-client"
MIB = 1024 * 1024
# Debian package of each command-line tool a comparison runs.
TOOLS = {"curl": "curl", "jq": "jq", "aria2c": "aria2", "base64": "coreutils", "cut": "coreutils"}


@dataclass(frozen=True)
class Measured:
    """One finished child process (or pipeline)."""

    wall: float  # seconds, spawn to exit
    user: float  # CPU seconds
    sys: float
    peak_rss_mib: float  # the largest process's peak resident set
    returncode: int
    stage_rss_mib: tuple[float, ...] = ()  # a pipeline: each stage's peak, in order

    @property
    def cpu(self) -> float:
        return self.user + self.sys


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a measured archiver: the repository importable, the secret set."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["ARCHIVER_KORE_CLIENT_SECRET"] = SECRET
    env.pop("ARCHIVER_CONFIG", None)
    env.update(extra)
    return env


def _reap(proc: subprocess.Popen[Any]) -> tuple[int, os.struct_rusage]:
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait for it again
    return proc.returncode, usage


def run_measured(
    argv: Sequence[str], *, log: Path, env: dict[str, str] | None = None, stdin: IO[bytes] | None = None
) -> Measured:
    """Run ``argv`` to its end; its stdout and stderr go to ``log``."""
    with open(log, "ab") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(list(argv), stdin=stdin or subprocess.DEVNULL, stdout=out, stderr=out, env=env, cwd=REPO)
        code, usage = _reap(proc)
        wall = time.perf_counter() - started
    return Measured(wall, usage.ru_utime, usage.ru_stime, usage.ru_maxrss / 1024, code)


def run_pipeline(stages: Sequence[Sequence[str]], *, output: Path, log: Path) -> Measured:
    """``stage1 | stage2 | ... > output``, each stage reaped on its own (as a shell would run it)."""
    procs: list[subprocess.Popen[bytes]] = []
    with open(log, "ab") as err, open(output, "wb") as out:
        started = time.perf_counter()
        previous: IO[bytes] | None = None
        for index, argv in enumerate(stages):
            last = index == len(stages) - 1
            proc = subprocess.Popen(
                list(argv), stdin=previous or subprocess.DEVNULL, stdout=out if last else subprocess.PIPE, stderr=err,
                cwd=REPO,
            )
            if previous is not None:
                previous.close()  # the next stage holds the only read end: SIGPIPE works
            previous = proc.stdout
            procs.append(proc)
        results = [_reap(proc) for proc in procs]
        wall = time.perf_counter() - started
    codes = [code for code, _ in results]
    stage_rss = tuple(usage.ru_maxrss / 1024 for _, usage in results)
    return Measured(
        wall,
        sum(u.ru_utime for _, u in results),
        sum(u.ru_stime for _, u in results),
        max(stage_rss),
        next((c for c in codes if c), 0),
        stage_rss,
    )


def own_peak_rss_mib() -> float:
    """This process's peak RSS: the floor under every child's figure (see the module docstring)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- tools --------------------------------------------------------------------------------------


def missing_tools(names: Sequence[str]) -> list[str]:
    return [name for name in names if shutil.which(name) is None]


def ensure_tools(names: Sequence[str]) -> list[str]:
    """Install the missing tools from Debian when apt-get is there; return those still missing."""
    missing = missing_tools(names)
    if missing and shutil.which("apt-get"):
        packages = sorted({TOOLS[name] for name in missing})
        sudo = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
        if sudo is not None:
            print(f"installing {' '.join(packages)} with apt-get ...", file=sys.stderr, flush=True)
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
            subprocess.run([*sudo, "apt-get", "update", "-qq"], check=False, env=env, **quiet)
            subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", *packages], check=False, env=env, **quiet)
    return missing_tools(names)


# -- servers ------------------------------------------------------------------------------------


@dataclass
class Server:
    """A server child process and what it said when it was ready."""

    proc: subprocess.Popen[str]
    ready: dict[str, Any]
    final: dict[str, Any] = field(default_factory=dict)


@contextmanager
def server_process(argv: Sequence[str], *, log: Path, timeout: float = 30.0) -> Iterator[Server]:
    """Start a server that prints one JSON line when it listens; stop it with SIGTERM at the end
    (killed if it has not exited ``timeout`` seconds later).

    After the block, ``final`` holds the JSON line it printed on the way out (if any).
    """
    with open(log, "ab") as err:
        proc = subprocess.Popen(
            [sys.executable, *argv], stdout=subprocess.PIPE, stderr=err, text=True, env=child_env(), cwd=REPO
        )
    server = Server(proc, {})
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "" when the server died before it listened
        if not line:
            raise RuntimeError(f"server {argv} did not start; see {log}")
        server.ready = json.loads(line)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            rest, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            rest, _ = proc.communicate()
        for line in (rest or "").splitlines():
            if line.strip().startswith("{"):
                server.final = json.loads(line)


# -- the archiver's side ------------------------------------------------------------------------


def write_config(directory: Path, api_url: str, *, bot_id: str = BOT_ID, client_id: str = CLIENT_ID, **sections: dict[str, Any]) -> Path:
    """An archiver configuration rooted in ``directory``; ``sections`` override or add keys."""
    values: dict[str, dict[str, Any]] = {
        "kore": {"host": api_url, "bot_id": bot_id, "client_id": client_id, "requests_per_minute": 100000},
        "media": {"allow_private_addresses": True},
        "archive": {"root": str(directory / "archive"), "min_free_space": 0},
        "daemon": {
            "state_dir": str(directory / "state"), "inbox_dir": str(directory / "inbox"), "inbox_settle_time": "0s",
        },
        "observability": {"http_listen": "", "log_format": "json", "log_level": "INFO"},
    }
    for name, table in sections.items():
        values.setdefault(name, {}).update(table)
    return write_toml(directory / "archiver.toml", values)


def write_toml(path: Path, tables: dict[str, dict[str, Any]]) -> Path:
    """The tests' one TOML writer: ``{section: {key: value}}`` (JSON values are valid TOML ones)."""
    lines = []
    for name, table in tables.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in table.items())
    path.write_text("\n".join(lines) + "\n")
    return path


def bench_figures(script: str, *args: str, timeout: float = 300) -> dict[str, Any]:
    """Run ``tests/benchmarks/<script>`` with ``args`` (the smoke tests); it must succeed; its last
    output line, JSON, is returned."""
    done = subprocess.run(
        [sys.executable, str(Path(__file__).parent / script), *args], check=False, capture_output=True, text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def archiver_once(config: Path, ids: Sequence[str] = (), *, ids_file: Path | None = None, log: Path) -> Measured:
    """``python -m archiver once --config FILE [--ids FILE] ID ...`` as a measured child."""
    argv = [sys.executable, "-m", "archiver", "once", "--config", str(config)]
    if ids_file is not None:
        argv += ["--ids", str(ids_file)]
    return run_measured([*argv, *ids], log=log, env=child_env())


def session_ids(count: int, *, salt: int = 0) -> list[str]:
    """Distinct ObjectId-like session ids (their first 8 hex digits are a date in 2025)."""
    base = 0x67AB573F  # 2025-02-11
    return [f"{base + i // 1000:08x}{salt:04x}{i:012x}" for i in range(count)]


def fresh_dir(parent: Path, name: str) -> Path:
    path = parent / f"{name}-{secrets.token_hex(3)}"
    path.mkdir(parents=True)
    return path


# -- figures ------------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def alternate(rep: int, first: Any, second: Any) -> tuple[Any, Any]:
    """Which side goes first in repetition ``rep``: alternating, so neither always runs warm."""
    return (first, second) if rep % 2 == 0 else (second, first)


@dataclass
class Row:
    """One line of the results table."""

    scenario: str
    figure: str
    archiver: str
    other: str = ""
    ratio: str = ""
    target: str = ""
    met: bool | None = None
    note: str = ""


def render_table(rows: Sequence[Row]) -> str:
    """A Markdown table (it goes into the README as printed)."""
    header = ("#", "figure", "archiver", "other side", "ratio", "target", "met")
    lines = [header]
    for row in rows:
        met = "" if row.met is None else ("yes" if row.met else "**no**")
        lines.append((row.scenario, row.figure, row.archiver, row.other, row.ratio, row.target, met))
    out = ["| " + " | ".join(cells) + " |" for cells in lines]
    out.insert(1, "|" + "|".join("---" for _ in header) + "|")
    return "\n".join(out)
