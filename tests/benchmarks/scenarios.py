"""The benchmark scenarios (5 is measured within 4). Each takes a ``Scale`` and a work
directory, runs the archiver (and, where there is one, the tool it is compared with) as
measured child processes, and returns table rows and the raw figures.

Comparisons run both sides in the same run, on the same data and server, alternating which
goes first, and report medians over ``scale.reps`` repetitions.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import sys
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .harness import (
    BOT_ID,
    MIB,
    SECRET,
    Measured,
    Row,
    alternate,
    archiver_once,
    child_env,
    fresh_dir,
    median,
    missing_tools,
    run_measured,
    run_pipeline,
    server_process,
    session_ids,
    write_config,
)

Result = tuple[list[Row], dict[str, Any]]


@dataclass(frozen=True)
class Scale:
    """Sizes of every scenario: those the targets are stated for (``FULL``), or a few seconds'
    worth (``SMOKE``)."""

    reps: int
    media_size: int  # 1: one media file
    inline_size: int  # 2: decoded size of one inline recording
    api_limit: int  # 3: requests per window, server and client alike
    api_window: float
    api_windows: int  # windows' worth of requests to send
    sessions: int  # 4, 5
    clip_size: int
    api_latency: float
    media_latency: float
    concurrency: int
    store_jobs: int  # 6
    status_runs: int
    s3_size: int = 1024 * 1024**2  # 7: one recording through the spool to S3


FULL = Scale(
    reps=3, media_size=1024 * MIB, inline_size=512 * MIB,
    api_limit=100, api_window=10.0, api_windows=3,
    sessions=2000, clip_size=256 * 1024, api_latency=0.100, media_latency=0.050, concurrency=32,
    store_jobs=1_000_000, status_runs=5, s3_size=1024 * MIB,
)  # fmt: skip
SMOKE = Scale(
    reps=1, media_size=4 * MIB, inline_size=1 * MIB,
    api_limit=10, api_window=1.0, api_windows=2,
    sessions=48, clip_size=16 * 1024, api_latency=0.020, media_latency=0.010, concurrency=8,
    store_jobs=5_000, status_runs=2, s3_size=12 * MIB,
)  # fmt: skip


def _mib(size: int) -> str:
    return f"{size / MIB:,.0f} MiB" if size >= MIB else f"{size / 1024:,.0f} KiB"


def _check(measured: Measured, what: str, log: Path) -> None:
    if measured.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(f"{what} exited with {measured.returncode}; end of {log}:\n{tail}")


def _settle(out: Any) -> None:
    """On disk before anything is timed: the kernel writing it back later would slow the runs."""
    out.flush()
    os.fsync(out.fileno())


def write_random_file(path: Path, size: int) -> str:
    """``size`` random bytes, streamed to disk; returns their sha256."""
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        left = size
        while left:
            block = os.urandom(min(left, MIB))
            digest.update(block)
            out.write(block)
            left -= len(block)
        _settle(out)
    return digest.hexdigest()


def write_v1_body(path: Path, audio_size: int) -> str:
    """A Fetch Call Recording v1 body with one ``audio_size``-byte recording, as Kore sends it
    (every "/" escaped); streamed to disk. Returns the audio's sha256."""
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        out.write(b'{"sessionId":"67ab573f0000000000000001","recording":["data:audio\\/wav;base64,')
        left = audio_size
        while left:
            block = os.urandom(min(left, 768 * 1024))  # whole base64 quanta until the last block
            digest.update(block)
            out.write(base64.b64encode(block).replace(b"/", b"\\/"))
            left -= len(block)
        out.write(b'"]}')
        _settle(out)
    return digest.hexdigest()


def _manifest_files(archive: Path) -> list[dict[str, Any]]:
    files = []
    for manifest in archive.rglob("manifest.json"):
        files += json.loads(manifest.read_text())["files"]
    return files


