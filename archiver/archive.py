"""Archiving one session: ask the APIs, download, write sidecars, then the manifest.

A session has parts (``recordings``, ``voicemail``, ``transcript``). Each finished part is
recorded in a part file (see ``manifest.py``), so a session interrupted half-way (not ready,
crash, kill) does not fetch a finished part again. The manifest is written last, from the
part files, and its presence means the session is archived.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import aiohttp

from . import __version__
from . import audit, generations, identity
from .analytics import AnalyticsClient
from . import manifest as mf
from .atomicfile import AtomicFile, remove_stale_temps, write_json, write_json_sync
from .calldetails import CALL_FILE, CallDetails, CallRecords, call_document, has_voicemail, vendor_deadline
from .client import NOT_READY, READY, KoreClient, MediaItem, not_ready
from .catalog import Catalog, record_session
from .completeness import INLINE_JSON, NONE
from .config import Config
from .download import DownloadResult, MediaDownloader
from .errors import MediaRefusedError, NotReadyError, PermanentError, ProtocolError, TransientError
from .ids import SESSION
from .inline import InlineRecordingParser, RecordingData, RecordingEnd, RecordingStart, is_audio_type
from .layout import SIDECAR_SUFFIX, TRANSCRIPTION_SUFFIX, TakenNames, extension_for, inside, safe_filename, session_dir
from .manifest import CALL, MANIFEST_FORMAT, RECORDINGS, TRANSCRIPT, VOICEMAIL, now_iso
from .metrics import Metrics
from .redact import redact_url
from .transcripts import fetch_transcript

log = logging.getLogger("archiver.archive")

# A URL refused after being freshly issued this many times is not a passing expiry: the
# session is retried later as a whole (daemon.max_attempts).
MAX_URL_REFRESHES = 3
# Items named on the event loop (microseconds each); a longer list is named in a thread.
NAMES_ON_LOOP = 64
TRANSCRIPT_FILE = "transcript.json"


@dataclass
class SessionResult:
    """How one session ended (not-ready and transient outcomes are raised instead)."""

    outcome: str  # "done" | "failed"
    directory: Path
    files: int = 0
    bytes: int = 0
    reason: str | None = None
    parts: dict[str, str] = field(default_factory=dict)


def wanted_parts(config: Config, id_type: str) -> tuple[str, ...]:
    """The parts to fetch, as the configuration turns them on (voicemail needs a session id)."""
    switches = (
        (RECORDINGS, config.kore.fetch_recordings),
        (VOICEMAIL, config.kore.fetch_voicemail),
        (TRANSCRIPT, config.kore.fetch_transcripts),
    )
    chosen = [p for p, on in switches if on]
    if config.kore.account_id:
        chosen.insert(0, CALL)
    return tuple(p for p in chosen if p == RECORDINGS or id_type == SESSION)  # by-user lookups: recordings only


class SessionArchiver:
    """Archives sessions; one instance shared by all workers."""

    def __init__(
        self,
        config: Config,
        client: KoreClient,
        downloader: MediaDownloader,
        metrics: Metrics | None = None,
        *,
        analytics: AnalyticsClient | None = None,
        calls: CallRecords | None = None,
        catalog: Catalog | None = None,
    ) -> None:
        self.config = config
        self.catalog = catalog  # kept open by the service; None: opened for each session
        self.client = client
        self.downloader = downloader
        self.metrics = metrics or client.metrics
        # One Analytics client (one limiter) per process: discovery shares it.
        self.analytics = analytics or AnalyticsClient(client)
        # Call details: the records discovery stored, else the API (one limiter per process).
        if calls is None and config.kore.account_id:
            calls = CallRecords(config, None, CallDetails(client))
        self.calls = calls

    # What proves an archived session's files before the vendor's copy is deleted: None means
    # re-reading them from disk; an S3 target asks the bucket instead (see s3archive.py).
    proof = None

    async def settled(self, result: SessionResult) -> None:
        """The session's outcome is final; a file archive has nothing left to do."""

    def directory(self, id_type: str, ext_id: str) -> Path:
        return session_dir(self.config.archive.root, self.config.kore.bot_id, id_type, ext_id)

    async def archive(
        self, id_type: str, ext_id: str, *, force: bool = False, finishing: Callable[[], None] | None = None
    ) -> SessionResult:
        """Archive one session. Raises NotReadyError, TransientError or PermanentError otherwise.

        ``finishing``, if given, is called once nothing but writing the manifest is left (the
        worker claims its next job meanwhile)."""
        directory = self.directory(id_type, ext_id)
        existed = directory.is_dir()
        if existed:
            # An earlier attempt was here: clear what it left half-written. (The directory
            # itself is created by the first file written in it.)
            await asyncio.to_thread(remove_stale_temps, directory)
            complete = await asyncio.to_thread(_start_from_manifest, self.config, directory, id_type, ext_id, force)
            if complete is not None:
                if self.config.archive.target == "file":  # indexed again: a catalog may have lost it
                    await asyncio.to_thread(record_session, self.config, directory, complete, catalog=self.catalog)
                return _result_from_manifest(directory, complete)

        parts: dict[str, dict[str, Any]] = {}
        pending_not_ready: NotReadyError | None = None
        wanted = wanted_parts(self.config, id_type)
        for part in wanted:
            done = await asyncio.to_thread(mf.read_part, directory, part) if existed else None
            if done is not None:
                parts[part] = done
                continue
            try:
                if part == RECORDINGS:
                    parts[part] = await self._recordings(id_type, ext_id, directory, reuse=existed and not force)
                elif part == VOICEMAIL:
                    parts[part] = self._no_voicemail(parts.get(CALL)) or await self._voicemail(
                        ext_id, directory, reuse=existed and not force
                    )
                elif part == CALL:
                    parts[part] = await self._call_details(ext_id, directory)
                else:
                    parts[part] = await self._transcript(ext_id, directory)
            except NotReadyError as exc:
                pending_not_ready = exc  # finish the other parts, then report not ready
                continue
            if part != wanted[-1] or pending_not_ready is not None:
                await mf.write_part(directory, part, parts[part])
        if pending_not_ready is not None:
            raise pending_not_ready
        # The last part needs no part file: the manifest, written next, holds it.
        if finishing is not None:
            finishing()
        return await self._write_manifest(directory, id_type, ext_id, parts)

    # -- recordings -----------------------------------------------------------------------------

    async def _recordings(self, id_type: str, ext_id: str, directory: Path, *, reuse: bool = True) -> dict[str, Any]:
        if self.config.kore.recordings_api == "v1":
            return await self._recordings_v1(id_type, ext_id, directory)
        answer = await self.client.recordings_v2(id_type, ext_id)
        if answer.status in NOT_READY:
            raise not_ready(answer.status, "recordings")
        if answer.status != READY or not answer.items:
            status = answer.status if answer.status != READY else "no_recordings"
            return {"status": status, "api": "v2", "files": []}

        async def refresh() -> tuple[MediaItem, ...]:
            fresh = await self.client.recordings_v2(id_type, ext_id)
            if fresh.status != READY:
                raise TransientError(f"recordings: status became {fresh.status} while refreshing URLs")
            return fresh.items

        files = await self._download_items(
            answer.items, directory / RECORDINGS, "recording", "v2_recordings", refresh, ext_id, reuse=reuse
        )
        return {"status": READY, "api": "v2", "files": files}

    async def _recordings_v1(self, id_type: str, ext_id: str, directory: Path) -> dict[str, Any]:
        target = directory / RECORDINGS

        async def consume(resp: aiohttp.ClientResponse) -> list[dict[str, Any]]:
            writer = _InlineWriter(self, target, ext_id)
            try:
                parser = InlineRecordingParser(max_item_size=self.config.media.max_file_size)
                async for chunk in resp.content.iter_chunked(self.config.media.chunk_size):
                    for event in parser.feed(chunk):
                        await writer.handle(event)
                for event in parser.close():
                    await writer.handle(event)
            finally:
                await writer.abort_open()
            return writer.files

        files = await self.client.stream_recordings_v1(id_type, ext_id, consume)
        return {"status": READY if files else "no_recordings", "api": "v1", "files": files}

    # -- voicemail ------------------------------------------------------------------------------

    async def _voicemail(self, session_id: str, directory: Path, *, reuse: bool = True) -> dict[str, Any]:
        answer = await self.client.voicemail(session_id)
        if answer.status in NOT_READY:
            raise not_ready(answer.status, "voicemail")
        if answer.status != READY:
            return {"status": answer.status, "files": []}
        if not answer.items:
            return {"status": "no_voicemail", "files": [], "transcriptions": len(answer.transcriptions)}

        async def refresh() -> tuple[MediaItem, ...]:
            fresh = await self.client.voicemail(session_id)
            return fresh.items

        target = directory / VOICEMAIL
        files = await self._download_items(answer.items, target, "voicemail", "voicemail", refresh, session_id, reuse=reuse)
        transcription = {
            "sessionId": session_id,
            "text": transcription_text(answer.transcriptions),
            "records": list(answer.transcriptions),
        }
        for entry in list(files):
            if entry["kind"] != "audio":
                continue
            path = target / (Path(entry["path"]).name + TRANSCRIPTION_SUFFIX)
            size, digest = await write_json(path, transcription)
            files.append(_entry(directory, path, size, digest, "transcription", "voicemail"))
        return {"status": READY, "files": files, "transcriptions": len(answer.transcriptions)}

    def _no_voicemail(self, call: dict[str, Any] | None) -> dict[str, Any] | None:
        """The voicemail part without a call, when the call details say there is none."""
        if not self.config.call_details.skip_voicemail or not call or call.get("voicemail") is not False:
            return None
        self.metrics.voicemail_calls_skipped.inc()
        return {"status": "no_voicemail", "files": [], "skipped": "the call details say isVoicemail NO"}

    # -- call details ---------------------------------------------------------------------------

    async def _call_details(self, session_id: str, directory: Path) -> dict[str, Any]:
        """The session's call-details record as ``call.json`` (see calldetails.py)."""
        assert self.calls is not None
        part: dict[str, Any] = {"files": []}
        deadline = vendor_deadline(self.config, session_id)
        if deadline is not None and deadline < time.time():
            part["past_vendor_deadline"] = True
        try:
            record = await self.calls.record_for(session_id)
        except PermanentError as exc:
            # A scope not mapped, say: the audio must not wait for its metadata.
            log.warning("call details unavailable for %s: %s", session_id, exc, extra={"kv_session": session_id})
            return {**part, "status": "unavailable", "error": str(exc)[:300]}
        if record is None:
            return {**part, "status": "not_listed"}
        path = directory / CALL_FILE
        size, digest = await write_json(path, call_document(record, self.calls.omitted, now_iso()))
        entry = _entry(directory, path, size, digest, "call_details", "call_details")
        return {**part, "status": READY, "voicemail": has_voicemail(record), "files": [entry]}

    # -- call transcript ------------------------------------------------------------------------

    async def _transcript(self, session_id: str, directory: Path) -> dict[str, Any]:
        """The conversation (getMessagesV2) as ``transcript.json`` beside the recordings."""
        document = await fetch_transcript(self.analytics, session_id)
        path = directory / TRANSCRIPT_FILE
        size, digest = await write_json(path, document)
        status = READY if document["messages"] else "no_messages"
        return {"status": status, "messages": len(document["messages"]),
                "files": [_entry(directory, path, size, digest, "transcript", "get_messages")]}

    # -- shared ---------------------------------------------------------------------------------

    async def _download_items(
        self,
        items: tuple[MediaItem, ...],
        target: Path,
        kind: str,
        api: str,
        refresh: Any,
        ext_id: str,
        *,
        reuse: bool = True,
    ) -> list[dict[str, Any]]:
        """Download each item, asking for fresh URLs when one is refused or expired.

        With ``reuse``, a file an interrupted attempt already completed (its sidecar, written
        after the audio was fsynced, names the same source and size) is not fetched again.
        """
        directory = target.parent
        # Thousands of items (a hostile or broken answer) must not hold the event loop; a few
        # are named here, without the cost of a thread hop.
        if len(items) > NAMES_ON_LOOP:
            finals = await asyncio.to_thread(_final_paths, items, target, kind)
        else:
            finals = _final_paths(items, target, kind)
        if reuse:
            sidecars = await asyncio.to_thread(_look_for_sidecars, directory, finals)
        else:  # nothing to look for; the files create their directory
            _check_inside(directory, finals)
            sidecars = [False] * len(finals)
        files: list[dict[str, Any]] = []
        refreshes = 0
        for index, final in enumerate(finals):
            done = None
            if reuse and sidecars[index]:
                done = await asyncio.to_thread(_completed_earlier, directory, final, items[index])
            if done is not None:
                files.extend(done)
                continue
            sidecar: list[tuple[int, str, str, dict[str, Any]]] = []  # its size, sha256, time, document
            while True:
                item = items[index]
                # The sidecar is written in the thread hop that commits the audio, right after it.
                write_sidecar = functools.partial(
                    self._write_sidecar, sidecar, kind, api, item.file_name, index, ext_id
                )
                try:
                    result = await self.downloader.download(item.url, final, then=write_sidecar)
                    break
                except MediaRefusedError as exc:
                    refreshes += 1
                    if refreshes > MAX_URL_REFRESHES:
                        raise TransientError(f"{kind}: media URLs still refused after {MAX_URL_REFRESHES} fresh ones") from exc
                    self.metrics.url_refreshes.inc()
                    # The first fresh URL is asked for at once (a URL expiring is routine); a
                    # refused fresh one waits the one backoff before the next.
                    wait = self.downloader.retry.backoff(refreshes - 1) if refreshes > 1 else 0.0
                    log.info(
                        "%s %s: %s; asking for a fresh URL in %.1fs", kind, ext_id, exc, wait, extra={"kv_session": ext_id}
                    )
                    await asyncio.sleep(wait)
                    items = _match_items(items, await refresh())
            files.extend(self._entries(directory, result, *sidecar[0], kind, api))
        return files

    async def _sidecar(
        self, directory: Path, result: DownloadResult, kind: str, api: str, offered: str, position: int, ext_id: str
    ) -> list[dict[str, Any]]:
        """The audio file's sidecar, written after the audio; both entries for the manifest."""
        fetched = now_iso()
        document = self._sidecar_document(result, kind, api, offered, position, ext_id, fetched)
        size, digest = await write_json(_sidecar_path(result.path), document)
        return self._entries(directory, result, size, digest, fetched, document, kind, api)

    def _write_sidecar(
        self,
        written: list[tuple[int, str, str, dict[str, Any]]],
        kind: str,
        api: str,
        offered: str,
        position: int,
        ext_id: str,
        result: DownloadResult,
    ) -> None:
        """``_sidecar`` for a worker thread (the one that committed the audio), between its
        rename and the fsync of their directory, which makes both durable (a sidecar whose audio
        did not survive a crash describes no file: the next attempt fetches it again); appends
        to ``written``."""
        fetched = now_iso()
        document = self._sidecar_document(result, kind, api, offered, position, ext_id, fetched)
        written.append((*write_json_sync(_sidecar_path(result.path), document, sync_dir=False), fetched, document))

    def _sidecar_document(
        self, result: DownloadResult, kind: str, api: str, offered: str, position: int, ext_id: str, fetched: str
    ) -> dict[str, Any]:
        proof = {"length_source": result.length_source}
        if result.unproven:
            proof["unproven"] = result.unproven
        return {
            "file": result.path.name,
            "kind": kind,
            "size": result.size,
            "sha256": result.sha256,
            "content_type": result.content_type,
            "api": api,
            "offered_name": offered,
            "position": position,
            "source": result.source,
            **proof,
            "fetched_at": fetched,
            "bot_id": self.config.kore.bot_id,
            "id": ext_id,
        }

    def _entries(
        self,
        directory: Path,
        result: DownloadResult,
        size: int,
        digest: str,
        fetched: str,
        sidecar: dict[str, Any],
        kind: str,
        api: str,
    ) -> list[dict[str, Any]]:
        """The manifest entries of an audio file and its sidecar (and the metrics they count in)."""
        self.metrics.bytes.labels(kind).inc(result.size)
        self.metrics.files.labels(kind).inc()
        audio = _entry(directory, result.path, result.size, result.sha256, "audio", api, fetched)
        audio.update(_identity_and_proof(sidecar))
        return [audio, _entry(directory, _sidecar_path(result.path), size, digest, "sidecar", api, fetched)]

    async def _write_manifest(
        self,
        directory: Path,
        id_type: str,
        ext_id: str,
        parts: dict[str, dict[str, Any]],
    ) -> SessionResult:
        files = [f for part in parts.values() for f in part.get("files", [])]
        failed = [name for name, part in parts.items() if part.get("status") == "failed"]
        manifest = {
            "format": MANIFEST_FORMAT,
            "archiver": f"kore-archiver {__version__}",
            "bot_id": self.config.kore.bot_id,
            "id_type": id_type,
            "id": ext_id,
            "archived_at": now_iso(),
            "parts": {name: {k: v for k, v in part.items() if k != "files"} for name, part in parts.items()},
            "files": sorted(files, key=lambda f: f["path"]),
        }
        deadline = vendor_deadline(self.config, ext_id) if id_type == SESSION else None
        if deadline is not None:
            # Evidence of when the vendor was to delete it, and whether this came after.
            late = deadline < time.time()
            manifest["vendor_deadline"] = {"at": _iso(deadline), "archived_after": late}
            if late:
                log.warning("%s was archived after its vendor retention deadline (%s)", ext_id, _iso(deadline),
                            extra={"kv_session": ext_id})
        unproven = [f"{f['path']}: {f['unproven']}" for f in manifest["files"] if f.get("unproven")]
        if unproven:  # kept, and said here: the vendor's copy is not deleted on their strength
            manifest["unproven"] = unproven
        kept = await asyncio.to_thread(self._commit_manifest, directory, manifest, list(parts))
        result = _result_from_manifest(directory, manifest)
        if kept:
            result.reason = f"the earlier archive was kept as {kept[-1]['path']}: {kept[-1]['reason']}"
            log.warning("%s: %s", ext_id, result.reason, extra={"kv_session": ext_id})
        if failed:
            result.outcome = "failed"
            result.reason = f"the vendor reports {', '.join(failed)} as failed"
        return result

    def _commit_manifest(self, directory: Path, manifest: dict[str, Any], parts: list[str]) -> list[dict[str, Any]]:
        """Commit the manifest (with the earlier generations it does not hold every file of),
        index it in the catalog, then let go of the generations it holds, all in one thread
        hop (the S3 target indexes a session once its manifest is in the bucket). Returns the
        generations kept."""
        kept, held = generations.judge(directory, manifest)
        if kept:
            manifest["earlier_generations"] = kept
        mf.commit(directory, manifest, parts)
        if self.config.archive.target == "file":
            record_session(self.config, directory, manifest, catalog=self.catalog)
        if held:
            generations.drop(directory, held)
        if kept:
            generations.tidy(directory, manifest)
        return kept


