"""The one HTTP boundary to the backend (SPEC §6): signed POSTs, errors as `DeliveryError`."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from contract.signing import request_headers
from host_agent.errors import DeliveryError

EVENTS_PATH = "/api/updates/agent/events"
HEARTBEAT_PATH = "/api/updates/agent/heartbeat"
# Refusals that sending the same body again cannot fix. 401 is not among them: a clock or
# secret being fixed on either side makes the next attempt succeed.
PERMANENT_STATUSES = {400, 404, 405, 409, 413}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class BackendClient:
    def __init__(
        self,
        base_url: str,
        secret: str,
        *,
        clock: Callable[[], float] = time.time,
        timeout: float = 5.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.secret = secret
        self.clock = clock
        self.timeout = timeout
        self._opener = urllib.request.build_opener(_NoRedirect)

    def post(self, path: str, payload: dict[str, object]) -> dict[str, object]:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        headers = request_headers(self.secret, int(self.clock()), body)
        # base_url is checked to be http(s) by the config loader.
        request = urllib.request.Request(  # noqa: S310
            self.base_url + path, data=body, headers=headers, method="POST"
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                raw = response.read(1024 * 1024)
        except urllib.error.HTTPError as exc:
            detail = exc.read(500).decode("utf-8", "replace")
            raise DeliveryError(
                f"{path}: HTTP {exc.code} {detail}".strip(),
                permanent=exc.code in PERMANENT_STATUSES,
                status=exc.code,
            ) from None
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DeliveryError(f"{path}: backend unreachable ({reason})", permanent=False) from None
        try:
            answer = json.loads(raw or b"{}")
        except ValueError:
            answer = {}
        return answer if isinstance(answer, dict) else {}

    def get_json(self, path: str, timeout: float = 5.0) -> tuple[int, dict[str, object]]:
        """GET without signing (for `/healthz`); (status, body) or (0, {}) when unreachable."""
        try:
            with self._opener.open(self.base_url + path, timeout=timeout) as response:
                status, raw = response.status, response.read(65536)
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read(65536)
        except (urllib.error.URLError, OSError, TimeoutError):
            return 0, {}
        try:
            body = json.loads(raw)
        except ValueError:
            body = {}
        return status, body if isinstance(body, dict) else {}
