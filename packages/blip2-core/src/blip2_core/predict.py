"""``blip2-predict``: caption images or answer a question about them."""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .command_line import error_message, start_command_line_tool

DEFAULT_CAPTION_PROMPT = ""  # LAVIS's caption_coco models are prompted with "a photo of"; --prompt sets it
NO_DEFAULT_MODEL = (
    "no embedded default model is installed yet: pass --model NAME_OR_PATH "
    "(a directory, a checkpoint file, a Hub repo id or a known name: see blip2-predict --list-models)"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="blip2-predict",
        description="Caption images, or answer a question about them, with a BLIP-2 model.",
        epilog="Examples:\n  blip2-predict --model Salesforce/blip2-opt-2.7b --image cat.jpg\n"
        "  blip2-predict --model ./my-blip2 --image a.jpg b.jpg --question 'what is on the table?' --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--image", nargs="+", metavar="PATH_OR_URL", help="image files or http(s) URLs (several allowed)"
    )
    parser.add_argument(
        "--model", metavar="NAME_OR_PATH", help="model directory, checkpoint file, Hub repo id or known name"
    )
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--prompt", help="text the caption continues, e.g. 'a photo of' (default: none)")
    what.add_argument("--question", help="ask this about every image (zero-shot VQA: 'Question: {} Answer:')")
    parser.add_argument("--num-beams", type=int, default=5, help="beam width (default: 5, as the paper)")
    parser.add_argument("--max-new-tokens", type=int, help="longest answer/caption in tokens (default: 10 / 30)")
    parser.add_argument(
        "--min-new-tokens", type=int, default=None, help="shortest answer/caption in tokens (default: 1 / 8, as LAVIS)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object per image")
    parser.add_argument(
        "--list-models", action="store_true", help="list the known model names and where they are published"
    )
    parser.add_argument(
        "--llm",
        metavar="NAME_OR_PATH",
        help="the LLM, for a model whose config.json names none (e.g. blip2-merge's vision + bridge output)",
    )
    parser.add_argument(
        "--tokenizer", metavar="NAME_OR_PATH", help="the LLM's tokenizer files (default: the model's, else its LLM's)"
    )
    parser.add_argument(
        "--trust-pickle", action="store_true", help="allow .pth/.pdparams checkpoints found on a hub (read safely)"
    )
    parser.add_argument(
        "--dtype", choices=["float32", "float16", "bfloat16"], default="float32", help="weights' dtype (GPU)"
    )
    return parser


def read_image(path_or_url: str) -> Any:
    """An RGB image from a file or an http(s) URL; ``OSError`` naming the file and what is wrong with it."""
    from PIL import Image

    if path_or_url.startswith(("http://", "https://")):
        import requests

        try:
            response = requests.get(path_or_url, timeout=30)
            response.raise_for_status()
        except requests.RequestException as error:
            raise OSError(f"cannot fetch {path_or_url} ({type(error).__name__})") from None
        try:
            return Image.open(io.BytesIO(response.content)).convert("RGB")
        except OSError as error:
            raise OSError(f"{path_or_url} is not a readable image ({error})") from None
    from blip2_data import load_image

    path = Path(path_or_url)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory, not an image file")
    if not path.is_file():
        raise FileNotFoundError(f"no image file at {path}")
    if path.stat().st_size == 0:
        raise OSError(f"{path} is empty (0 bytes)")
    try:
        return load_image(path)
    except OSError as error:
        raise OSError(f"{path} is not a readable image ({error})") from None


def _image_processor(model: Any, model_path: Path | None) -> Any:
    from blip2_data import ImageProcessor, ImageProcessorConfig

    if model_path is not None and (model_path / "preprocessor_config.json").exists():
        return ImageProcessor.from_pretrained(model_path)
    return ImageProcessor(ImageProcessorConfig(image_size=model.config.vision_config.image_size))


