"""The optional archiving window: a 5-field cron expression of the minutes archiving may run."""

from __future__ import annotations

from datetime import datetime, timezone

from apscheduler.triggers.cron import CronTrigger


class Window:
    """``seconds_until_open(now)`` is None while archiving may run, else how long until it may."""

    def __init__(self, expression: str, timezone_: timezone | None = None) -> None:
        self.expression = expression
        self._tz = timezone_ or datetime.now().astimezone().tzinfo
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


