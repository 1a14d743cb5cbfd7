"""Which vendor item is which: matching two lists of recordings one to one.

The vendor names a recording three ways, none of them guaranteed: its media URL (signed, the
query changes with every answer; the path usually does not), its ``fileName`` (may be
missing, may repeat), and its place in the list. Two lists are matched by these in turn:

1. the URL path without its query, where that path occurs once on each side;
2. the ``fileName``, where that name occurs once on each side;
3. the position, for what is still unmatched on both sides.

Each item is matched at most once on each side: two vendor items are never taken for one
file (matching by a name that repeats made two archived files hold the same recording once).
Used when refreshing refused URLs, and before deleting the vendor's copy.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Identity:
    """What identifies one recording: the URL path (no query), the offered name, the position."""

    path: str
    name: str
    position: int


def url_path(url: str) -> str:
    """The path of a URL, without query or fragment ('' when it has none or cannot be read)."""
    try:
        return urlsplit(url).path
    except ValueError:
        return ""


def match(old: list[Identity], new: list[Identity]) -> dict[int, int]:
    """A one-to-one match: index in ``old`` -> index in ``new``, for the items that match."""
    pairs: dict[int, int] = {}
    taken: set[int] = set()
    for key in (lambda i: i.path, lambda i: i.name):
        left = Counter(key(i) for k, i in enumerate(old) if k not in pairs)
        right = Counter(key(i) for k, i in enumerate(new) if k not in taken)
        where = {key(i): k for k, i in enumerate(new) if k not in taken}
        for index, item in enumerate(old):
            value = key(item)
            if index in pairs or not value or left[value] != 1 or right[value] != 1:
                continue
            pairs[index] = where[value]
            taken.add(where[value])
    for index, item in enumerate(old):
        if index in pairs or item.position >= len(new) or item.position in taken:
            continue
        other = new[item.position]
        if item.name and other.name and item.name != other.name:
            continue  # the vendor calls them by different names: not the same recording
        pairs[index] = item.position
        taken.add(item.position)
    return pairs