class _InlineWriter:
    """Turns inline-parser events into archive files (v1 recordings)."""

    def __init__(self, archiver: SessionArchiver, target: Path, ext_id: str) -> None:
        self.archiver = archiver
        self.target = target
        self.ext_id = ext_id
        self.taken = TakenNames()
        self.current: AtomicFile | None = None
        self.mime = ""
        self.files: list[dict[str, Any]] = []

    async def handle(self, event: Any) -> None:
        if isinstance(event, RecordingStart):
            if not is_audio_type(event.mime):
                raise ProtocolError(f"v1 recording {event.index + 1} is a {event.mime[:40]!r} data: URI, not audio")
            self.target.mkdir(parents=True, exist_ok=True)
            self.mime = event.mime
            name = safe_filename(f"recording-{event.index + 1}{extension_for(event.mime)}", "recording.bin", self.taken)
            self.current = AtomicFile(self.target / name)
        elif isinstance(event, RecordingData) and self.current is not None:
            await self.current.write(event.data)
        elif isinstance(event, RecordingEnd) and self.current is not None:
            current, self.current = self.current, None
            await current.commit()
            # The parser ends an item only at its closing quote, after checking its padding.
            result = DownloadResult(
                current.final_path, current.size, current.sha256, self.mime, "inline", 0, INLINE_JSON
            )
            self.files.extend(await self.archiver._sidecar(
                self.target.parent, result, "recording", "v1_recordings", "", event.index, self.ext_id
            ))

    async def abort_open(self) -> None:
        if self.current is not None:
            await self.current.abort()
            self.current = None


