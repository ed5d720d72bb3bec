"""A request's image -> the model's pixels, within the server's limits: bytes (an upload, base64 or a fetched URL),
then its size from the header, then the decode, admitted against the pixels being decoded at once."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import anyio
import numpy as np
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from ..inference.image_sources import ImageTooLargeError, decode_image, image_size
from .pixel_budget import BudgetFullError, PixelBudget
from .schemas import Limits, RequestError
from .url_fetch import FetchError, UrlFetcher, normalise_host

NO_URLS = "image_url: this server does not fetch URLs (start it with --allow-image-urls or --image-url-hosts)"


def fetcher_for(limits: Limits) -> UrlFetcher | None:
    """The URL fetcher the limits ask for, or None when the server fetches no URLs."""
    if not limits.fetches_urls:
        return None
    hosts = frozenset(normalise_host(host).rstrip(".") for host in limits.image_url_hosts) or None
    return UrlFetcher(max_bytes=limits.max_image_bytes, timeout=limits.url_timeout, hosts=hosts)


class ImageReader:
    """``await reader.pixels(parsed, upload, predictor)``: the request's one image as the model's input."""

    def __init__(self, limits: Limits, fetcher: UrlFetcher | None) -> None:
        self.limits, self.fetcher = limits, fetcher
        self.budget = PixelBudget(limits.max_decoding_pixels, limits.decoding_wait)
        self.fetching = 0
        self._fetch_threads: anyio.CapacityLimiter | None = None  # made in the event loop, on first use

    async def pixels(self, parsed: Any, upload: UploadFile | None, predictor: Any) -> np.ndarray:
        data, name = await self._image_bytes(parsed, upload)
        try:
            width, height = await run_in_threadpool(image_size, data, name)
        except ImageTooLargeError as error:  # past PIL's own decompression-bomb limit
            raise RequestError(413, f"{error} (--max-image-pixels)") from None
        except OSError as error:
            raise RequestError(400, str(error)) from None
        if width * height > self.limits.max_image_pixels:
            raise RequestError(
                413,
                f"{name} is {width}x{height} pixels, more than the limit of {self.limits.max_image_pixels} "
                "(--max-image-pixels)",
            )
        try:
            async with self.budget.admit(width * height):
                image = await self._decode(data, name)
                pixels = await run_in_threadpool(predictor.pixels, image)
                del image  # the decoded image leaves the budget with its memory
        except BudgetFullError as error:
            raise RequestError(503, str(error), {"Retry-After": str(error.retry_after)}) from None
        return pixels

    async def _decode(self, data: bytes, name: str) -> Any:
        try:
            return await run_in_threadpool(decode_image, data, name, self.limits.max_image_pixels)
        except ImageTooLargeError as error:
            raise RequestError(413, f"{error} (--max-image-pixels)") from None
        except OSError as error:  # decode_image's errors name the image and what is wrong with it
            raise RequestError(400, str(error)) from None

    async def _image_bytes(self, parsed: Any, upload: UploadFile | None) -> tuple[bytes, str]:
        given = [
            name
            for name, present in (
                ("image", upload),
                ("image_url", parsed.image_url),
                ("image_base64", parsed.image_base64),
            )
            if present
        ]
        if not given:
            raise RequestError(422, "no image: upload a file as 'image', or give image_url or image_base64")
        if len(given) > 1:
            raise RequestError(422, f"one image per request: got {' and '.join(given)}")
        limit = self.limits.max_image_bytes
        if upload is not None:
            data = await upload.read(limit + 1)
            name = upload.filename or "the upload"
        elif parsed.image_url is not None:
            data, name = await self._fetch(parsed.image_url), "image_url"
        else:
            try:
                data = base64.b64decode(parsed.image_base64, validate=True)
            except (binascii.Error, ValueError):
                raise RequestError(422, "image_base64: not valid base64") from None
            name = "image_base64"
        if len(data) > limit:
            raise RequestError(413, f"{name} is more than {limit} bytes, this server's limit (--max-image-mb)")
        return data, name

    async def _fetch(self, url: str) -> bytes:
        if self.fetcher is None:
            raise RequestError(422, NO_URLS)
        if self.fetching >= self.limits.max_url_fetches:  # slow sources must not take every worker thread
            raise RequestError(
                503, f"the server is busy fetching {self.fetching} other URLs: retry in 1 s", {"Retry-After": "1"}
            )
        if self._fetch_threads is None:
            self._fetch_threads = anyio.CapacityLimiter(self.limits.max_url_fetches)
        self.fetching += 1
        try:
            return await anyio.to_thread.run_sync(self.fetcher.fetch, url, limiter=self._fetch_threads)
        except FetchError as error:
            raise RequestError(400, str(error)) from None
        finally:
            self.fetching -= 1