def _archive_one(work: Path, api_url: str, sid: str, kore: dict[str, Any], audio: tuple[int, str], log: Path) -> Measured:
    """``archiver once`` for one session in a fresh directory, which must then hold exactly one
    audio file of ``audio`` (size, sha256); the directory is removed afterwards."""
    run_dir = fresh_dir(work, "archiver")
    config = write_config(run_dir, api_url, kore=kore)
    measured = archiver_once(config, [sid], log=log)
    _check(measured, "archiver once", log)
    files = [f for f in _manifest_files(run_dir / "archive") if f["kind"] == "audio"]
    if [(f["size"], f["sha256"]) for f in files] != [audio]:
        raise RuntimeError(f"archiver wrote {files}, expected one file of sha256 {audio[1]}")
    _remove(run_dir)
    return measured


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# -- 0. fixed cost ------------------------------------------------------------------------------


def fixed_cost(scale: Scale, work: Path) -> Result:
    """``archiver once`` with nothing to do: interpreter start, imports, store, sessions, exit.

    Every wall time below includes it once; it is shown so that the per-byte and per-session
    costs can be told apart from it.
    """
    media = work / "empty.wav"
    media.write_bytes(b"")
    log = work / "fixed.log"
    walls = []
    with server_process(["-m", "tests.benchmarks.server", "--media", str(media)], log=log) as server:
        for _ in range(max(scale.reps, 3)):
            run_dir = fresh_dir(work, "archiver")
            measured = archiver_once(write_config(run_dir, server.ready["url"]), log=log)
            _check(measured, "archiver once", log)
            walls.append(measured.wall)
    wall = median(walls)
    row = Row("0", "`archiver once` with nothing to do (start to exit; part of every wall time below)", f"{wall:.2f} s")
    return [row], {"wall": wall, "walls": walls}


# -- 1. media streaming -------------------------------------------------------------------------


def media_streaming(scale: Scale, work: Path) -> Result:
    """One large media file over loopback: archiver vs ``curl -o`` (and ``curl -o`` + fsync)."""
    media = work / "media.bin"
    expected = write_random_file(media, scale.media_size)
    log = work / "media.log"
    sid = session_ids(1)[0]
    have_curl = not missing_tools(["curl"])
    runs: dict[str, list[Measured]] = {"archiver": [], "curl": [], "curl+fsync": []}
    with server_process(["-m", "tests.benchmarks.server", "--media", str(media)], log=log) as server:
        url = f"{server.ready['url']}/media/{sid}.wav"

        def archiver() -> None:
            kore = {"fetch_voicemail": False}
            runs["archiver"].append(_archive_one(work, server.ready["url"], sid, kore, (scale.media_size, expected), log))

        def curl(fsync: bool = False) -> None:
            target = work / "curl.out"
            command = ["curl", "-sS", "--fail", "-o", str(target), url]
            if fsync:
                command = ["sh", "-c", 'curl -sS --fail -o "$1" "$2" && sync "$1"', "sh", str(target), url]
            measured = run_measured(command, log=log)
            _check(measured, "curl", log)
            if target.stat().st_size != scale.media_size:
                raise RuntimeError("curl's file has the wrong size")
            runs["curl+fsync" if fsync else "curl"].append(measured)
            _remove(target)

        for rep in range(scale.reps):
            for side in alternate(rep, archiver, curl) if have_curl else (archiver,):
                os.sync()
                side()
            if have_curl:
                os.sync()
                curl(fsync=True)
    media.unlink()

    size = scale.media_size
    ours = median([m.wall for m in runs["archiver"]])
    rss = max(m.peak_rss_mib for m in runs["archiver"])
    figures: dict[str, Any] = {
        "size": size, "archiver_wall": ours, "archiver_mib_s": size / MIB / ours, "archiver_rss_mib": rss,
        "archiver_cpu": median([m.cpu for m in runs["archiver"]]),
        "walls": {side: [round(m.wall, 3) for m in measured] for side, measured in runs.items()},
    }  # fmt: skip
    rows = [
        Row("1", f"peak RSS, one {_mib(size)} media file", f"{rss:.0f} MiB", target="< 100 MB", met=rss * MIB < 100e6)
    ]
    if have_curl:
        theirs = median([m.wall for m in runs["curl"]])
        synced = median([m.wall for m in runs["curl+fsync"]])
        ratio = theirs / ours
        figures.update(curl_wall=theirs, curl_mib_s=size / MIB / theirs, curl_fsync_wall=synced, ratio=ratio)
        rows.insert(0, Row(
            "1", f"throughput, one {_mib(size)} media file (vs `curl -o`)",
            f"{size / MIB / ours:,.0f} MiB/s ({ours:.2f} s)", f"{size / MIB / theirs:,.0f} MiB/s ({theirs:.2f} s)",
            f"{ratio:.2f}x", ">= 0.9x", ratio >= 0.9,
        ))  # fmt: skip
        rows.insert(1, Row(
            "1", "  same, vs `curl -o` then `sync FILE` (equal durability)",
            f"{size / MIB / ours:,.0f} MiB/s", f"{size / MIB / synced:,.0f} MiB/s ({synced:.2f} s)",
            f"{synced / ours:.2f}x",
        ))  # fmt: skip
    return rows, figures