def transcription_text(records: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> str:
    """The text components of voicemail transcription records, in time order, one per line."""
    ordered = sorted(records, key=lambda r: str(r.get("createdOn", "")))
    lines = []
    for record in ordered:
        for component in record.get("components") or []:
            if isinstance(component, dict) and component.get("cT") == "text":
                text = (component.get("data") or {}).get("text")
                if isinstance(text, str) and text.strip():
                    lines.append(text.strip())
    return "\n".join(lines)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _entry(
    directory: Path, path: Path, size: int, digest: str, kind: str, api: str, fetched: str | None = None
) -> dict[str, Any]:
    return {
        "path": path.relative_to(directory).as_posix(),
        "size": size,
        "sha256": digest,
        "kind": kind,
        "api": api,
        "fetched_at": fetched or now_iso(),
    }


def _match_items(old: tuple[MediaItem, ...], fresh: tuple[MediaItem, ...]) -> tuple[MediaItem, ...]:
    """Fresh URLs in the order of the old items, one to one (see ``identity``).

    Matching by name alone once gave two items named alike the same fresh URL: both files
    held one recording, the other was never fetched.
    """
    pairs = identity.match(media_identities(old), media_identities(fresh))
    if len(pairs) != len(old) or len(fresh) != len(old):
        raise TransientError("the API's list of media files changed while refreshing URLs")
    return tuple(fresh[pairs[index]] for index in range(len(old)))


def media_identities(items: tuple[MediaItem, ...]) -> list[identity.Identity]:
    """The identities of the items of one API answer, in its order."""
    return [identity.Identity(identity.url_path(item.url), item.file_name, i) for i, item in enumerate(items)]


def _identity_and_proof(sidecar: dict[str, Any]) -> dict[str, Any]:
    """What the manifest repeats of a sidecar: how the vendor named the file, and its proof."""
    fields = {
        "source": sidecar.get("source"),
        "offered_name": sidecar.get("offered_name", ""),
        "position": sidecar.get("position"),
        "length_source": sidecar.get("length_source", NONE),
    }
    if sidecar.get("unproven") or sidecar.get("length_source") is None:
        fields["unproven"] = str(sidecar.get("unproven") or "no proof of completeness was recorded")
    return fields


def _completed_earlier(directory: Path, final: Path, item: MediaItem) -> list[dict[str, Any]] | None:
    """Manifest entries of a file an earlier attempt finished, or None when it must be fetched.

    Its sidecar must exist (it is written only after the audio is complete and fsynced) and
    describe this very item: same source path, same offered name, same size on disk.
    """
    side_path = final.with_name(final.name + SIDECAR_SUFFIX)
    sidecar = mf.read_json(side_path)
    if sidecar is None:
        return None
    try:
        size = final.stat().st_size
    except OSError:
        return None
    if (
        sidecar.get("source") != redact_url(item.url)
        or sidecar.get("offered_name") != item.file_name
        or sidecar.get("size") != size
        or not isinstance(sidecar.get("sha256"), str)
    ):
        return None
    raw = side_path.read_bytes()
    fetched = str(sidecar.get("fetched_at") or now_iso())
    api = str(sidecar.get("api", ""))
    audio = _entry(directory, final, size, sidecar["sha256"], "audio", api, fetched)
    audio.update(_identity_and_proof(sidecar))
    return [audio, _entry(directory, side_path, len(raw), hashlib.sha256(raw).hexdigest(), "sidecar", api, fetched)]


def _final_paths(items: tuple[MediaItem, ...], target: Path, kind: str) -> list[Path]:
    """Where each offered item goes: one safe, unique name per item."""
    taken = TakenNames()
    return [target / safe_filename(item.file_name, f"{kind}-{i + 1}.wav", taken) for i, item in enumerate(items)]


def _sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def _look_for_sidecars(directory: Path, finals: list[Path]) -> list[bool]:
    """Check the file paths of a part; which files have a sidecar already (an interrupted
    attempt may have completed them).

    Run in a thread, as are the other directory reads and changes here: while other sessions
    fsync their files, the file system can keep a lookup waiting, and the event loop must
    not wait with it.
    """
    _check_inside(directory, finals)
    return [_sidecar_path(final).exists() for final in finals]


def _check_inside(directory: Path, finals: list[Path]) -> None:
    for final in finals:
        if not inside(directory, final):  # belt and braces: safe_filename already ensures this
            raise ProtocolError(f"file name {final.name!r} escapes the session directory")


def _gone_at_vendor(config: Config, manifest: dict[str, Any] | None, id_type: str, ext_id: str) -> str | None:
    """Why the vendor's recordings of this session are (or may be) deleted, or None. The
    manifest and the audit log are both asked: either may hold the only record."""
    record = (manifest or {}).get("deletion")
    if mf.gone_at_vendor(record):
        return f"the manifest records the vendor's recordings as {mf.deletion_state(record)}"
    if id_type == SESSION and audit.deleted_in_audit_log(config, {ext_id}):
        return "the deletion audit log records the vendor's recordings as deleted or possibly deleted"
    return None


def _start_from_manifest(
    config: Config, directory: Path, id_type: str, ext_id: str, force: bool
) -> dict[str, Any] | None:
    """Prepare the part files from an earlier manifest (blocking); returns it when it is complete.

    Anything that would write over what is there is refused when the vendor's recordings are
    deleted or possibly deleted (manifest or audit log). With ``force`` every part is fetched
    again, after what is there is kept as a generation (an archive only grows). Otherwise the
    parts the manifest holds are kept and only its failed parts fetched again.
    """
    existing = mf.load(directory)
    if not force and existing is not None and not mf.failed_parts(existing):
        # A run killed between writing the manifest and removing the part files left them
        # behind; the manifest supersedes them.
        mf.remove_parts(directory)
        return existing
    gone = _gone_at_vendor(config, existing, id_type, ext_id)
    if gone:
        raise PermanentError(f"{gone}; it is never archived again over what is kept")
    if force:
        mf.remove_parts(directory)
        generations.keep(directory, "archived again (forced)", mf.now_iso())
        return None
    if existing is not None:
        mf.remove_parts(directory, mf.failed_parts(existing))
        mf.seed_part_files(directory, existing)
    return None


def _result_from_manifest(directory: Path, manifest: dict[str, Any]) -> SessionResult:
    files = [f for f in manifest.get("files", []) if isinstance(f, dict)]
    audio = [f for f in files if f.get("kind") == "audio"]
    return SessionResult(
        outcome="done",
        directory=directory,
        files=len(audio),
        bytes=sum(int(f.get("size", 0)) for f in audio),
        parts={k: str(v.get("status")) for k, v in (manifest.get("parts") or {}).items() if isinstance(v, dict)},
    )


__all__ = ["SessionArchiver", "SessionResult", "wanted_parts", "transcription_text"]
