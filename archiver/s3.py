"""S3-compatible object storage: the client, uploads that prove themselves, bucket checks.

Every object is written with the sha256 the archiver computed while downloading, sent as
``x-amz-checksum-sha256`` (and kept as ``x-amz-meta-sha256``), under ``If-None-Match: *``:
an object is never overwritten. A file up to ``s3.multipart_threshold`` goes in one PUT
streamed from the spool file; a larger one in parts of ``s3.part_size`` (one part in memory
at a time), each with its own sha256, the upload aborted on any failure.

After each upload the object is read back with ``HEAD`` (checksum mode on): its size and
sha256 must be ours, and, with ``s3.object_lock_mode``, its lock mode and retain-until date
present (a server that dropped them on a multipart upload gets them set explicitly).

botocore recent enough to send CRC checksums of its own by default is told to send only the
ones an operation requires (several S3-compatible servers refuse the others); ours is
given explicitly. S3 errors are translated here, once, into the archiver's error tree.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import mimetypes
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

from .config import S3_MAX_PUT, Config
from .errors import ArchiverError, PermanentError, TransientError

log = logging.getLogger("archiver.s3")

MAX_PARTS = 10_000
READ_SIZE = 1024 * 1024
# Metadata key (x-amz-meta-sha256) holding the whole file's sha256: a multipart object's own
# checksum is a checksum of its parts' checksums.
META_SHA256 = "sha256"
# Retain-until dates the server reports may be rounded to the second (or a day, by some servers).
RETENTION_SLACK = timedelta(days=1)
_TRANSIENT_CODES = {
    "RequestTimeout", "SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeTooSkewed",
    "ConditionalRequestConflict", "OperationAborted", "Throttling", "ThrottlingException",
}
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}


class ObjectConflict(PermanentError):
    """An object already holds other bytes under a key we would write: it is never replaced."""


class ObjectProblem(ArchiverError):
    """An object does not hold what the manifest says (size, checksum, lock)."""


@dataclass(frozen=True)
class ObjectInfo:
    """What ``HEAD`` says about one object."""

    key: str
    size: int
    checksum_sha256: str | None  # base64, as S3 reports it ("...-N" or a composite for multipart)
    checksum_type: str | None
    meta_sha256: str | None
    lock_mode: str | None
    retain_until: datetime | None
    legal_hold: str | None
    version_id: str | None
    parts: int = 0  # multipart objects only, known when asked for (some servers mark a composite checksum no other way)

    def sha256_problem(self, expected_hex: str) -> str | None:
        """Why this object's stored checksum does not prove ``expected_hex``, or None."""
        if self.checksum_sha256 is None:
            return "the server stores no sha256 checksum for it"
        if self.checksum_sha256 == b64(expected_hex):
            return None
        if self.composite and self.meta_sha256 == expected_hex:
            return None  # a multipart object: its parts' checksums, and the whole file's sha256 in metadata
        found = self.meta_sha256 if self.composite else b64_to_hex(self.checksum_sha256)
        return f"sha256 {found or 'unknown'}, manifest {expected_hex}"

    @property
    def composite(self) -> bool:
        """The stored checksum is a multipart object's checksum of its parts' checksums."""
        return "-" in (self.checksum_sha256 or "") or self.checksum_type == "COMPOSITE" or self.parts >= 1


