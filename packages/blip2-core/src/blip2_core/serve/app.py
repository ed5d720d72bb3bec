"""The FastAPI app: caption, VQA and features endpoints over a batching queue, health and model info, the page."""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import json
import time
from collections.abc import Hashable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import UploadFile

from ..inference.image_sources import ImageTooLargeError, decode_image
from ..inference.predictor import Predictor
from .batch_queue import BatchQueue, QueueFullError
from .gallery import Gallery
from .schemas import (
    CaptionRequest,
    FeaturesRequest,
    Limits,
    RequestError,
    SearchRequest,
    VqaRequest,
    openapi_body,
    parse,
)

PAGE = Path(__file__).parent / "page"
# multipart framing and the settings fields around an upload: a body may be this much over the image limit
_BODY_OVERHEAD = 64 * 1024


def run_batch(
    predictor: Predictor,
    key: Hashable,
    items: Sequence[Any],
    gallery: Gallery | None = None,
    vqa_predictor: Predictor | None = None,
) -> list[Any]:
    """One model call for requests that share ``key`` (task and settings). Every model call of the server goes
    through here, on the batching worker's thread: paddle never runs two models' calls at once."""
    task = key[0]
    if task == "search":
        _, top_k = key
        return gallery.search(list(items), top_k)
    if task == "caption":
        _, prompt, settings = key
        return predictor.caption(list(items), prompt, settings)
    if task == "vqa":
        _, settings = key
        answering = vqa_predictor or predictor
        return answering.answer([pixels for pixels, _ in items], [question for _, question in items], settings)
    if task == "features":
        return list(predictor.features(list(items)))
    raise ValueError(f"unknown task {task!r}")


