"""Prometheus metrics, one registry per running archiver (so tests never share counters).

The alert rules and the dashboard in ``deploy/monitoring/`` use these names; a test renders
``/metrics`` and checks that every name they query exists here.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from . import __version__

# Labels of the gauges and counters whose label values are fixed, pre-set to 0 so that
# alert expressions see a series from the first scrape (absent series never fire).
INBOX_OUTCOMES = ("processed", "rejected", "quarantined")
PAUSE_REASONS = ("disk", "outage", "rate_limit")
VENDOR_HOSTS = ("api", "media")  # one circuit breaker each (see breaker.py)


class Metrics:
    """Every metric the archiver exports, in its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.build_info = Gauge("archiver_build_info", "Always 1; the version as a label", ["version"], registry=r)
        self.build_info.labels(__version__).set(1)
        self.sessions = Counter("archiver_sessions_total", "Sessions finished, by outcome", ["outcome"], registry=r)
        self.bytes = Counter("archiver_bytes_total", "Audio bytes written to the archive, by kind", ["kind"], registry=r)
        self.files = Counter("archiver_files_total", "Files archived, by kind", ["kind"], registry=r)
        self.api_calls = Counter("archiver_api_calls_total", "Kore API calls, by endpoint and status", ["endpoint", "status"], registry=r)
        self.rate_limited = Counter("archiver_api_rate_limited_total", "429 answers from the Kore API", registry=r)
        self.retries = Counter("archiver_retries_total", "Retried calls and downloads, by what", ["what"], registry=r)
        self.url_refreshes = Counter("archiver_media_url_refreshes_total", "Media URLs asked for again after refusal or expiry", registry=r)
        self.resumes = Counter("archiver_download_resumes_total", "Downloads resumed with Range", registry=r)
        self.queue = Gauge("archiver_queue_jobs", "Jobs in the store, by state", ["state"], registry=r)
        self.oldest_pending_age = Gauge(
            "archiver_oldest_pending_age_seconds",
            "Age of the oldest pending job (queued, waiting for a worker); 0 when none", registry=r,
        )
        self.download_seconds = Histogram(
            "archiver_download_duration_seconds", "Time to download one media file",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800), registry=r,
        )
        self.verify_problems = Counter("archiver_verify_damaged_sessions_total", "Damaged sessions found by scheduled verification", registry=r)
        self.deletions = Counter("archiver_source_deletions_total", "Delete-after-archive outcomes", ["status"], registry=r)
        self.s3_objects = Counter(
            "archiver_s3_objects_total", "Objects of an S3 target: uploaded, present (same bytes already there), conflict",
            ["outcome"], registry=r,
        )
        self.s3_bytes = Counter("archiver_s3_uploaded_bytes_total", "Bytes uploaded to an S3 target and proven", registry=r)
        self.voicemail_calls_skipped = Counter(
            "archiver_voicemail_calls_skipped_total", "Voicemail calls not made because the call details say there is none",
            registry=r,
        )
        self.api_calls_per_session = Gauge(
            "archiver_api_calls_per_archived_session",
            "Contact Center calls (recordings, voicemail, call details) per session archived by this process", registry=r,
        )
        self.coverage_missing = Gauge(
            "archiver_coverage_missing_sessions", "Voice sessions the vendor knows that were never queued (last coverage report)",
            registry=r,
        )
        self.sessions_at_risk = Gauge(
            "archiver_sessions_at_risk", "Queued sessions projected to miss their vendor retention deadline at the configured budget",
            registry=r,
        )
        self.last_success = Gauge("archiver_last_success_timestamp_seconds", "When a session was last archived", registry=r)
        self.inbox_files = Counter(
            "archiver_inbox_files_total", "Inbox files taken, by outcome (processed, rejected, quarantined)", ["outcome"], registry=r,
        )
        for outcome in INBOX_OUTCOMES:
            self.inbox_files.labels(outcome)
        self.vendor_up = Gauge("archiver_vendor_up", "1 while the vendor host answers, 0 while the circuit is open", ["host"], registry=r)
        self.connection_errors = Counter(
            "archiver_connection_errors_total", "Connection errors, timeouts and 5xx answers, by endpoint", ["endpoint"], registry=r,
        )
        self.downloads_paused = Gauge(
            "archiver_downloads_paused", "1 while downloads are paused, by reason (disk, outage, rate_limit)", ["reason"], registry=r,
        )
        for host in VENDOR_HOSTS:
            self.vendor_up.labels(host).set(1)
        for reason in PAUSE_REASONS:
            self.downloads_paused.labels(reason).set(0)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