# -- 2. inline (v1) recordings ------------------------------------------------------------------


def inline_recording(scale: Scale, work: Path) -> Result:
    """One big base64 recording inside the v1 JSON body: archiver vs curl | jq | cut | base64 -d."""
    body = work / "v1-body.json"
    media = work / "unused.bin"
    media.write_bytes(b"\0" * 44)
    expected = write_v1_body(body, scale.inline_size)
    log = work / "inline.log"
    sid = session_ids(1)[0]
    have_tools = not missing_tools(["curl", "jq", "cut", "base64"])
    runs: dict[str, list[Measured]] = {"archiver": [], "pipeline": []}
    with server_process(
        ["-m", "tests.benchmarks.server", "--media", str(media), "--v1-body", str(body)], log=log
    ) as server:
        url = f"{server.ready['url']}/api/public/bot/{BOT_ID}/recordings?sessionId={sid}"

        def archiver() -> None:
            kore = {"fetch_voicemail": False, "recordings_api": "v1"}
            runs["archiver"].append(_archive_one(work, server.ready["url"], sid, kore, (scale.inline_size, expected), log))

        def pipeline() -> None:
            target = work / "pipeline.out"
            stages = [
                ["curl", "-sS", "--fail", url], ["jq", "-r", ".recording[0]"], ["cut", "-d,", "-f2"], ["base64", "-d"]
            ]
            measured = run_pipeline(stages, output=target, log=log)
            _check(measured, "the curl | jq | cut | base64 pipeline", log)
            if target.stat().st_size != scale.inline_size:
                raise RuntimeError("the pipeline's file has the wrong size")
            runs["pipeline"].append(measured)
            _remove(target)

        for rep in range(scale.reps):
            for side in alternate(rep, archiver, pipeline) if have_tools else (archiver,):
                os.sync()
                side()
    body.unlink()
    media.unlink()

    size = scale.inline_size
    ours = median([m.wall for m in runs["archiver"]])
    rss = max(m.peak_rss_mib for m in runs["archiver"])
    figures: dict[str, Any] = {
        "size": size, "archiver_wall": ours, "archiver_rss_mib": rss, "archiver_cpu": median([m.cpu for m in runs["archiver"]]),
        "walls": {side: [round(m.wall, 3) for m in measured] for side, measured in runs.items()},
    }
    rows = [Row("2", f"peak RSS, one {_mib(size)} inline recording", f"{rss:.0f} MiB", target="< 150 MB", met=rss * MIB < 150e6)]
    if have_tools:
        theirs = median([m.wall for m in runs["pipeline"]])
        their_rss = max(m.peak_rss_mib for m in runs["pipeline"])
        stages = runs["pipeline"][0].stage_rss_mib
        figures.update(pipeline_wall=theirs, pipeline_rss_mib=their_rss, pipeline_stage_rss_mib=stages)
        rows.insert(0, Row(
            "2", f"wall time, one {_mib(size)} inline (v1) recording (vs `curl | jq | cut | base64 -d`)",
            f"{ours:.2f} s", f"{theirs:.2f} s", f"{ours / theirs:.2f}x", "<= 1x", ours <= theirs,
        ))  # fmt: skip
        rows.insert(1, Row(
            "2", "peak memory (pipeline: its largest process, jq)", f"{rss:,.0f} MiB", f"{their_rss:,.0f} MiB",
            f"{rss / their_rss:.3f}x", "<= 0.2x", rss <= 0.2 * their_rss,
        ))  # fmt: skip
    return rows, figures


