"""Per-address token buckets: how the web server says "slow down" without remembering much."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

#: Addresses remembered at most; the least recently seen is forgotten first.
MAX_TRACKED_ADDRESSES = 4096


class RateLimiter:
    """`allow(address)` spends one token from the address's bucket, if it has one.

    A bucket holds up to `burst` tokens and refills at `rate` per second. The clock is
    injected (trio.current_time in the server, anything monotonic in tests).
    """

    def __init__(self, burst: int, rate: float, clock: Callable[[], float]) -> None:
        if burst < 1 or rate <= 0:
            raise ValueError("a rate limit needs burst >= 1 and rate > 0")
        self.burst = burst
        self.rate = rate
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, address: str) -> bool:
        now = self.clock()
        tokens, last = self._buckets.pop(address, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[address] = (tokens - 1.0 if allowed else tokens, now)
        while len(self._buckets) > MAX_TRACKED_ADDRESSES:
            self._buckets.popitem(last=False)
        return allowed
