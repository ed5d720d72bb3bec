"""The FastAPI app: caption, VQA and features endpoints over a batching queue, health and model info, the page."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Hashable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from ..inference.predictor import GenerationSettings, Predictor
from .batch_queue import BatchQueue, QueueFullError
from .gallery import Gallery
from .public_names import public_description, public_name
from .request_body import read_fields, read_json
from .request_image import ImageReader, fetcher_for
from .schemas import (
    CaptionRequest,
    FeaturesRequest,
    Limits,
    RequestError,
    SearchRequest,
    VqaRequest,
    openapi_body,
    openapi_json_body,
    parse,
)
from .url_fetch import UrlFetcher

PAGE = Path(__file__).parent / "page"
log = logging.getLogger(__name__)


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
    url_fetcher: UrlFetcher | None = None,
) -> FastAPI:
    """The service for ``predictor`` (and, with ``gallery``, text search over a folder of images; with
    ``vqa_predictor``, questions go to that model, as the default model's answers do); its batching worker runs
    while the app does (its lifespan). ``url_fetcher``: how ``image_url`` is fetched (default: as ``limits``
    say, or not at all)."""
    limits = limits or Limits()
    answering = vqa_predictor or predictor
    images = ImageReader(limits, url_fetcher or fetcher_for(limits))
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

    # FastAPI's own /docs and /redoc load their scripts from a CDN (blank offline): ours is served from here
    app = FastAPI(
        title="BLIP-2",
        description="Captions, answers and image features from a BLIP-2 model. The page is at /.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.batches = batches
    app.state.images = images
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
        # the details (paths of the server's files, paddle's internals) go to the log, not to the client
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=error)
        return JSONResponse(
            {"detail": f"internal error ({type(error).__name__}; the server's log has the details)"}, status_code=500
        )

    async def answer(key: Hashable, item: Any) -> Any:
        try:
            future = batches.submit(key, item)
        except QueueFullError as error:
            raise RequestError(503, str(error), {"Retry-After": str(error.retry_after)}) from None
        try:
            return await asyncio.wrap_future(future)
        except Exception as error:
            log.error("the model failed on a request", exc_info=error)
            raise RequestError(
                500, f"the model failed on this request ({type(error).__name__}; the server's log has the details)"
            ) from None

    async def read_request(request: Request, schema: type) -> tuple[Any, Any]:
        fields, upload = await read_fields(request, limits)
        parsed = parse(schema, fields)
        if hasattr(parsed, "check_limits"):
            parsed.check_limits(limits)
        return parsed, upload

    def checked(model: Predictor, task: str, parsed: Any, texts: list[str]) -> GenerationSettings:
        """The request's settings, refused (422) before anything is fetched, decoded or queued when the model
        cannot run them (its positions, min > max, the length penalty's range)."""
        settings = parsed.settings()
        try:
            model.check_settings(task, settings, texts)
        except ValueError as error:
            raise RequestError(422, str(error)) from None
        return settings

    @app.post("/v1/caption", summary="Caption an image", openapi_extra=openapi_body(CaptionRequest))
    async def caption(request: Request) -> dict[str, Any]:
        started = time.monotonic()
        parsed, upload = await read_request(request, CaptionRequest)
        settings = checked(predictor, "caption", parsed, [parsed.text])
        pixels = await images.pixels(parsed, upload, predictor)
        text = await answer(("caption", parsed.text, settings), pixels)
        return {
            "caption": text,
            "settings": predictor.settings_for("caption", settings),
            "seconds": round(time.monotonic() - started, 3),
        }

    @app.post("/v1/vqa", summary="Answer a question about an image", openapi_extra=openapi_body(VqaRequest))
    async def vqa(request: Request) -> dict[str, Any]:
        started = time.monotonic()
        parsed, upload = await read_request(request, VqaRequest)
        settings = checked(answering, "vqa", parsed, [parsed.question])
        pixels = await images.pixels(parsed, upload, answering)
        text = await answer(("vqa", settings), (pixels, parsed.question))
        return {
            "question": parsed.question,
            "answer": text,
            "settings": answering.settings_for("vqa", settings),
            "seconds": round(time.monotonic() - started, 3),
        }

    @app.post(
        "/v1/features",
        summary="The image's visual tokens as the LLM sees them [queries, hidden]",
        openapi_extra=openapi_body(FeaturesRequest),
    )
    async def features(request: Request) -> dict[str, Any]:
        parsed, upload = await read_request(request, FeaturesRequest)
        array = await answer(("features",), await images.pixels(parsed, upload, predictor))
        return {"shape": list(array.shape), "dtype": str(array.dtype), "features": array.tolist()}

    @app.post(
        "/v1/search",
        summary="Search the gallery folder by text (blip2-serve --gallery DIR)",
        openapi_extra=openapi_json_body(SearchRequest),
    )
    async def search(request: Request) -> dict[str, Any]:
        if gallery is None:
            raise RequestError(404, "this server has no gallery: start it with --gallery DIR --gallery-model STAGE1")
        body = parse(SearchRequest, await read_json(request))
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
            "decoding_pixels": images.budget.in_flight,
            "fetching_urls": images.fetching,
        }

    @app.get("/v1/model", summary="The model and the server's settings")
    async def model() -> dict[str, Any]:
        return {
            **public_description(predictor.describe()),
            "vqa_model": None if vqa_predictor is None else public_description(vqa_predictor.describe()),
            "limits": dataclasses.asdict(limits),
            "batching": {"max_batch_size": max_batch_size, "max_wait_s": max_wait, "max_queue": max_queue},
            "gallery": None
            if gallery is None
            else {
                "folder": public_name(gallery.folder),
                "images": len(gallery.images),
                "skipped": len(gallery.skipped),
            },
        }

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(PAGE / "index.html")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> FileResponse:
        return FileResponse(PAGE / "docs.html")

    return app