# -- 3. API-bound ---------------------------------------------------------------------------------


def api_bound(scale: Scale, work: Path) -> Result:
    """Many small sessions through the simulator enforcing the rate limit: rate and 429s."""
    limit, window = scale.api_limit, scale.api_window
    calls_per_session = 2  # v2 recordings + voicemail
    sessions = limit * scale.api_windows // calls_per_session
    log = work / "api.log"
    rates, refused, walls = [], [], []
    for rep in range(scale.reps):
        sim_argv = ["-m", "tests.benchmarks.simproc", "--rate-limit", str(limit), "--rate-window", str(window), "--secret", SECRET]
        with server_process(sim_argv, log=log) as sim:
            run_dir = fresh_dir(work, "api")
            config = write_config(
                run_dir, sim.ready["api_url"], bot_id=sim.ready["bot_id"], client_id=sim.ready["client_id"],
                kore={"requests_per_minute": limit, "rate_window": f"{window}s"}, daemon={"concurrency": 8},
            )  # fmt: skip
            ids = session_ids(sessions, salt=rep)
            measured = archiver_once(config, ids, log=log)
            _check(measured, "archiver once", log)
            _remove(run_dir)
        seen = sorted(at for at, _status in sim.final["api"])
        # After the first window's allowance, a client can send at most `limit` per `window`:
        # the sustained rate is what it sent after that allowance, over the time it took.
        rate = (len(seen) - limit) / (seen[-1] - seen[0]) if len(seen) > limit else 0.0
        rates.append(rate)
        refused.append(sim.final["rate_limited"])
        walls.append(measured.wall)
    budget = limit / window
    rate = median(rates)
    figures = {"budget_per_s": budget, "rate_per_s": rate, "ratio": rate / budget, "rate_limited": refused, "sessions": sessions}
    rows = [
        Row(
            "3", f"sustained API rate, {sessions} sessions under {limit} requests per {window:g} s",
            f"{rate:.2f} req/s", f"budget {budget:.2f} req/s", f"{rate / budget:.3f}x", ">= 0.95x", rate >= 0.95 * budget,
        ),
        Row("3", "429 answers received", str(max(refused)), target="0", met=max(refused) == 0),
    ]
    return rows, figures


# -- 4 and 5. latency-bound ---------------------------------------------------------------------


def _fetch_urls(api_url: str, ids: list[str], concurrency: int) -> list[str]:
    """The media URLs of ``ids``, asked of the v2 API beforehand (for aria2c's input file)."""

    def one(sid: str) -> str:
        url = f"{api_url}/api/public/bot/{BOT_ID}/v2/recordings?sessionId={sid}"
        with urllib.request.urlopen(urllib.request.Request(url, headers={"auth": "x"}), timeout=60) as resp:
            return json.load(resp)["recording"][0]["fileUrl"]

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, ids))