def create_app(
    predictor: Predictor,
    *,
    limits: Limits | None = None,
    max_batch_size: int = 8,
    max_wait: float = 0.01,
    max_queue: int = 64,
    gallery: Gallery | None = None,
    vqa_predictor: Predictor | None = None,
) -> FastAPI:
    """The service for ``predictor`` (and, with ``gallery``, text search over a folder of images; with
    ``vqa_predictor``, questions go to that model, as the default model's answers do); its batching worker runs
    while the app does (its lifespan)."""
    limits = limits or Limits()
    batches = BatchQueue(
        lambda key, items: run_batch(predictor, key, items, gallery, vqa_predictor),
        max_batch_size=max_batch_size,
        max_wait=max_wait,
        max_queue=max_queue,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batches.start()
        yield
        batches.stop()

    app = FastAPI(
        title="BLIP-2",
        description="Captions, answers and image features from a BLIP-2 model. The page is at /.",
        lifespan=lifespan,
    )
    app.state.batches = batches
    app.mount("/page", StaticFiles(directory=PAGE), name="page")

    @app.exception_handler(RequestError)
    async def refused(request: Request, error: RequestError) -> JSONResponse:
        return JSONResponse({"detail": error.message}, status_code=error.status, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = [
            f"unknown field {item['loc'][-1]!r}"
            if item["type"] == "extra_forbidden"
            else f"{'.'.join(str(p) for p in item['loc'][1:]) or 'body'}: {item['msg']}"
            for item in error.errors()
        ]
        return JSONResponse({"detail": "; ".join(problems)}, status_code=422)

    @app.exception_handler(Exception)
    async def failed(request: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"internal error: {type(error).__name__}: {error}"}, status_code=500)

    async def answer(key: Hashable, item: Any) -> Any:
        try:
            future = batches.submit(key, item)
        except QueueFullError as error:
            raise RequestError(503, str(error), {"Retry-After": str(error.retry_after)}) from None
        try:
            return await asyncio.wrap_future(future)
        except Exception as error:
            raise RequestError(500, f"the model failed on this request: {type(error).__name__}: {error}") from None

    async def pixels_of(request: Request, schema: type, model: Predictor = predictor) -> tuple[Any, Any]:
        fields, upload = await _read_body(request, limits)
        parsed = parse(schema, fields)
        if hasattr(parsed, "check_limits"):
            parsed.check_limits(limits)
        data, name = await _image_bytes(parsed, upload, limits)
        try:
            image = await run_in_threadpool(decode_image, data, name, limits.max_image_pixels)
        except ImageTooLargeError as error:
            raise RequestError(413, f"{error} (--max-image-pixels)") from None
        except OSError as error:
            raise RequestError(400, str(error)) from None
        return parsed, await run_in_threadpool(model.pixels, image)

    @app.post("/v1/caption", summary="Caption an image", openapi_extra=openapi_body(CaptionRequest))
    async def caption(request: Request) -> dict[str, Any]:
        started = time.monotonic()
        parsed, pixels = await pixels_of(request, CaptionRequest)
        settings = parsed.settings()
        text = await answer(("caption", parsed.prompt, settings), pixels)
        return {
            "caption": text,
            "settings": predictor.settings_for("caption", settings),
            "seconds": round(time.monotonic() - started, 3),
        }

    @app.post("/v1/vqa", summary="Answer a question about an image", openapi_extra=openapi_body(VqaRequest))
    async def vqa(request: Request) -> dict[str, Any]:
        started = time.monotonic()
        parsed, pixels = await pixels_of(request, VqaRequest, vqa_predictor or predictor)
        settings = parsed.settings()
        text = await answer(("vqa", settings), (pixels, parsed.question))
        return {
            "question": parsed.question,
            "answer": text,
            "settings": (vqa_predictor or predictor).settings_for("vqa", settings),
            "seconds": round(time.monotonic() - started, 3),
        }

    @app.post(
        "/v1/features",
        summary="The image's visual tokens as the LLM sees them [queries, hidden]",
        openapi_extra=openapi_body(FeaturesRequest),
    )
    async def features(request: Request) -> dict[str, Any]:
        _, pixels = await pixels_of(request, FeaturesRequest)
        array = await answer(("features",), pixels)
        return {"shape": list(array.shape), "dtype": str(array.dtype), "features": array.tolist()}

    @app.post("/v1/search", summary="Search the gallery folder by text (blip2-serve --gallery DIR)")
    async def search(body: SearchRequest) -> dict[str, Any]:
        if gallery is None:
            raise RequestError(404, "this server has no gallery: start it with --gallery DIR --gallery-model STAGE1")
        results = await answer(("search", body.top_k), body.text)
        for result in results:
            result["url"] = f"/gallery/{result['index']}"
        return {"text": body.text, "results": results, "images": len(gallery.images)}

    @app.get("/gallery/{index}", summary="An image of the gallery, by its index in the search results")
    async def gallery_image(index: int) -> FileResponse:
        if gallery is None or not 0 <= index < len(gallery.images):
            raise RequestError(404, f"no gallery image {index}")
        return FileResponse(gallery.path(index))

    @app.get("/healthz", summary="Liveness and queue state")
    async def healthz() -> dict[str, Any]:
        return {
            "status": "ok",
            "waiting": batches.waiting,
            "max_queue": batches.max_queue,
            "batches_run": batches.batches_run,
            "items_run": batches.items_run,
        }

    @app.get("/v1/model", summary="The model and the server's settings")
    async def model() -> dict[str, Any]:
        return {
            **predictor.describe(),
            "vqa_model": None if vqa_predictor is None else vqa_predictor.describe(),
            "limits": dataclasses.asdict(limits),
            "batching": {"max_batch_size": max_batch_size, "max_wait_s": max_wait, "max_queue": max_queue},
            "gallery": None
            if gallery is None
            else {"folder": str(gallery.folder), "images": len(gallery.images), "skipped": gallery.skipped},
        }

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(PAGE / "index.html")

    return app


async def _read_body(request: Request, limits: Limits) -> tuple[dict[str, Any], UploadFile | None]:
    """The request's fields and its uploaded image, from a multipart form or a JSON object."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limits.max_image_bytes + _BODY_OVERHEAD:
        raise RequestError(413, f"the request is {length} bytes, more than this server takes (--max-image-mb)")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        try:
            form = await request.form(max_files=1, max_fields=32)
        except Exception as error:  # starlette's multipart errors have no common public base
            detail = getattr(error, "detail", None) or str(error)  # starlette's HTTPException carries it apart
            raise RequestError(400, f"could not read the multipart body: {detail}") from None
        fields: dict[str, Any] = {}
        upload = None
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                if name != "image":
                    raise RequestError(422, f"unknown file field {name!r}: send the image as 'image'")
                upload = value
            elif name == "image":
                raise RequestError(422, "image: must be a file upload (use image_url for a URL)")
            elif name in fields:
                raise RequestError(422, f"{name}: given more than once")
            else:
                fields[name] = value
        return fields, upload
    if kind == "application/json":
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError) as error:
            raise RequestError(400, f"the body is not valid JSON ({error})") from None
        if not isinstance(body, dict):
            raise RequestError(422, "the JSON body must be an object of fields")
        return body, None
    raise RequestError(
        415,
        f"unsupported content type {kind or '(none)'!r}: send multipart/form-data with the image as 'image', "
        "or application/json with image_url or image_base64",
    )


async def _image_bytes(parsed: Any, upload: UploadFile | None, limits: Limits) -> tuple[bytes, str]:
    given = [
        name
        for name, present in (("image", upload), ("image_url", parsed.image_url), ("image_base64", parsed.image_base64))
        if present
    ]
    if not given:
        raise RequestError(422, "no image: upload a file as 'image', or give image_url or image_base64")
    if len(given) > 1:
        raise RequestError(422, f"one image per request: got {' and '.join(given)}")
    if upload is not None:
        data = await upload.read(limits.max_image_bytes + 1)
        name = upload.filename or "the upload"
    elif parsed.image_url is not None:
        data = await run_in_threadpool(_fetch, parsed.image_url, limits)
        name = parsed.image_url
    else:
        try:
            data = base64.b64decode(parsed.image_base64, validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(422, "image_base64: not valid base64") from None
        name = "image_base64"
    if len(data) > limits.max_image_bytes:
        raise RequestError(
            413, f"{name} is more than {limits.max_image_bytes} bytes, this server's limit (--max-image-mb)"
        )
    return data, name


def _fetch(url: str, limits: Limits) -> bytes:
    """The bytes at ``url``, at most one over the size limit, within the time limit."""
    import requests

    if not limits.allow_image_urls:
        raise RequestError(422, "image_url: this server does not fetch URLs (started with --no-image-urls)")
    if not url.startswith(("http://", "https://")):
        raise RequestError(422, f"image_url: must be an http(s) URL, got {url!r}")
    deadline = time.monotonic() + limits.url_timeout
    data = bytearray()
    try:
        with requests.get(url, stream=True, timeout=limits.url_timeout) as response:
            response.raise_for_status()
            for chunk in response.iter_content(64 * 1024):
                data += chunk
                if len(data) > limits.max_image_bytes:
                    break
                if time.monotonic() > deadline:
                    raise RequestError(400, f"cannot fetch {url}: slower than {limits.url_timeout} s")
    except requests.RequestException as error:
        raise RequestError(400, f"cannot fetch {url} ({type(error).__name__}: {error})") from None
    return bytes(data)