def b64(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode("ascii")


def b64_to_hex(value: str) -> str:
    try:
        return base64.b64decode(value.split("-")[0], validate=True).hex()
    except ValueError:
        return value


def bucket_url(config: Config) -> str:
    """``s3://bucket/prefix`` for messages (never with credentials)."""
    return f"s3://{config.s3.bucket}/{config.s3.prefix}"


# -- the client ---------------------------------------------------------------------------------


def _error_code(exc: Exception) -> tuple[str, int]:
    response = getattr(exc, "response", None) or {}
    code = str((response.get("Error") or {}).get("Code", ""))
    status = int((response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
    return code, status


@contextlib.contextmanager
def translated(what: str) -> Iterator[None]:
    """The one place S3 errors become archiver errors (messages carry no credentials)."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

    try:
        yield
    except ClientError as exc:
        code, status = _error_code(exc)
        text = f"{what}: S3 answered {status} {code}".rstrip()
        if code in _TRANSIENT_CODES or status >= 500 or status in (408, 429):
            raise TransientError(text) from None
        raise PermanentError(text) from None
    except (NoCredentialsError, PartialCredentialsError):
        raise PermanentError(f"{what}: no S3 credentials (set s3.access_key_id or the AWS credential chain)") from None
    except BotoCoreError as exc:
        raise TransientError(f"{what}: the S3 request failed ({type(exc).__name__})") from None
    except (OSError, asyncio.TimeoutError) as exc:
        raise TransientError(f"{what}: the S3 request failed ({type(exc).__name__}: {exc})") from None


def _is_not_found(exc: Exception) -> bool:
    code, status = _error_code(exc)
    return status == 404 or code in _NOT_FOUND


def _is_precondition_failed(exc: Exception) -> bool:
    code, status = _error_code(exc)
    return status == 412 or code == "PreconditionFailed"


@contextlib.asynccontextmanager
async def s3_client(config: Config) -> AsyncIterator[Any]:
    """An aiobotocore S3 client for ``[s3]`` (only the checksums we give are sent)."""
    from aiobotocore.session import get_session
    from botocore.config import Config as BotoConfig

    s3 = config.s3
    boto_config = BotoConfig(
        region_name=s3.region,
        connect_timeout=config.http.connect_timeout,
        read_timeout=config.http.read_timeout,
        retries={"mode": "standard", "max_attempts": config.http.max_attempts},
        max_pool_connections=max(config.daemon.concurrency, 2) * 2,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        s3={"addressing_style": s3.addressing_style},
        user_agent_extra="kore-archiver",
    )
    credentials: dict[str, str] = {}
    if s3.access_key_id:
        credentials = {
            "aws_access_key_id": s3.access_key_id,
            "aws_secret_access_key": s3.secret_access_key.reveal(),
        }
    session = get_session()
    with translated(f"connecting to {bucket_url(config)}"):
        context = session.create_client("s3", endpoint_url=s3.endpoint_url or None, config=boto_config, **credentials)
        client = await context.__aenter__()
    try:
        yield client
    finally:
        await context.__aexit__(None, None, None)


# -- objects ------------------------------------------------------------------------------------


class Bucket:
    """The configured bucket and prefix: keys, uploads, proofs, reads."""

    def __init__(self, config: Config, client: Any, *, clock: Any = time.time) -> None:
        self.config = config
        self.s3 = config.s3
        self.client = client
        self.clock = clock

    @property
    def name(self) -> str:
        return self.s3.bucket

    def key(self, relative: str) -> str:
        """The key of a path relative to the archive root (``<bot>/YYYY/MM/DD/<sid>/...``)."""
        return f"{self.s3.prefix}{relative}"

    async def head(self, key: str) -> ObjectInfo | None:
        """The object's size, checksum and lock, or None when there is none."""
        from botocore.exceptions import ClientError

        with translated(f"HEAD {key}"):
            try:
                answer = await self.client.head_object(Bucket=self.name, Key=key, ChecksumMode="ENABLED")
            except ClientError as exc:
                if _is_not_found(exc):
                    return None
                raise
        metadata = {k.lower(): v for k, v in (answer.get("Metadata") or {}).items()}
        return ObjectInfo(
            key=key,
            size=int(answer.get("ContentLength", -1)),
            checksum_sha256=answer.get("ChecksumSHA256"),
            checksum_type=answer.get("ChecksumType"),
            meta_sha256=metadata.get(META_SHA256),
            lock_mode=answer.get("ObjectLockMode"),
            retain_until=answer.get("ObjectLockRetainUntilDate"),
            legal_hold=answer.get("ObjectLockLegalHoldStatus"),
            version_id=answer.get("VersionId"),
        )

    async def content_problem(self, info: ObjectInfo, size: int, sha256: str) -> str | None:
        """Why the object does not hold the manifest's size and sha256, from what the server stores."""
        if info.size != size:
            return f"{info.size} bytes, manifest {size}"
        problem = info.sha256_problem(sha256)
        if problem is not None and not info.composite and info.meta_sha256 == sha256:
            # A server that marks a multipart object's checksum neither with "-N" nor a
            # type: its part count says whether the checksum is a composite.
            with translated(f"HEAD {info.key}"):
                answer = await self.client.head_object(Bucket=self.name, Key=info.key, PartNumber=1, ChecksumMode="ENABLED")
            parts = int(answer.get("PartsCount") or 0)
            problem = replace(info, parts=parts).sha256_problem(sha256)
        return problem

    async def read_json(self, key: str, limit: int = 64 * 1024**2) -> bytes | None:
        """A small object's bytes (a manifest), or None when there is none."""
        from botocore.exceptions import ClientError

        with translated(f"GET {key}"):
            try:
                answer = await self.client.get_object(Bucket=self.name, Key=key)
            except ClientError as exc:
                if _is_not_found(exc):
                    return None
                raise
            async with answer["Body"] as body:
                if int(answer.get("ContentLength", 0)) > limit:
                    raise PermanentError(f"{key}: larger than {limit} bytes")
                return await body.read()

    async def read_sha256(self, key: str) -> tuple[int, str]:
        """(bytes read, sha256) of an object, streamed and hashed off the event loop."""
        digest = hashlib.sha256()
        total = 0
        with translated(f"GET {key}"):
            answer = await self.client.get_object(Bucket=self.name, Key=key)
            async with answer["Body"] as body:
                while chunk := await body.read(READ_SIZE):
                    await asyncio.to_thread(digest.update, chunk)
                    total += len(chunk)
        return total, digest.hexdigest()

    async def list_keys(self, prefix: str) -> AsyncIterator[tuple[str, int]]:
        """(key, size) of every object under ``prefix``, in key order, a page at a time."""
        paginator = self.client.get_paginator("list_objects_v2")
        with translated(f"LIST {prefix}"):
            async for page in paginator.paginate(Bucket=self.name, Prefix=prefix):
                for item in page.get("Contents") or []:
                    yield item["Key"], int(item.get("Size", 0))

    # -- writing --------------------------------------------------------------------------------

    def _write_args(self, retain_until: datetime | None) -> dict[str, Any]:
        """Storage class, encryption and Object Lock arguments of every write."""
        s3 = self.s3
        args: dict[str, Any] = {}
        if s3.storage_class:
            args["StorageClass"] = s3.storage_class
        if s3.server_side_encryption:
            args["ServerSideEncryption"] = s3.server_side_encryption
        if s3.sse_kms_key_id:
            args["SSEKMSKeyId"] = s3.sse_kms_key_id
        if s3.object_lock_mode and retain_until is not None:
            args["ObjectLockMode"] = s3.object_lock_mode
            args["ObjectLockRetainUntilDate"] = retain_until
        if s3.legal_hold:
            args["ObjectLockLegalHoldStatus"] = "ON"
        return args

    def retain_until(self) -> datetime | None:
        if not self.s3.object_lock_mode:
            return None
        now = datetime.fromtimestamp(self.clock(), timezone.utc).replace(microsecond=0)
        return now + timedelta(seconds=self.s3.object_lock_retention)

    async def put_file(self, path: Path, key: str, size: int, sha256: str) -> str:
        """Upload a spool file unless the key holds it already; prove it. Returns
        ``"uploaded"`` or ``"present"``; raises ObjectConflict when the key holds other bytes."""
        existing = await self.head(key)
        if existing is not None:
            await self._same_or_conflict(existing, size, sha256)
            return "present"
        retain_until = self.retain_until()
        content_type = "application/json" if key.endswith(".json") else (
            mimetypes.guess_type(key)[0] or "application/octet-stream"
        )
        try:
            if size <= min(self.s3.multipart_threshold, S3_MAX_PUT):
                await self._put_single(path, key, size, sha256, content_type, retain_until)
            else:
                await self._put_multipart(path, key, size, sha256, content_type, retain_until)
        except _AlreadyThere:
            # Another writer got there between our HEAD and our PUT: the same bytes, or a conflict.
            existing = await self.head(key)
            if existing is None:
                raise TransientError(f"{key}: refused as existing, but not found") from None
            await self._same_or_conflict(existing, size, sha256)
            return "present"
        await self.prove(key, size, sha256, retain_until=retain_until)
        return "uploaded"

    async def _same_or_conflict(self, existing: ObjectInfo, size: int, sha256: str) -> None:
        problem = await self.content_problem(existing, size, sha256)
        if problem is not None:
            raise ObjectConflict(f"{existing.key} already exists with other content ({problem}); it is not replaced")

    async def _put_single(
        self, path: Path, key: str, size: int, sha256: str, content_type: str, retain_until: datetime | None
    ) -> None:
        from botocore.exceptions import ClientError

        # Not every S3-compatible server checks x-amz-checksum-sha256 against the body: the
        # spool file is hashed once more (it is at most multipart_threshold) before it is sent.
        if await asyncio.to_thread(file_sha256, path) != (size, sha256):
            raise PermanentError(f"{path.name}: the spool file no longer has the size and sha256 it was downloaded with")
        handle = await asyncio.to_thread(open, path, "rb")
        try:
            with translated(f"PUT {key}"):
                try:
                    await self.client.put_object(
                        Bucket=self.name, Key=key, Body=handle, ContentLength=size, ContentType=content_type,
                        ChecksumAlgorithm="SHA256", ChecksumSHA256=b64(sha256), Metadata={META_SHA256: sha256},
                        IfNoneMatch="*", **self._write_args(retain_until),
                    )
                except ClientError as exc:
                    if _is_precondition_failed(exc):
                        raise _AlreadyThere() from None
                    raise
        finally:
            await asyncio.to_thread(handle.close)

    async def _put_multipart(
        self, path: Path, key: str, size: int, sha256: str, content_type: str, retain_until: datetime | None
    ) -> None:
        from botocore.exceptions import ClientError

        part_size = max(self.s3.part_size, -(-size // MAX_PARTS))
        with translated(f"multipart upload of {key}"):
            started = await self.client.create_multipart_upload(
                Bucket=self.name, Key=key, ContentType=content_type, ChecksumAlgorithm="SHA256",
                Metadata={META_SHA256: sha256}, **self._write_args(retain_until),
            )
        upload_id = started["UploadId"]
        completed = False
        try:
            parts = await self._upload_parts(path, key, upload_id, size, part_size, sha256)
            with translated(f"completing the multipart upload of {key}"):
                try:
                    await self.client.complete_multipart_upload(
                        Bucket=self.name, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}, IfNoneMatch="*",
                    )
                except ClientError as exc:
                    if _is_precondition_failed(exc):
                        raise _AlreadyThere() from None
                    raise
            completed = True
        finally:
            if not completed:
                await asyncio.shield(self._abort(key, upload_id))

    async def _upload_parts(
        self, path: Path, key: str, upload_id: str, size: int, part_size: int, sha256: str
    ) -> list[dict[str, Any]]:
        """Read, hash and send one part at a time; the whole file is hashed on the way and
        must still be the downloaded file."""
        whole = hashlib.sha256()
        parts: list[dict[str, Any]] = []
        handle = await asyncio.to_thread(open, path, "rb")
        try:
            sent = 0
            number = 1
            while sent < size:
                chunk, digest = await asyncio.to_thread(_read_part, handle, min(part_size, size - sent), whole)
                if not chunk:
                    raise PermanentError(f"{path.name}: the spool file is shorter than its manifest entry")
                with translated(f"part {number} of {key}"):
                    answer = await self.client.upload_part(
                        Bucket=self.name, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk,
                        ChecksumAlgorithm="SHA256", ChecksumSHA256=digest,
                    )
                parts.append({"PartNumber": number, "ETag": answer["ETag"], "ChecksumSHA256": digest})
                sent += len(chunk)
                number += 1
                del chunk
        finally:
            await asyncio.to_thread(handle.close)
        if whole.hexdigest() != sha256:
            raise PermanentError(f"{path.name}: the spool file no longer has the sha256 it was downloaded with")
        return parts

    async def _abort(self, key: str, upload_id: str) -> None:
        try:
            await self.client.abort_multipart_upload(Bucket=self.name, Key=key, UploadId=upload_id)
            log.info("aborted the incomplete multipart upload of %s", key)
        except Exception as exc:  # the bucket's lifecycle rule cleans up what this cannot
            log.warning("could not abort the multipart upload of %s: %s", key, type(exc).__name__)

    # -- proving --------------------------------------------------------------------------------

    async def prove(self, key: str, size: int, sha256: str, *, retain_until: datetime | None = None) -> ObjectInfo:
        """HEAD the object: size and sha256 must be ours, and the configured lock in place."""
        info = await self.head(key)
        if info is None:
            raise TransientError(f"{key}: uploaded, but HEAD does not find it")
        problem = await self.content_problem(info, size, sha256)
        if problem is not None:
            raise ObjectProblem(f"{key}: {problem}")
        if self.s3.object_lock_mode and not _locked_as_asked(info, self.s3.object_lock_mode, retain_until):
            await self._apply_lock(key, retain_until or self.retain_until())
            info = await self.head(key)
            if info is None or not _locked_as_asked(info, self.s3.object_lock_mode, retain_until):
                raise ObjectProblem(f"{key}: the server did not keep Object Lock {self.s3.object_lock_mode}")
        if self.s3.legal_hold and (info.legal_hold or "").upper() != "ON":
            with translated(f"legal hold on {key}"):
                await self.client.put_object_legal_hold(Bucket=self.name, Key=key, LegalHold={"Status": "ON"})
            info = await self.head(key)
            if info is None or (info.legal_hold or "").upper() != "ON":
                raise ObjectProblem(f"{key}: the server did not keep the legal hold")
        return info

    async def _apply_lock(self, key: str, retain_until: datetime | None) -> None:
        """Some servers drop the lock headers of a multipart upload: set the retention explicitly."""
        with translated(f"retention on {key}"):
            await self.client.put_object_retention(
                Bucket=self.name, Key=key,
                Retention={"Mode": self.s3.object_lock_mode, "RetainUntilDate": retain_until},
            )


class _AlreadyThere(Exception):
    """The conditional write found an object under the key."""


def _locked_as_asked(info: ObjectInfo, mode: str, retain_until: datetime | None) -> bool:
    if (info.lock_mode or "").upper() != mode or info.retain_until is None:
        return False
    return retain_until is None or info.retain_until >= retain_until - RETENTION_SLACK


def _read_part(handle: Any, length: int, whole: Any) -> tuple[bytes, str]:
    """One part read from the spool file, hashed into the whole file's sha256 (in a thread)."""
    chunk = handle.read(length)
    whole.update(chunk)
    return chunk, base64.b64encode(hashlib.sha256(chunk).digest()).decode("ascii")


def file_sha256(path: Path) -> tuple[int, str]:
    """(size, sha256) of a local file (blocking)."""
    digest = hashlib.sha256()
    total = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(READ_SIZE):
            digest.update(chunk)
            total += len(chunk)
    return total, digest.hexdigest()


__all__ = [
    "Bucket", "ObjectInfo", "ObjectConflict", "ObjectProblem", "s3_client", "translated", "bucket_url", "b64",
    "file_sha256",
]