def latency_bound(scale: Scale, work: Path) -> Result:
    """Many sessions, each an API call and a download with latency: vs ideal, vs aria2c, CPU."""
    clip = work / "clip.wav"
    write_random_file(clip, scale.clip_size)
    log = work / "latency.log"
    ids = session_ids(scale.sessions)
    ids_file = work / "ids.txt"
    ids_file.write_text("\n".join(ids) + "\n")
    have_aria2 = not missing_tools(["aria2c"])
    c = scale.concurrency
    runs: dict[str, list[Measured]] = {"archiver": [], "aria2c": []}
    server_argv = [
        "-m", "tests.benchmarks.server", "--media", str(clip),
        "--api-latency", str(scale.api_latency), "--media-latency", str(scale.media_latency),
    ]  # fmt: skip
    with server_process(server_argv, log=log) as server:
        urls_file = work / "urls.txt"
        if have_aria2:
            urls_file.write_text("\n".join(_fetch_urls(server.ready["url"], ids, 64)) + "\n")

        def archiver() -> None:
            run_dir = fresh_dir(work, "archiver")
            config = write_config(
                run_dir, server.ready["url"], kore={"fetch_voicemail": False},
                media={"concurrency": c}, daemon={"concurrency": c},
            )  # fmt: skip
            measured = archiver_once(config, ids_file=ids_file, log=log)
            _check(measured, "archiver once", log)
            archived = sum(1 for _ in (run_dir / "archive").rglob("manifest.json"))
            if archived != len(ids):
                raise RuntimeError(f"archiver archived {archived} of {len(ids)} sessions")
            runs["archiver"].append(measured)

        def aria2c() -> None:
            out = fresh_dir(work, "aria2c")
            measured = run_measured(["aria2c", "-j", str(c), "-i", str(urls_file), "-d", str(out), "-q"], log=log)
            _check(measured, "aria2c", log)
            got = sum(1 for p in out.iterdir() if p.suffix == ".wav")
            if got != len(ids):
                raise RuntimeError(f"aria2c downloaded {got} of {len(ids)} files")
            runs["aria2c"].append(measured)

        # The outputs stay until the end: thousands of files just deleted make the next run's
        # file creations slower (ext4 steps over recently freed inodes), whichever side it is.
        for rep in range(scale.reps):
            for side in alternate(rep, archiver, aria2c) if have_aria2 else (archiver,):
                os.sync()  # what an earlier run left dirty is not written back during this one
                side()
    clip.unlink()

    n = scale.sessions
    ideal = n * (scale.api_latency + scale.media_latency) / c
    ours = median([m.wall for m in runs["archiver"]])
    cpu = median([m.cpu for m in runs["archiver"]])
    figures: dict[str, Any] = {
        "sessions": n, "ideal": ideal, "archiver_wall": ours, "ratio_ideal": ours / ideal,
        "cpu_ms_per_session": cpu / n * 1000, "archiver_rss_mib": max(m.peak_rss_mib for m in runs["archiver"]),
        "walls": {side: [round(m.wall, 3) for m in measured] for side, measured in runs.items()},
    }  # fmt: skip
    api_ms, media_ms = scale.api_latency * 1000, scale.media_latency * 1000
    rows = [
        Row(
            "4", f"wall time, {n:,} sessions of {_mib(scale.clip_size)}, concurrency {c} (vs ideal*)",
            f"{ours:.2f} s", f"ideal {ideal:.2f} s", f"{ours / ideal:.2f}x", "<= 1.25x", ours <= 1.25 * ideal,
        ),
    ]
    if have_aria2:
        theirs = median([m.wall for m in runs["aria2c"]])
        their_cpu = median([m.cpu for m in runs["aria2c"]])
        figures.update(aria2c_wall=theirs, ratio_aria2c=ours / theirs, aria2c_cpu_ms_per_file=their_cpu / n * 1000)
        floor = n * scale.media_latency / c
        rows.append(Row(
            "4", f"  same, vs `aria2c -j {c} -i urls.txt` (media only; its own floor {floor:.2f} s)",
            f"{ours:.2f} s", f"{theirs:.2f} s", f"{ours / theirs:.2f}x", "<= 1.2x", ours <= 1.2 * theirs,
        ))  # fmt: skip
    rows.append(Row(
        "5", "CPU (user + sys) per archived session, scenario 4",
        f"{cpu / n * 1000:.2f} ms", f"aria2c {figures['aria2c_cpu_ms_per_file']:.2f} ms/file" if have_aria2 else "",
        "", "<= 10 ms", cpu / n <= 0.010,
    ))  # fmt: skip
    figures["ideal_definition"] = (
        f"sessions x (API latency x API calls per session + media latency) / concurrency"
        f" = {n} x ({api_ms:g} ms x 1 + {media_ms:g} ms) / {c}"
    )
    return rows, figures