def _tokenizer(args: argparse.Namespace, model: Any, model_path: Path | None) -> Any:
    from .text_tokenizer import load_tokenizer

    candidates = [args.tokenizer] if args.tokenizer else []
    if model_path is not None and model_path.is_dir():
        candidates.append(str(model_path))
    if model.config.text_name_or_path:
        candidates.append(model.config.text_name_or_path)
    errors = []
    for candidate in candidates:
        try:
            return load_tokenizer(candidate)
        except (OSError, ValueError) as error:
            errors.append(str(error).replace("\n", "\n    "))
    tried = "".join(f"\n  - {error}" for error in errors) or "\n  - the model names no LLM whose tokenizer to use"
    raise ValueError(f"no tokenizer for {args.model}:{tried}\n  pass --tokenizer DIR (the LLM's tokenizer files)")


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One row per ``--image``, in order: the caption or answer, or ``error`` saying why that image failed."""
    import numpy as np
    import paddle

    from .modeling import Blip2ForConditionalGeneration, tokenize

    model = Blip2ForConditionalGeneration.from_pretrained(
        args.model,
        text_name_or_path=args.llm,
        trust_pickle=args.trust_pickle,
        dtype=None if args.dtype == "float32" else args.dtype,
    )
    model_path = Path(args.model) if Path(args.model).exists() else None
    tokenizer = _tokenizer(args, model, model_path)
    processor = _image_processor(model, model_path)
    rows: list[dict[str, Any]] = []
    pixels = []
    for image in args.image:
        try:
            pixels.append(processor(read_image(image)))
            rows.append({"image": image})
        except OSError as error:  # one bad image must not cost the others their captions
            rows.append({"image": image, "error": str(error)})
    good = [row for row in rows if "error" not in row]
    if not good:
        return rows
    pixels = paddle.to_tensor(np.stack(pixels))
    if args.question is not None:
        answers = model.predict_answers(
            pixels,
            [args.question] * len(good),
            tokenizer,
            num_beams=args.num_beams,
            max_new_tokens=args.max_new_tokens or 10,
            min_new_tokens=1 if args.min_new_tokens is None else args.min_new_tokens,
        )
        for row, answer in zip(good, answers):
            row.update(question=args.question, answer=answer)
        return rows
    prompt = args.prompt if args.prompt is not None else DEFAULT_CAPTION_PROMPT
    decoder_only = model.language_model.is_decoder_only
    input_ids, mask = tokenize(tokenizer, [prompt] * len(good), left_pad=decoder_only)
    beams = args.num_beams
    ids = model.generate(
        pixels,
        input_ids,
        mask,
        num_beams=beams,
        max_new_tokens=args.max_new_tokens or 30,
        min_new_tokens=args.min_new_tokens if args.min_new_tokens is not None else (8 if beams > 1 else 0),
    )
    captions = [t.strip() for t in tokenizer.batch_decode(ids.numpy().tolist(), skip_special_tokens=True)]
    for row, caption in zip(good, captions):
        row["caption"] = f"{prompt.strip()} {caption}".strip() if prompt else caption
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_models:
        from .model_names import format_table

        print(format_table())
        return 0
    if not args.image:
        parser.error("--image is required (unless --list-models)")
    if not args.model:
        print(f"blip2-predict: {NO_DEFAULT_MODEL}", file=sys.stderr)
        return 2
    start_command_line_tool()
    try:
        rows = run(args)
    except (OSError, ValueError) as error:
        print(f"blip2-predict: {error_message(error)}", file=sys.stderr)
        return 1
    for row in rows:
        if "error" in row:
            print(f"blip2-predict: {row['error']}", file=sys.stderr)
        if args.json:
            print(json.dumps(row, ensure_ascii=False))
        elif "error" not in row:
            print(f"{row['image']}\t{row.get('answer', row.get('caption'))}")
    failed = sum("error" in row for row in rows)
    if failed:
        print(f"blip2-predict: {failed} of {len(rows)} images could not be read", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
