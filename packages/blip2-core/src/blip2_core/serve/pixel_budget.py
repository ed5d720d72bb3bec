"""How many pixels are being decoded at once, across all requests.

A small compressed file can stand for a huge image (a 48 KB PNG of 6000x6000 pixels takes 165 MB to decode), so
a limit per image does not bound memory when many arrive at once. Each decode is admitted against a budget of
pixels in flight: a request that does not fit waits a moment for others to finish, then is refused (503 with
Retry-After) rather than queued without bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class BudgetFullError(Exception):
    """No room for this image's pixels within the wait; retry after ``retry_after`` seconds."""

    def __init__(self, pixels: int, max_pixels: int, retry_after: int = 1) -> None:
        super().__init__(
            f"the server is busy decoding other images (at most {max_pixels} pixels at once, this image has "
            f"{pixels}): retry in {retry_after} s"
        )
        self.retry_after = retry_after


class PixelBudget:
    """``async with budget.admit(pixels):`` decode; at most ``max_pixels`` are admitted at once (an image alone
    is always admitted, whatever its size: the per-image limit is checked before)."""

    def __init__(self, max_pixels: int, wait: float = 2.0) -> None:
        if max_pixels < 1 or wait < 0:
            raise ValueError("max_pixels must be >= 1 and wait >= 0")
        self.max_pixels, self.wait = max_pixels, wait
        self.in_flight = 0
        self._condition: asyncio.Condition | None = None  # made in the server's event loop, on first use

    @asynccontextmanager
    async def admit(self, pixels: int) -> AsyncIterator[None]:
        if self._condition is None:
            self._condition = asyncio.Condition()
        condition = self._condition

        def fits() -> bool:
            return self.in_flight == 0 or self.in_flight + pixels <= self.max_pixels

        async with condition:
            try:
                await asyncio.wait_for(condition.wait_for(fits), self.wait)
            except asyncio.TimeoutError:
                raise BudgetFullError(pixels, self.max_pixels) from None
            self.in_flight += pixels
        try:
            yield
        finally:
            async with condition:
                self.in_flight -= pixels
                condition.notify_all()