# -- 6. queue scale -----------------------------------------------------------------------------


def queue_scale(scale: Scale, work: Path) -> Result:
    """``archiver status`` on a store of many jobs."""
    log = work / "status.log"
    run_dir = fresh_dir(work, "status")
    config = write_config(run_dir, "http://127.0.0.1:9")
    built = run_measured(
        [sys.executable, "-m", "tests.benchmarks.buildstore", str(run_dir / "state"), "--jobs", str(scale.store_jobs)],
        log=log, env=child_env(),
    )  # fmt: skip
    _check(built, "building the job store", log)
    walls = []
    for _ in range(scale.status_runs):
        measured = run_measured([sys.executable, "-m", "archiver", "status", "--config", str(config)], log=log, env=child_env())
        _check(measured, "archiver status", log)
        walls.append(measured.wall)
    _remove(run_dir)
    wall = median(walls)
    figures = {"jobs": scale.store_jobs, "status_wall": wall, "build_wall": built.wall}
    rows = [Row(
        "6", f"`archiver status` on {scale.store_jobs:,} jobs (median of {scale.status_runs})",
        f"{wall:.2f} s", target="< 1 s", met=wall < 1.0,
    )]  # fmt: skip
    return rows, figures


# -- 7. S3: through the spool to a local S3 server -------------------------------------------------

S3_KEY_ID, S3_SECRET = "AKIABENCHARCHIVER000", "bench-s3-secret-key"
S3_BUCKET = "bench-archive"


def _s3_env() -> dict[str, str]:
    return child_env(AWS_ACCESS_KEY_ID=S3_KEY_ID, AWS_SECRET_ACCESS_KEY=S3_SECRET, AWS_DEFAULT_REGION="us-east-1")


def _s3tool(*args: str, log: Path) -> None:
    measured = run_measured([sys.executable, "-m", "tests.benchmarks.s3tool", *args], log=log, env=_s3_env())
    _check(measured, f"s3tool {args[0]}", log)


def aws_cli(install: bool) -> str | None:
    """The ``aws`` command: on PATH, or in its own venv beside this interpreter's (installed from
    PyPI when ``install``; its own venv, because awscli pins botocore to one release)."""
    found = shutil.which("aws")
    venv = Path(sys.prefix) / "awscli"
    if found or (venv / "bin" / "aws").exists():
        return found or str(venv / "bin" / "aws")
    if not install:
        return None
    import subprocess

    print("installing awscli from PyPI into its own venv ...", file=sys.stderr, flush=True)
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=False, **quiet)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "awscli"], check=False, **quiet)
    return str(venv / "bin" / "aws") if (venv / "bin" / "aws").exists() else None


