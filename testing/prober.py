"""Requests at a fixed rate against a running OpenTrace: what the downtime benchmarks and the
tests of "nothing stops during an update" measure with (open loop, one thread a request)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime


class Prober:
    """Requests at a fixed rate (open loop: a slow answer does not delay the next request).

    Each request runs on a thread of its own pool, so `interval` holds whatever the latency;
    a request fails on a status >= 400 (≥ 500 for `FAILED_STATUS`), no answer, or no answer
    within `timeout` seconds. `samples` holds (unix time sent, ok, what) in the order sent;
    `latencies` the seconds each answered request took, by the same index.
    """

    def __init__(
        self,
        url: str,
        interval: float,
        reads_version: bool = True,
        *,
        method: str = "GET",
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 5.0,
        make_body: Callable[[], tuple[bytes, str]] | None = None,
    ) -> None:
        self.url = url
        self.interval = interval
        # /healthz answers JSON with the version; any other page only needs to answer.
        self.reads_version = reads_version
        self.method, self.body, self.headers, self.timeout = method, body, dict(headers or {}), timeout
        self.samples: list[tuple[float, bool, str]] = []  # (unix time, ok, what)
        self.latencies: list[float | None] = []
        # `make_body` gives each request its own body and a token (an event id): `acked`
        # holds the tokens of the requests that were answered 200.
        self.make_body = make_body
        self.acked: list[str] = []
        self._lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self._pool: list[threading.Thread] = []

    def _probe(self) -> tuple[bool, str]:
        body, token = self.make_body() if self.make_body else (self.body, "")
        request = urllib.request.Request(self.url, data=body, method=self.method, headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
                if token and response.status == 200:
                    self.acked.append(token)
                if not self.reads_version:
                    return response.status < 400, str(response.status)
                body = json.loads(raw or b"{}")
                return response.status == 200, f"200 {body.get('version')}"
        except urllib.error.HTTPError as exc:
            try:
                failing = json.loads(exc.read() or b"{}").get("failing")
            except ValueError:
                failing = None
            return False, f"{exc.code} {failing or ''}".strip()
        except (OSError, ValueError) as exc:
            return False, type(exc).__name__

    def _one(self, index: int) -> None:
        started = time.monotonic()
        ok, what = self._probe()
        with self._lock:
            self.samples[index] = (self.samples[index][0], ok, what)
            self.latencies[index] = time.monotonic() - started

    def _loop(self) -> None:
        next_at = time.monotonic()
        while not self.stop.is_set():
            with self._lock:
                index = len(self.samples)
                self.samples.append((time.time(), False, "no answer yet"))
                self.latencies.append(None)
            worker = threading.Thread(target=self._one, args=(index,), daemon=True)
            worker.start()
            self._pool.append(worker)
            next_at += self.interval
            delay = next_at - time.monotonic()
            if delay > 0:
                self.stop.wait(delay)
            else:
                next_at = time.monotonic()
        for worker in self._pool:
            worker.join(self.timeout + 5)

    def rate(self) -> float:
        """Requests sent per second."""
        if len(self.samples) < 2:
            return 0.0
        return (len(self.samples) - 1) / max(self.samples[-1][0] - self.samples[0][0], 1e-9)

    def latency_summary(self, start: float | None = None, end: float | None = None) -> dict[str, float | int]:
        """p50/p90/p99/max of answered requests sent between unix times start and end (all by default)."""
        picked = sorted(
            latency
            for (at, _, _), latency in zip(self.samples, self.latencies, strict=True)
            if latency is not None and (start is None or at >= start) and (end is None or at <= end)
        )
        if not picked:
            return {"requests": 0}

        def quantile(q: float) -> float:
            return round(picked[min(len(picked) - 1, int(q * len(picked)))], 4)

        return {
            "requests": len(picked),
            "p50_s": quantile(0.50),
            "p90_s": quantile(0.90),
            "p99_s": quantile(0.99),
            "max_s": round(picked[-1], 4),
        }

    def windows(self) -> list[dict[str, object]]:
        """Continuous failures: from the first failed probe to the next successful one.

        `answers` maps what the prober got (connection refused, a timeout, a 503 naming the
        failing checks …) to how many probes got it, and when first and last (unix time).
        """
        found: list[dict[str, object]] = []
        start: float | None = None
        answers: dict[str, list[float]] = {}
        for at, ok, what in self.samples:
            if not ok:
                if start is None:
                    start, answers = at, {}
                entry = answers.setdefault(what, [0, at, at])
                entry[0] += 1
                entry[2] = at
            elif start is not None:
                found.append({"start": start, "end": at, "seconds": at - start, "answers": answers})
                start = None
        if start is not None:
            end = self.samples[-1][0]
            found.append({"start": start, "end": end, "seconds": end - start, "answers": answers})
        return found


def track_prober(base: str, key: str, interval: float) -> Prober:
    """POST /api/track, one event with its own event_id per request."""

    def body() -> tuple[bytes, str]:
        event_id = str(uuid.uuid4())
        event = {
            "event": "downtime-probe",
            "distinct_id": "prober",
            "timestamp": datetime.now(UTC).isoformat(),
            "event_id": event_id,
            "properties": {},
        }
        return json.dumps({"events": [event]}).encode(), event_id

    return Prober(
        f"{base}/api/track",
        interval,
        reads_version=False,
        method="POST",
        headers={"X-OpenTrace-Key": key, "Content-Type": "application/json"},
        make_body=body,
    )
