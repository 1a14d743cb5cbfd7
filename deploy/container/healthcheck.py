"""Container health check: exit 0 when the archiver's /healthz answers 200, 1 otherwise.

Run by the image's HEALTHCHECK (and compose.yaml's). It probes the address the daemon listens
on, taken from ARCHIVER_OBSERVABILITY_HTTP_LISTEN, and prints the reason for a failure so that
"docker inspect" shows it.
"""

import os
import sys
import urllib.error
import urllib.request

DEFAULT_LISTEN = "127.0.0.1:9464"
TIMEOUT_SECONDS = 4


def healthz_url(listen: str) -> str:
    """The /healthz URL for a listen address such as "0.0.0.0:9464" or "[::]:9464"."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/healthz"


def main() -> int:
    url = healthz_url(os.environ.get("ARCHIVER_OBSERVABILITY_HTTP_LISTEN") or DEFAULT_LISTEN)
    # No proxies: HTTP(S)_PROXY set for the archiver's egress must not capture the probe.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=TIMEOUT_SECONDS) as response:
            return 0 if response.status == 200 else 1
    except urllib.error.HTTPError as exc:
        print(f"{url}: HTTP {exc.code} {exc.read(1000).decode('utf-8', 'replace')}")
    except OSError as exc:
        print(f"{url}: {exc}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