def s3_upload(scale: Scale, work: Path) -> Result:
    """One recording downloaded into the spool, uploaded to moto's S3 server and proven, vs
    ``aws s3 cp`` of the same file to the same server; peak RSS."""
    media = work / "media.bin"
    expected = write_random_file(media, scale.s3_size)
    log = work / "s3.log"
    sid = session_ids(1)[0]
    secret = work / "s3-secret"
    secret.write_text(S3_SECRET)
    aws = aws_cli(install=scale is FULL)
    runs: dict[str, list[Measured]] = {"archiver": [], "aws": []}
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with server_process(["-m", "tests.benchmarks.server", "--media", str(media)], log=log) as server, \
            _moto(port, log):
        _s3tool("create", endpoint, S3_BUCKET, log=log)

        def archiver() -> None:
            run_dir = fresh_dir(work, "archiver")
            config = write_config(
                run_dir, server.ready["url"], kore={"fetch_voicemail": False},
                archive={"target": "s3"},
                s3={
                    "endpoint_url": endpoint, "bucket": S3_BUCKET, "prefix": f"{run_dir.name}/", "addressing_style": "path",
                    "access_key_id": S3_KEY_ID, "secret_access_key_file": str(secret),
                    "multipart_threshold": "8MiB",
                },
            )
            measured = archiver_once(config, [sid], log=log)
            _check(measured, "archiver once", log)
            left = next(run_dir.joinpath("state").rglob("*.wav"), None)
            if left is not None:
                raise RuntimeError(f"the spool still holds {left}")
            _s3tool("check", endpoint, S3_BUCKET, f"{run_dir.name}/", str(scale.s3_size), expected, log=log)
            runs["archiver"].append(measured)
            _remove(run_dir)

        def aws_cp() -> None:
            key = f"aws-{len(runs['aws'])}/media.bin"
            measured = run_measured(
                [aws, "s3", "cp", "--only-show-errors", "--endpoint-url", endpoint, str(media), f"s3://{S3_BUCKET}/{key}"],
                log=log, env=_s3_env(),
            )
            _check(measured, "aws s3 cp", log)
            runs["aws"].append(measured)
            _s3tool("delete", endpoint, S3_BUCKET, key, log=log)

        for rep in range(scale.reps):
            for side in alternate(rep, archiver, aws_cp) if aws else (archiver,):
                os.sync()
                side()
    media.unlink()
    size = scale.s3_size
    ours = median([m.wall for m in runs["archiver"]])
    rss = max(m.peak_rss_mib for m in runs["archiver"])
    figures: dict[str, Any] = {
        "size": size, "sha256": expected, "archiver_wall": ours, "archiver_mib_s": size / MIB / ours,
        "archiver_rss_mib": rss, "archiver_cpu": median([m.cpu for m in runs["archiver"]]),
        "walls": {side: [round(m.wall, 3) for m in measured] for side, measured in runs.items()},
    }  # fmt: skip
    rows = [Row("7", f"peak RSS, one {_mib(size)} recording to S3", f"{rss:.0f} MiB", target="< 150 MB", met=rss * MIB < 150e6)]
    if aws:
        theirs = median([m.wall for m in runs["aws"]])
        figures.update(aws_wall=theirs, aws_mib_s=size / MIB / theirs, aws_rss_mib=max(m.peak_rss_mib for m in runs["aws"]))
        rows.insert(0, Row(
            "7", f"one {_mib(size)} recording: download to the spool, upload, prove (vs `aws s3 cp` of the file)",
            f"{size / MIB / ours:,.0f} MiB/s ({ours:.2f} s)", f"{size / MIB / theirs:,.0f} MiB/s ({theirs:.2f} s)",
            f"{theirs / ours:.2f}x",
        ))  # fmt: skip
    return rows, figures


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _moto:
    """moto's S3 server as a child on 127.0.0.1:``port`` for the length of a block."""

    def __init__(self, port: int, log: Path) -> None:
        self.port, self.log = port, log

    def __enter__(self) -> "_moto":
        import subprocess
        import time

        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=subprocess.DEVNULL, stderr=err, env=child_env(),
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/moto-api/", timeout=2).close()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto's S3 server did not start; see {self.log}") from None
                time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(30)


SCENARIOS: dict[str, Callable[[Scale, Path], Result]] = {
    "0": fixed_cost,
    "1": media_streaming,
    "2": inline_recording,
    "3": api_bound,
    "4": latency_bound,
    "6": queue_scale,
    "7": s3_upload,
}
