"""``archiver check`` on an S3 target: reachable, writable, locked as configured; settings reported.

Writability is proven without leaving anything behind, which matters in a locked bucket
where a probe object could not be deleted for years: a multipart upload is started with
every argument a real upload sends (storage class, encryption, Object Lock, legal hold), one
small part is sent with its sha256, and the upload is aborted.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
from typing import Any, Callable

from .config import Config
from .errors import ArchiverError
from .s3 import Bucket, _error_code, bucket_url, s3_client, translated

PROBE = b"kore-archiver write check\n"


async def check_bucket(config: Config, line: Callable[[bool, str], None], out: Any) -> None:
    """Print the bucket's check lines (FAIL lines make ``archiver check`` fail)."""
    url = bucket_url(config)
    mode = config.s3.object_lock_mode

    def info(text: str) -> None:
        print(f"info {text}", file=out)

    try:
        async with s3_client(config) as client:
            bucket = Bucket(config, client)
            with translated(f"bucket {url}"):
                await client.head_bucket(Bucket=bucket.name)
            line(True, f"bucket {url} is reachable")
            # The lock first: without it a locked write is refused, and this line says why.
            enabled, retention = await _object_lock(client, bucket.name)
            if mode:
                line(enabled, f"Object Lock is {'enabled' if enabled else 'NOT enabled'} on the bucket (s3.object_lock_mode is {mode})")
            else:
                info(f"Object Lock is {'enabled' if enabled else 'not enabled'} on the bucket; s3.object_lock_mode is not set")
            try:
                await _probe_write(bucket)
                line(True, f"bucket {url} is writable (a multipart upload with the configured settings was started and aborted)")
            except ArchiverError as exc:
                line(False, f"bucket {url} is not writable with the configured settings: {exc}")
            info(f"default retention: {retention}")
            info(f"versioning: {await _versioning(client, bucket.name)}")
            info(f"default encryption: {await _encryption(client, bucket.name)}")
            info(f"lifecycle: {await _lifecycle(client, bucket.name)}")
    except ArchiverError as exc:
        line(False, f"S3: {exc}")
    if config.s3.endpoint_url.startswith("http://"):
        info("the S3 endpoint is plain http: recordings travel unencrypted")


async def _probe_write(bucket: Bucket) -> None:
    key = bucket.key(f".archiver-check/{socket.gethostname()}-{os.getpid()}")
    with translated(f"writing to {bucket_url(bucket.config)}"):
        started = await bucket.client.create_multipart_upload(
            Bucket=bucket.name, Key=key, ChecksumAlgorithm="SHA256", **bucket._write_args(bucket.retain_until()),
        )
        try:
            await bucket.client.upload_part(
                Bucket=bucket.name, Key=key, UploadId=started["UploadId"], PartNumber=1, Body=PROBE,
                ChecksumAlgorithm="SHA256", ChecksumSHA256=base64.b64encode(hashlib.sha256(PROBE).digest()).decode(),
            )
        finally:
            await bucket.client.abort_multipart_upload(Bucket=bucket.name, Key=key, UploadId=started["UploadId"])


async def _ask(call: Any, **kwargs: Any) -> tuple[dict[str, Any] | None, str]:
    """(answer, "") or (None, the S3 error code)."""
    from botocore.exceptions import ClientError

    try:
        return await call(**kwargs), ""
    except ClientError as exc:
        code, status = _error_code(exc)
        return None, code or str(status)


async def _object_lock(client: Any, name: str) -> tuple[bool, str]:
    answer, error = await _ask(client.get_object_lock_configuration, Bucket=name)
    if answer is None:
        return False, "none" if "NotFound" in error else f"unknown ({error})"
    conf = answer.get("ObjectLockConfiguration") or {}
    enabled = conf.get("ObjectLockEnabled") == "Enabled"
    default = (conf.get("Rule") or {}).get("DefaultRetention") or {}
    if not default:
        return enabled, "none"
    span = f"{default['Days']} days" if "Days" in default else f"{default.get('Years')} years"
    return enabled, f"{default.get('Mode')} for {span}"


async def _versioning(client: Any, name: str) -> str:
    answer, error = await _ask(client.get_bucket_versioning, Bucket=name)
    if answer is None:
        return f"unknown ({error})"
    return str(answer.get("Status") or "never enabled")


async def _encryption(client: Any, name: str) -> str:
    answer, error = await _ask(client.get_bucket_encryption, Bucket=name)
    if answer is None:
        return "none" if "NotFound" in error else f"unknown ({error})"
    rules = (answer.get("ServerSideEncryptionConfiguration") or {}).get("Rules") or []
    names = [str((r.get("ApplyServerSideEncryptionByDefault") or {}).get("SSEAlgorithm")) for r in rules]
    return ", ".join(names) or "none"


async def _lifecycle(client: Any, name: str) -> str:
    answer, error = await _ask(client.get_bucket_lifecycle_configuration, Bucket=name)
    rules = (answer or {}).get("Rules") or []
    if any(r.get("Status") == "Enabled" and r.get("AbortIncompleteMultipartUpload") for r in rules):
        return "incomplete multipart uploads are aborted by a rule"
    if answer is None and "NoSuchLifecycle" not in error:
        return f"unknown ({error})"
    return "no rule aborts incomplete multipart uploads (the README shows one)"


__all__ = ["check_bucket"]
