"""A request's body, read with a cap whether it is sent with a Content-Length or chunked, then its fields.

The body is read from the stream and refused (413) as soon as it passes the cap, so a client cannot make the
server hold or spool more than the cap; the form is then parsed from those bytes (starlette's ``Request.form()``
reads the body it has cached, never the stream again).
"""

from __future__ import annotations

import json
import math
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request

from .schemas import Limits, RequestError

# multipart framing and the settings fields around an upload: a body may be this much over the image limit
BODY_OVERHEAD = 64 * 1024
MAX_SEARCH_BODY = 64 * 1024
UNSUPPORTED = (
    "unsupported content type {kind!r}: send multipart/form-data with the image as 'image', "
    "or application/json with image_url or image_base64"
)


async def read_capped(request: Request, cap: int, flag: str = "--max-image-mb") -> bytes:
    """The whole body, or ``RequestError(413)`` as soon as it is known to be more than ``cap`` bytes."""
    too_large = f"the request is more than {cap} bytes, more than this server takes ({flag})"
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise RequestError(413, too_large)
    chunks, size = [], 0
    stream = request.stream()
    try:
        async for chunk in stream:
            size += len(chunk)
            if size > cap:
                raise RequestError(413, too_large)
            chunks.append(chunk)
    finally:
        await stream.aclose()
    body = b"".join(chunks)
    request._body = body  # what Request.form() and Request.body() read from now on
    return body


def content_kind(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_fields(request: Request, limits: Limits) -> tuple[dict[str, Any], UploadFile | None]:
    """The request's fields and its uploaded image, from a multipart form or a JSON object."""
    kind = content_kind(request)
    if kind == "multipart/form-data":
        await read_capped(request, limits.max_image_bytes + BODY_OVERHEAD)
        return await _form_fields(request)
    if kind == "application/json":
        base64_size = 4 * math.ceil(limits.max_image_bytes / 3)  # image_base64 is a third larger than the image
        return _json_object(await read_capped(request, base64_size + BODY_OVERHEAD)), None
    raise RequestError(415, UNSUPPORTED.format(kind=kind or "(none)"))


async def read_json(request: Request, cap: int = MAX_SEARCH_BODY) -> dict[str, Any]:
    """A JSON object body of at most ``cap`` bytes (endpoints that take no image)."""
    if content_kind(request) != "application/json":
        raise RequestError(415, f"unsupported content type {content_kind(request) or '(none)'!r}: send JSON")
    return _json_object(await read_capped(request, cap, flag="a JSON body of at most 64 KB"))


async def _form_fields(request: Request) -> tuple[dict[str, Any], UploadFile | None]:
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
        elif name == "image_url":
            # any web page can post a form to a server on its visitor's machine; JSON needs the server's consent
            raise RequestError(
                422,
                "image_url: only in a JSON body (content-type application/json), never in a form: a web page "
                "can post a form to this server from its visitor's browser, but not JSON",
            )
        elif name in fields:
            raise RequestError(422, f"{name}: given more than once")
        else:
            fields[name] = value
    return fields, upload


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        fields = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise RequestError(400, f"the body is not valid JSON ({error})") from None
    if not isinstance(fields, dict):
        raise RequestError(422, "the JSON body must be an object of fields")
    return fields
