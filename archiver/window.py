"""The optional archiving window: a 5-field cron expression of the minutes archiving may run.

The expression is read in ``daemon.timezone`` (an IANA name such as ``Europe/Berlin``), or in
the machine's own zone when that is empty; either way with its daylight-saving rules, so
"02:00-05:59" stays 02:00-05:59 on the wall clock in summer and in winter.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger


def zone(name: str = "") -> tzinfo:
    """The named zone, or the machine's (``$TZ``, then ``/etc/localtime``; UTC without either)."""
    if name:
        return ZoneInfo(name)
    env = os.environ.get("TZ", "").lstrip(":")
    if env:
        try:
            return ZoneInfo(env)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    try:
        with open("/etc/localtime", "rb") as handle:
            return ZoneInfo.from_file(handle, key="localtime")
    except (OSError, ValueError):
        return timezone.utc


class Window:
    """``seconds_until_open(now)`` is None while archiving may run, else how long until it may."""

    def __init__(self, expression: str, timezone_: tzinfo | str | None = None) -> None:
        self.expression = expression
        self._tz = timezone_ if isinstance(timezone_, tzinfo) else zone(timezone_ or "")
        self._trigger = CronTrigger.from_crontab(expression, timezone=self._tz) if expression else None

    def seconds_until_open(self, now: float) -> float | None:
        if self._trigger is None:
            return None
        current = datetime.fromtimestamp(now, self._tz).replace(second=0, microsecond=0)
        # The minute we are in is open when the trigger would fire at its start.
        fire = self._trigger.get_next_fire_time(None, current)
        if fire is not None and fire <= current:
            return None
        if fire is None:
            return 3600.0
        return max(1.0, (fire - datetime.fromtimestamp(now, self._tz)).total_seconds())

    def __bool__(self) -> bool:
        return self._trigger is not None
