"""The archiver's error tree.

Every failure the archiver reports is one of these; lower-level errors (aiohttp, OSError,
json) are translated at one boundary each (``client.py`` for the API, ``download.py`` for
media) with ``raise Mapped(...) from exc``.

    ArchiverError
    ├── ConfigError            bad configuration; names the offending key
    ├── StateLocked            another archiver holds the state directory (exit 75, try later)
    ├── TransientError         worth retrying as is: timeouts, resets, 408, 429, 5xx
    │   ├── RateLimited        429 from the API (carries retry_after, may be None)
    │   ├── DiskFullError      ENOSPC/EDQUOT or below the free-space guard; waits for space
    │   └── VendorDown         a host's circuit breaker is open: the job waits, no attempt spent
    ├── NotReadyError          the vendor has no media *yet* (call/media in progress)
    ├── MediaRefusedError      a signed media URL was refused or has expired: ask for a new one
    ├── Stopping               the service is stopping: work only waiting gives its job back
    └── PermanentError         retrying cannot help; the session is reported as failed
        ├── AuthError          401 after a fresh token; carries Kore's errors[].msg
        ├── ProtocolError      the server broke the protocol (bad JSON, sizes, Content-Range)
        ├── UnsafeInputError   a server- or user-supplied value we refuse to act on
        ├── UnparseableFile    an inbox file that is not in any format we read
        └── TooLargeError      a body over the configured size cap

Messages never contain secrets: URLs are shown without their query string.
"""

from __future__ import annotations

import errno


class ArchiverError(Exception):
    """Root of every error the archiver raises on purpose."""


class ConfigError(ArchiverError):
    """The configuration is invalid; the message names the key."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"config: {key}: {problem}")
        self.key = key
        self.problem = problem


class StateFileError(ConfigError):
    """A database of the state directory cannot be opened or read (``state rebuild`` sets
    such a file aside and starts afresh)."""

    def __init__(self, path: object, what: str, exc: BaseException) -> None:
        super().__init__(
            "daemon.state_dir",
            f"the {what} {path} cannot be used ({exc}): check the path and its permissions; a damaged "
            "file is set aside (kept) and rebuilt from the archive by `archiver state rebuild`",
        )


class StateLocked(ArchiverError):
    """Another archiver process holds the lock of the state directory."""


class TransientError(ArchiverError):
    """A failure that may go away if the same request is made again later."""

    def __init__(self, message: str, *, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class RateLimited(TransientError):
    """The API answered 429; ``retry_after`` is the server's hint in seconds, if it gave one."""


class DiskFullError(TransientError):
    """No space left for the archive (or below the free-space guard); retry once space returns."""


class VendorDown(TransientError):
    """A host (``api`` or ``media``) failed too often in a row; its breaker is open (see ``breaker``)."""

    def __init__(self, message: str, *, host: str) -> None:
        super().__init__(message)
        self.host = host


class NotReadyError(ArchiverError):
    """The vendor reports the media as not ready yet (``call_in_progress``, ``media_in_progress``)."""

    def __init__(self, message: str, *, status: str) -> None:
        super().__init__(message)
        self.status = status


class MediaRefusedError(ArchiverError):
    """A signed media URL was refused (403/410) or has expired; a fresh URL is needed."""


class Stopping(ArchiverError):
    """The service is stopping; raised to a worker that was only waiting (for API budget)."""


class PermanentError(ArchiverError):
    """Retrying the same request cannot succeed."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AuthError(PermanentError):
    """The API refused our credentials even with a freshly signed token."""


class ProtocolError(PermanentError):
    """The server's answer breaks the protocol (malformed JSON, size or range mismatch)."""


class UnsafeInputError(PermanentError):
    """A value from outside (file name, URL, host, id) that we refuse to act on."""


class UnparseableFile(PermanentError):
    """An inbox file as a whole is not in the format it claims or seems to be in.

    ``idfile.parse_ids`` raises it before yielding any item, so no id of such a file is queued.
    """


class TooLargeError(PermanentError):
    """A body is larger than the configured cap."""


def is_transient(exc: BaseException) -> bool:
    """The one retry classifier: True when the same call may succeed if repeated.

    A full disk is transient for the job (it waits for space) but not for the call: fetching
    the same body again into the same full disk only fails again, chunk after chunk. A host
    whose breaker is open likewise: the job waits for the probe, the call does not hammer it.
    """
    return isinstance(exc, TransientError) and not isinstance(exc, (DiskFullError, VendorDown))


# What becomes of a job whose attempt raised (``job_outcome``); the worker settles each.
NOT_READY, OUTAGE, RELEASE, DISK_FULL, TRANSIENT, FAILED = (
    "not_ready", "outage", "release", "disk_full", "transient", "failed",
)


def job_outcome(exc: BaseException) -> str | None:
    """The one classifier of a failed session attempt, or None for a bug (not an archiver error).

    The order matters: the subclasses of TransientError (an outage, a full disk) are not
    retried like the others, and a full disk met outside ``atomicfile`` (creating a
    directory) is still a full disk.
    """
    if isinstance(exc, NotReadyError):
        return NOT_READY
    if isinstance(exc, VendorDown):
        return OUTAGE  # the vendor is down, not the session: the attempt is given back
    if isinstance(exc, Stopping):
        return RELEASE
    if isinstance(exc, DiskFullError) or (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)):
        return DISK_FULL
    if isinstance(exc, TransientError):
        return TRANSIENT
    if isinstance(exc, ArchiverError):
        return FAILED
    return None
