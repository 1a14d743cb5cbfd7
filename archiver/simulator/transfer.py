"""Writing a streamed body, whole or broken off on purpose.

A broken body ends one of two ways:

* ``RESET``: the bytes written so far are flushed to the peer, then the TCP connection is
  reset (RST via ``SO_LINGER 0``), as a dying proxy or a network fault would.
* ``TRUNCATE``: the bytes written so far are flushed and the connection closed cleanly (FIN)
  although the promised length was not reached.

Both flush first so that what the stats count as served is what the client received.
"""

from __future__ import annotations

import array
import asyncio
import fcntl
import socket
import struct
import termios
import time
from collections.abc import Callable, Iterable
from enum import Enum

from aiohttp import web

_FLUSH_DEADLINE = 2.0


class Ending(Enum):
    """How a body that is broken off ends."""

    RESET = "reset"
    TRUNCATE = "truncate"


async def send_body(
    resp: web.StreamResponse,
    request: web.BaseRequest,
    pieces: Iterable[bytes],
    *,
    on_sent: Callable[[int], None],
    stop_at: int | None = None,
    ending: Ending = Ending.RESET,
    slow_piece: int = 0,
    slow_delay: float = 0.0,
) -> bool:
    """Write ``pieces``; True when the body went out whole.

    With ``stop_at`` the body is broken off after that many bytes and ended per ``ending``.
    With ``slow_piece`` the body goes out in pieces of that size, ``slow_delay`` apart.
    ``on_sent(n)`` is called for every n bytes handed to the connection.
    """
    sent = 0
    try:
        for piece in pieces:
            for part in _split(piece, slow_piece):
                if stop_at is not None and sent + len(part) > stop_at:
                    await _write(resp, part[: stop_at - sent], on_sent)
                    if ending is Ending.TRUNCATE and resp.chunked:
                        # No length was promised: a proper last chunk ends the body early and
                        # nothing in the answer says it was cut.
                        await resp.write_eof()
                        return False
                    await _end(request, ending)
                    return False
                if slow_delay and sent:
                    await asyncio.sleep(slow_delay)
                await _write(resp, part, on_sent)
                sent += len(part)
    except ConnectionError:  # the client went away; nothing more to do for it
        return False
    return True


async def _write(resp: web.StreamResponse, data: bytes, on_sent: Callable[[int], None]) -> None:
    if data:
        await resp.write(data)
        on_sent(len(data))


def _split(piece: bytes, size: int) -> Iterable[bytes]:
    if size <= 0 or len(piece) <= size:
        return (piece,)
    view = memoryview(piece)
    return (bytes(view[i : i + size]) for i in range(0, len(piece), size))


async def _end(request: web.BaseRequest, ending: Ending) -> None:
    transport = request.transport
    if transport is None or transport.is_closing():
        return
    if ending is Ending.TRUNCATE:
        transport.close()  # asyncio flushes its buffer, then sends FIN
        return
    await _flushed(transport)
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def _flushed(transport: asyncio.BaseTransport) -> None:
    """Wait (briefly) until asyncio's buffer and the kernel's send queue are empty."""
    deadline = time.monotonic() + _FLUSH_DEADLINE
    sock = transport.get_extra_info("socket")
    while time.monotonic() < deadline:
        pending = transport.get_write_buffer_size()  # type: ignore[attr-defined]
        if pending == 0 and sock is not None:
            pending = _kernel_unsent(sock)
        if pending == 0:
            return
        await asyncio.sleep(0.001)


def _kernel_unsent(sock: socket.socket) -> int:
    """Bytes the kernel has not yet had acknowledged (Linux ``SIOCOUTQ``); 0 if unknown."""
    buf = array.array("i", [0])
    try:
        fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, buf)
    except OSError:
        return 0
    return buf[0]
