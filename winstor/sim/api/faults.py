"""The `flaky-api` fault injector: what a throttled, unstable apiserver does.

Faults are drawn from a seeded generator so a failing self-test replays the
same way. Watches are not refused but cut after a few seconds, the way an
apiserver behind a load balancer drops long connections.
"""

from __future__ import annotations

import random
import time

from .errors import ApiError


class Faults:
    def __init__(self, enabled: bool = False, seed: int = 7, *, throttle: float = 0.04,
                 server_error: float = 0.04, exec_refuse: float = 0.1,
                 watch_lifetime: float = 3.0, retry_after: int = 1) -> None:
        self.enabled = enabled
        self.rng = random.Random(seed)
        self.throttle = throttle
        self.server_error = server_error
        self.exec_refuse = exec_refuse
        self.watch_lifetime = watch_lifetime
        self.retry_after = retry_after

    def before_request(self, verb: str, is_exec: bool) -> ApiError | None:
        if not self.enabled:
            return None
        roll = self.rng.random()
        if is_exec:
            if roll < self.exec_refuse:
                return ApiError(503, "ServiceUnavailable",
                                "error dialing backend: EOF (exec handshake refused)")
            return None
        if verb == "watch":
            return None
        if roll < self.throttle:
            return ApiError(429, "TooManyRequests",
                            "Too many requests, please try again later.",
                            {"causes": [{"reason": "TooManyRequests",
                                         "message": "server is busy"}],
                             "retryAfterSeconds": self.retry_after},
                            headers={"Retry-After": str(self.retry_after)})
        if roll < self.throttle + self.server_error:
            code = self.rng.choice((500, 503))
            reason = "InternalError" if code == 500 else "ServiceUnavailable"
            return ApiError(code, reason, "etcdserver: request timed out" if code == 500
                            else "the server is currently unable to handle the request")
        return None

    def watch_drop_deadline(self) -> float | None:
        if not self.enabled:
            return None
        return time.monotonic() + self.watch_lifetime * (0.5 + self.rng.random())
