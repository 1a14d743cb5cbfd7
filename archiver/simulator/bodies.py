"""What the API's answers look like on the wire."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterator, Sequence
from typing import Any

from aiohttp import web

from . import content
from .spec import MediaSpec

JSON = "application/json"
DATA_URI_PREFIX = b"data:audio/wav;base64,"
# Base64 slices must be a multiple of 3 bytes so that the pieces concatenate into one string.
_RAW_PIECE = 3 * 64 * 1024

RATE_LIMIT_MSG = "You've exceeded the per-minute rate limit. Please wait for sometime before retrying."
VALIDATION_MSG = "Validation errors/ Invalid arguments"
METHOD_MSG = "Method Not Allowed"


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON answer as Kore sends it."""
    return web.Response(
        body=json.dumps(payload, separators=(",", ":")).encode(),
        status=status,
        content_type=JSON,
        charset="utf-8",
        headers=headers,
    )


def kore_error(status: int, msg: str, headers: dict[str, str] | None = None) -> web.Response:
    """``{"errors":[{"msg": ..., "code": status}]}``."""
    return json_response({"errors": [{"msg": msg, "code": status}]}, status, headers)


def v1_pieces(medias: Sequence[MediaSpec], escape_slashes: bool) -> Iterator[bytes]:
    """The v1 body, ``{"recording":["data:audio/wav;base64,...", ...]}``, a piece at a time."""
    yield b'{"recording":['
    for i, media in enumerate(medias):
        yield (b',"' if i else b'"') + DATA_URI_PREFIX
        for raw in content.iter_range(media, 0, media.size, _RAW_PIECE):
            encoded = base64.b64encode(raw)
            yield encoded.replace(b"/", b"\\/") if escape_slashes else encoded
        yield b'"'
    yield b"]}"


def v1_min_size(medias: Sequence[MediaSpec]) -> int:
    """The v1 body's length before slashes are escaped (a lower bound of the real length)."""
    strings = sum(len(DATA_URI_PREFIX) + 2 + 4 * math.ceil(m.size / 3) for m in medias)
    return len(b'{"recording":[') + strings + max(0, len(medias) - 1) + len(b"]}")


def media_entries(files: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    """``[{"fileName": ..., "fileUrl": ...}]`` from (name, url) pairs."""
    return [{"fileName": name, "fileUrl": url} for name, url in files]
