"""When to give up on an instance: a circuit breaker over its request outcomes.

A server that dies mid-run turns a closed loop into a storm: every slot's request is refused at
once and the next one is sent at once (40,000 refused requests in 10 s, a 17 MB records file,
the client at 90% of a core). An in-process model that runs out of memory on every batch does
the same. Two things bound it:

- backoff: a request that failed at the connection (refused, reset, closed before answering)
  delays its slot's next request, doubling from `BACKOFF_START_S` to `BACKOFF_MAX_S`, reset by a
  success; the delay is the slot's idle time, never part of any measured request;
- the breaker: the instance stops with reason `endpoint_down` (a server) or `failing` (in
  process) when no request has succeeded for `NO_SUCCESS_S` while requests kept failing, or when
  more than `MAX_FAILED_SHARE` of the last `WINDOW` requests failed. The worker ends with that
  reason, the run exits 1 with a problem, and the diagnosis says when the instance went away.

Identical failures in a burst are also counted, not each written (see `Recorder`).
"""

from __future__ import annotations

from collections import deque

from colobench.clock import now_ns

NO_SUCCESS_S = 10.0
WINDOW = 50
MAX_FAILED_SHARE = 0.5
BACKOFF_START_S = 0.05
BACKOFF_MAX_S = 1.0
CONNECTION_ERRORS = ("connection closed before", "ConnectionRefused", "Connection refused", "ConnectionReset",
                     "Connection reset", "connect call failed", "Cannot connect", "ConnectionError")


class InstanceFailing(Exception):
    """The breaker tripped: the message is the reason the worker ends with."""

    plain = True  # error_text gives the message alone: "endpoint_down: ..."


def is_connection_error(error: str | None) -> bool:
    return bool(error) and any(s in error for s in CONNECTION_ERRORS)


class Health:
    """One instance's outcomes (shared by every window of its worker)."""

    def __init__(self, endpoint: bool):
        self.endpoint = endpoint
        self.outcomes: deque[bool] = deque(maxlen=WINDOW)
        self.last_success_ns: int | None = None
        self.first_seen_ns: int | None = None
        self.failing_since_ns: int | None = None
        self.last_error: str | None = None
        self.tripped: str | None = None

    def observe(self, ok: bool, error: str | None, t_ns: int | None = None) -> None:
        t = t_ns if t_ns is not None else now_ns()
        if self.first_seen_ns is None:
            self.first_seen_ns = t
        self.outcomes.append(ok)
        if ok:
            self.last_success_ns, self.failing_since_ns = t, None
            return
        self.last_error = error
        if self.failing_since_ns is None:
            self.failing_since_ns = t
        if self.tripped is None:
            self.tripped = self._verdict(t)

    def _verdict(self, t: int) -> str | None:
        label = "endpoint_down" if self.endpoint else "failing"
        failed = self.outcomes.count(False)
        if len(self.outcomes) == WINDOW and failed > MAX_FAILED_SHARE * WINDOW:
            return f"{label}: {failed} of the last {WINDOW} requests failed (last: {self.last_error})"
        since = self.last_success_ns if self.last_success_ns is not None else self.first_seen_ns
        if self.failing_since_ns is not None and since is not None and (t - since) / 1e9 >= NO_SUCCESS_S:
            what = "no request succeeded" if self.last_success_ns is None else "no request has succeeded"
            return f"{label}: {what} for {(t - since) / 1e9:.0f} s (last: {self.last_error})"
        return None


class Backoff:
    """A slot's delay after connection failures: doubling, reset by a success."""

    def __init__(self) -> None:
        self.delay_s = 0.0

    def after(self, error: str | None) -> float:
        """The delay to wait before the slot's next request."""
        if not is_connection_error(error):
            self.delay_s = 0.0
            return 0.0
        self.delay_s = min(BACKOFF_MAX_S, self.delay_s * 2 if self.delay_s else BACKOFF_START_S)
        return self.delay_s
