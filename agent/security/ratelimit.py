"""Per-address connection rate limiting: a token bucket per IP, on trio's clock.

Each address may open `burst` connections at once and then `per_second` more each second.
The table is bounded: when it is full, the buckets that have refilled completely (they hold
no information) are dropped first, then the oldest.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

MAX_TRACKED_ADDRESSES = 4096


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class ConnectionRateLimiter:
    def __init__(self, *, per_second: float, burst: int) -> None:
        if per_second <= 0 or burst < 1:
            raise ValueError("per_second must be > 0 and burst >= 1")
        self.per_second = per_second
        self.burst = burst
        self._buckets: dict[str, _Bucket] = {}

    def allow(self, address: str) -> bool:
        """Spend a token for a new connection from `address`; False when it has none left."""
        now = trio.current_time()
        bucket = self._buckets.get(address)
        if bucket is None:
            self._make_room()
            bucket = self._buckets[address] = _Bucket(float(self.burst), now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.per_second)
        bucket.updated = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def _make_room(self) -> None:
        if len(self._buckets) < MAX_TRACKED_ADDRESSES:
            return
        now = trio.current_time()
        full = self.burst / self.per_second
        for address, bucket in list(self._buckets.items()):
            if now - bucket.updated >= full:
                del self._buckets[address]
        while len(self._buckets) >= MAX_TRACKED_ADDRESSES:
            del self._buckets[next(iter(self._buckets))]
