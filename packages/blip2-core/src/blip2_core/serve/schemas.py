"""What a request may say: the fields of each endpoint, their types and ranges, and readable refusals."""

# pydantic evaluates these annotations at run time, where Python 3.9 has no `int | None`: Optional stays.
# ruff: noqa: UP045

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..model.generation_settings import LENGTH_PENALTY_RANGE, TASK_DEFAULTS, GenerationSettings


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server (``blip2-serve --help`` names the flags)."""

    max_image_bytes: int = 10 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    max_new_tokens: int = 64
    max_num_beams: int = 8
    # image_url: off unless asked for (any public host), or only on these hosts
    allow_image_urls: bool = False
    image_url_hosts: tuple[str, ...] = ()
    url_timeout: float = 10.0  # for the whole fetch, redirects included
    max_url_fetches: int = 8  # fetches at once; more get 503 at once
    # pixels being decoded at once, across requests; a request that does not fit waits this long, then 503
    max_decoding_pixels: int = 80_000_000
    decoding_wait: float = 2.0

    def __post_init__(self) -> None:
        if self.max_decoding_pixels < self.max_image_pixels:
            raise ValueError(
                f"max_decoding_pixels ({self.max_decoding_pixels}) must be at least max_image_pixels "
                f"({self.max_image_pixels}): an image the server accepts must fit in the decoding budget"
            )

    @property
    def fetches_urls(self) -> bool:
        return self.allow_image_urls or bool(self.image_url_hosts)


class _Request(BaseModel):
    # an unknown field is an error, not silently ignored: a misspelt setting would otherwise do nothing
    model_config = ConfigDict(extra="forbid")

    image_url: Optional[str] = Field(
        None,
        description="http(s) URL of a public image (JSON bodies only; the server fetches URLs only when started "
        "with --allow-image-urls or --image-url-hosts)",
    )
    image_base64: Optional[str] = Field(None, description="the image file's bytes, base64 (JSON bodies)")


class _Generation(_Request):
    num_beams: int = Field(5, ge=1, description="beam width")
    max_new_tokens: Optional[int] = Field(None, ge=1, description="longest output in tokens")
    min_new_tokens: Optional[int] = Field(None, ge=0, description="shortest output in tokens")
    length_penalty: Optional[float] = Field(
        None, ge=LENGTH_PENALTY_RANGE[0], le=LENGTH_PENALTY_RANGE[1], description="beam score / length ** this"
    )
    repetition_penalty: Optional[float] = Field(None, gt=0, le=10, description="default: the model's (1.0 for BLIP-2)")
    do_sample: bool = False
    temperature: float = Field(1.0, gt=0, le=10)
    top_k: int = Field(0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)

    def settings(self) -> GenerationSettings:
        return GenerationSettings(
            num_beams=self.num_beams,
            max_new_tokens=self.max_new_tokens,
            min_new_tokens=self.min_new_tokens,
            length_penalty=self.length_penalty,
            repetition_penalty=self.repetition_penalty,
            do_sample=self.do_sample,
            temperature=self.temperature,
            top_k=self.top_k,
            top_p=self.top_p,
        )

    def check_limits(self, limits: Limits) -> None:
        """Refuse what a request asks beyond the server's limits; bring the defaults it left alone within them."""
        explicit = self.model_fields_set
        if "num_beams" not in explicit:
            self.num_beams = min(self.num_beams, limits.max_num_beams)
        elif self.num_beams > limits.max_num_beams:
            raise RequestError(422, f"num_beams: at most {limits.max_num_beams} on this server, got {self.num_beams}")
        if "max_new_tokens" not in explicit and self.default_max_new_tokens > limits.max_new_tokens:
            self.max_new_tokens = limits.max_new_tokens
        for name in ("max_new_tokens", "min_new_tokens"):
            value = getattr(self, name)
            if name in explicit and value is not None and value > limits.max_new_tokens:
                raise RequestError(422, f"{name}: at most {limits.max_new_tokens} on this server, got {value}")
        if None not in (self.min_new_tokens, self.max_new_tokens) and self.min_new_tokens > self.max_new_tokens:
            raise RequestError(
                422, f"min_new_tokens ({self.min_new_tokens}) is more than max_new_tokens ({self.max_new_tokens})"
            )


class CaptionRequest(_Generation):
    default_max_new_tokens: ClassVar[int] = TASK_DEFAULTS[("caption", "opt")].max_new_tokens
    prompt: str = Field("", max_length=500, description="text the caption continues, e.g. 'a photo of'")
    instruction: Optional[str] = Field(
        None,
        max_length=500,
        description="what to do with the image, for an instruction-tuned model (InstructBLIP): read by its Q-Former "
        "and its LLM, and answered; the same as prompt for such a model, so give one of the two",
    )

    @property
    def text(self) -> str:
        """The prompt, or the instruction (for an instruction-tuned model the prompt is its instruction)."""
        if self.instruction is not None and self.prompt:
            raise RequestError(422, "give prompt or instruction, not both")
        return self.instruction if self.instruction is not None else self.prompt


class VqaRequest(_Generation):
    default_max_new_tokens: ClassVar[int] = TASK_DEFAULTS[("vqa", "opt")].max_new_tokens
    question: str = Field(..., min_length=1, max_length=500, description="asked about the image")


class FeaturesRequest(_Request):
    pass


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(..., min_length=1, max_length=500, description="what the images should show")
    top_k: int = Field(8, ge=1, le=100, description="how many images to return")


class RequestError(Exception):
    """A request the server refuses: ``status`` and a message saying what was wrong."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def parse(model: type[_Request], fields: dict[str, Any]) -> Any:
    """``fields`` validated as ``model``; ``RequestError(422)`` naming every wrong field and why."""
    try:
        return model.model_validate(fields)
    except ValidationError as error:
        raise RequestError(422, describe(error, model)) from None


def describe(error: ValidationError, model: type[BaseModel]) -> str:
    allowed = ", ".join(sorted(model.model_fields))
    problems = []
    for item in error.errors():
        name = ".".join(str(part) for part in item["loc"]) or "body"
        if item["type"] == "extra_forbidden":
            problems.append(f"unknown field {name!r} (allowed: {allowed})")
        elif item["type"] == "missing":
            problems.append(f"{name}: required")
        else:
            problems.append(f"{name}: {item['msg']}, got {item['input']!r}")
    return "; ".join(problems)


def openapi_body(model: type[_Request]) -> dict[str, Any]:
    """The request body in the OpenAPI docs: a multipart upload or JSON with the same settings."""
    schema = model.model_json_schema()
    multipart = {
        **schema,
        "properties": {"image": {"type": "string", "format": "binary"}, **schema["properties"]},
    }
    multipart["properties"].pop("image_base64", None)
    multipart["properties"].pop("image_url", None)  # JSON bodies only: see request_body
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": multipart},
                "application/json": {"schema": schema},
            },
        }
    }


def openapi_json_body(model: type[BaseModel]) -> dict[str, Any]:
    """A JSON-only request body in the OpenAPI docs (endpoints that read their body themselves, with a cap)."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}
