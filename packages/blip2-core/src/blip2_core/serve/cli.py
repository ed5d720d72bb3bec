"""``blip2-serve``: the HTTP API and the page, on one model (``pip install 'blip2-core[serve]'``)."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Sequence

from ..cli.command_line import error_message, start_command_line_tool
from ..cli.predict import NO_DEFAULT_MODEL
from ..loading.default_model import DEFAULT_MODEL_NAME, default_vqa_path, model_or_default

NEEDS = {"fastapi": "fastapi", "uvicorn": "uvicorn", "python_multipart": "python-multipart"}
MISSING_EXTRA = "the service needs {names}: pip install 'blip2-core[serve]'"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="blip2-serve",
        description="Serve a BLIP-2 model: POST /v1/caption, /v1/vqa, /v1/features; GET /healthz, /v1/model, "
        "/docs; and a page at /.",
        epilog="Example:\n  blip2-serve --model Salesforce/blip2-opt-2.7b --port 8000\n"
        "  curl -F image=@cat.jpg http://127.0.0.1:8000/v1/caption",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model",
        metavar="NAME_OR_PATH",
        help=f"model directory, checkpoint file, Hub repo id or known name (default: the embedded {DEFAULT_MODEL_NAME})",
    )
    parser.add_argument("--llm", metavar="NAME_OR_PATH", help="the LLM, for a model whose config.json names none")
    parser.add_argument("--tokenizer", metavar="NAME_OR_PATH", help="the LLM's tokenizer files")
    parser.add_argument("--trust-pickle", action="store_true", help="allow .pth/.pdparams checkpoints from a hub")
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1; 0.0.0.0 opens it to all)"
    )
    parser.add_argument("--port", type=int, default=8000)
    batching = parser.add_argument_group("batching")
    batching.add_argument("--max-batch-size", type=int, default=8, help="requests per model call (default: 8)")
    batching.add_argument(
        "--max-wait-ms", type=float, default=10.0, help="how long a request waits for others to join it (default: 10)"
    )
    batching.add_argument(
        "--max-queue", type=int, default=64, help="requests waiting at most; more get 503 (default: 64)"
    )
    limits = parser.add_argument_group("limits on a request")
    limits.add_argument("--max-image-mb", type=float, default=10.0, help="image file size (default: 10)")
    limits.add_argument("--max-image-pixels", type=int, default=40_000_000, help="width x height (default: 40M)")
    limits.add_argument("--max-new-tokens", type=int, default=64, help="longest output asked for (default: 64)")
    limits.add_argument("--max-num-beams", type=int, default=8, help="widest beam asked for (default: 8)")
    limits.add_argument("--no-image-urls", action="store_true", help="refuse image_url (never fetch for a client)")
    search = parser.add_argument_group("gallery search (text -> images, with a stage-1 model's ITC heads)")
    search.add_argument(
        "--gallery", metavar="DIR", help="a folder of images to search by text on the page and at /v1/search"
    )
    search.add_argument(
        "--gallery-model", metavar="NAME_OR_PATH", help="the stage-1 model (Blip2Qformer) whose features index it"
    )
    search.add_argument("--gallery-tokenizer", metavar="DIR", help="its Q-Former (BERT) tokenizer, if not beside it")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    return parser


def missing_packages() -> list[str]:
    return [pip for module, pip in NEEDS.items() if importlib.util.find_spec(module) is None]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    start_command_line_tool()
    missing = missing_packages()
    if missing:
        print(f"blip2-serve: {MISSING_EXTRA.format(names=', '.join(missing))}", file=sys.stderr)
        return 1
    answers_from_default = not args.model  # the default model answers with its VQA model (default_model/vqa/)
    args.model = model_or_default(args.model)
    if not args.model:
        print(f"blip2-serve: {NO_DEFAULT_MODEL}", file=sys.stderr)
        return 2
    for flag in ("max_batch_size", "max_queue", "max_new_tokens", "max_num_beams", "max_image_pixels"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1")
    if args.max_wait_ms < 0 or args.max_image_mb <= 0:
        parser.error("--max-wait-ms must be >= 0 and --max-image-mb > 0")
    if bool(args.gallery) != bool(args.gallery_model):
        parser.error("--gallery DIR and --gallery-model STAGE1 go together")

    import uvicorn

    from ..inference.predictor import Predictor
    from .app import create_app
    from .schemas import Limits

    try:
        predictor = Predictor.load(
            args.model, llm=args.llm, tokenizer=args.tokenizer, trust_pickle=args.trust_pickle, dtype=args.dtype
        )
        vqa_model = default_vqa_path() if answers_from_default else None
        vqa_predictor = None if vqa_model is None else Predictor.load(str(vqa_model), dtype=args.dtype)
        gallery = None
        if args.gallery:
            from .gallery import Gallery

            gallery = Gallery.load(args.gallery_model, args.gallery, tokenizer=args.gallery_tokenizer)
            print(
                f"blip2-serve: gallery {args.gallery}: {len(gallery.images)} images "
                f"({gallery.encoded} encoded now, the rest from the cache; {len(gallery.skipped)} unreadable)",
                file=sys.stderr,
            )
    except (OSError, ValueError) as error:
        print(f"blip2-serve: {error_message(error)}", file=sys.stderr)
        return 1
    limits = Limits(
        max_image_bytes=int(args.max_image_mb * 1024 * 1024),
        max_image_pixels=args.max_image_pixels,
        max_new_tokens=args.max_new_tokens,
        max_num_beams=args.max_num_beams,
        allow_image_urls=not args.no_image_urls,
    )
    app = create_app(
        predictor,
        limits=limits,
        max_batch_size=args.max_batch_size,
        max_wait=args.max_wait_ms / 1000,
        max_queue=args.max_queue,
        gallery=gallery,
        vqa_predictor=vqa_predictor,
    )
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"blip2-serve: listening on {args.host}: anyone who can reach this machine can use the model",
            file=sys.stderr,
        )
    print(f"blip2-serve: the page is at http://{args.host}:{args.port}/ and the API docs at /docs", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
