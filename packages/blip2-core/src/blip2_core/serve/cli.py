"""``blip2-serve``: the HTTP API and the page, on one model (``pip install 'blip2-core[serve]'``)."""

from __future__ import annotations

import argparse
import importlib.util
import socket
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
        "  curl -F image=@cat.jpg http://127.0.0.1:8000/v1/caption\n"
        "  blip2-serve --image-url-hosts images.example.com   # then image_url from that host, in JSON bodies",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model",
        metavar="NAME_OR_PATH",
        help=f"model directory, checkpoint file, Hub repo id or known name (default: {DEFAULT_MODEL_NAME}, when installed)",
    )
    parser.add_argument("--llm", metavar="NAME_OR_PATH", help="the LLM, for a model whose config.json names none")
    parser.add_argument("--tokenizer", metavar="NAME_OR_PATH", help="the LLM's tokenizer files")
    parser.add_argument("--trust-pickle", action="store_true", help="allow .pth/.pdparams checkpoints from a hub")
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1; 0.0.0.0 opens it to all)"
    )
    parser.add_argument("--port", type=port_number, default=8000, help="1-65535 (default: 8000)")
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
    limits.add_argument(
        "--max-decoding-pixels",
        type=int,
        default=80_000_000,
        help="pixels being decoded at once, all requests together: a small file can be a huge image, so a request "
        "that does not fit waits up to 2 s, then gets 503 + Retry-After (default: 80M, about 370 MB; at least "
        "--max-image-pixels)",
    )
    limits.add_argument(
        "--max-new-tokens",
        type=int,
        default=64,
        help="longest output asked for (default: 64; requests are also checked against the model's positions)",
    )
    limits.add_argument("--max-num-beams", type=int, default=8, help="widest beam asked for (default: 8)")
    urls = parser.add_argument_group(
        "image_url (off by default)",
        "A URL a client names is fetched from the server's own network, so image_url is refused unless one of\n"
        "these is given. Even then it is taken only in JSON bodies (never in forms, which any web page can post),\n"
        "and only from public addresses (never loopback, private, link-local, multicast, reserved or shared ones,\n"
        "in any spelling, nor after a redirect), within 10 s and --max-image-mb for the whole fetch.",
    )
    urls.add_argument(
        "--allow-image-urls", action="store_true", help="fetch image_url from any public host for any client"
    )
    urls.add_argument(
        "--image-url-hosts",
        metavar="HOST,HOST",
        type=host_list,
        default=(),
        help="fetch image_url only from these host names (exact names, comma-separated; their addresses must be "
        "public too)",
    )
    urls.add_argument("--no-image-urls", action="store_true", help=argparse.SUPPRESS)  # the default now
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


def port_number(text: str) -> int:
    """``--port``: a TCP port, 1-65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port: ports are 1-65535")
    return port


def host_list(text: str) -> tuple[str, ...]:
    """``--image-url-hosts``: comma-separated host names, as the fetcher compares them (IDNA, lower case)."""
    from .url_fetch import normalise_host

    wrong = f"expected host names separated by commas (a.example,b.example), got {text!r}"
    try:
        hosts = tuple(normalise_host(host).rstrip(".") for host in text.split(",") if host.strip())
    except UnicodeError:
        raise argparse.ArgumentTypeError(wrong) from None
    if not hosts or any(not host or set(host) & set("/:@ ?#[]") for host in hosts):
        raise argparse.ArgumentTypeError(wrong)
    return hosts


def listen_problem(host: str, port: int) -> str | None:
    """Why the server could not listen on ``host``:``port`` (an unknown host, an address not on this machine, a
    port in use or not allowed), found before the model loads; None if it can."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as error:
        return f"--host {host}: cannot resolve it ({error})"
    for family, kind, protocol, _, address in infos:
        try:
            with socket.socket(family, kind, protocol) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
                probe.bind(address)
        except OSError as error:
            return f"cannot listen on {host} port {port}: {error.strerror or error}"
    return None


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
    answers_from_default = not args.model  # the default model answers with its VQA model (blip2-shapes/vqa)
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
    if args.max_decoding_pixels < args.max_image_pixels:
        parser.error("--max-decoding-pixels must be at least --max-image-pixels (an accepted image must fit)")
    if args.no_image_urls and (args.allow_image_urls or args.image_url_hosts):
        parser.error("--no-image-urls contradicts --allow-image-urls / --image-url-hosts (and is the default)")
    problem = listen_problem(args.host, args.port)
    if problem:
        parser.error(problem)

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
        max_decoding_pixels=args.max_decoding_pixels,
        allow_image_urls=args.allow_image_urls,
        image_url_hosts=args.image_url_hosts,
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
    if limits.fetches_urls:
        where = f"the hosts {', '.join(args.image_url_hosts)}" if args.image_url_hosts else "any public host"
        print(f"blip2-serve: image_url is fetched for clients from {where}", file=sys.stderr)
    print(f"blip2-serve: the page is at http://{args.host}:{args.port}/ and the API docs at /docs", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
