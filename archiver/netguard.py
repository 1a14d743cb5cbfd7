"""Where media downloads may go.

A media URL comes from the API's answer, so it is outside input: it must be https (http only
to loopback), on an allowed host, and must not reach loopback, private or link-local
addresses unless configured. The address check runs in the connector's resolver, at
connection time, so it also covers every redirect hop and DNS answers that change.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import socket
from typing import Any

from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver
from yarl import URL

from .config import MediaConfig, is_loopback_host
from .errors import UnsafeInputError
from .redact import redact_url


def _address_is_internal(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_reserved or ip.is_multicast or ip.is_unspecified


def _literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host names literally, in any spelling the C library accepts.

    aiohttp takes an all-digit host such as ``127.1`` or ``2130706433`` for an address and
    connects to it without asking the (guarded) resolver, and ``getaddrinfo`` reads those
    spellings as 127.0.0.1: they must be recognised here, not only the canonical forms.
    """
    bare = host.strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(bare))
    except (OSError, ValueError):
        return None


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    """True when ``host`` matches an allowlist entry (exact or ``*.domain``); an empty list allows all."""
    if not allowed:
        return True
    host = host.lower().rstrip(".")
    for pattern in allowed:
        pattern = pattern.lower()
        if host == pattern or (pattern.startswith("*.") and fnmatch.fnmatchcase(host, pattern)):
            return True
    return False


def check_media_url(url: URL, media: MediaConfig) -> None:
    """Raise UnsafeInputError when a media URL (or redirect target) may not be fetched."""
    shown = redact_url(str(url))
    host = url.host or ""
    if url.scheme not in {"https", "http"} or not host:
        raise UnsafeInputError(f"media URL is not http(s) with a host: {shown}")
    if url.user or url.password:
        raise UnsafeInputError(f"media URL carries credentials in its authority: {shown}")
    if url.scheme == "http" and not is_loopback_host(host):
        raise UnsafeInputError(f"media URL is plain http to a non-loopback host: {shown}")
    if not host_allowed(host, media.allowed_hosts):
        raise UnsafeInputError(f"media host {host!r} is not in media.allowed_hosts")
    literal = _literal_address(host)
    if literal is not None and not media.allow_private_addresses and _address_is_internal(str(literal)):
        raise UnsafeInputError(f"media URL points at an internal address: {shown}")
    # localhost and *.localhost are loopback by definition (RFC 6761), with or without the
    # final dot, whatever DNS would say about them.
    if is_loopback_host(host.lower().rstrip(".")) and not media.allow_private_addresses:
        raise UnsafeInputError(f"media URL points at localhost: {shown}")


class GuardedResolver(AbstractResolver):
    """A resolver that refuses names resolving to internal addresses (unless allowed)."""

    def __init__(self, allow_private: bool, inner: AbstractResolver | None = None) -> None:
        self._allow_private = allow_private
        self._inner = inner or DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[dict[str, Any]]:
        answers = await self._inner.resolve(host, port, family)
        if not self._allow_private:
            for answer in answers:
                if _address_is_internal(answer["host"]):
                    raise UnsafeInputError(f"media host {host!r} resolves to an internal address")
        return answers

    async def close(self) -> None:
        await self._inner.close()
