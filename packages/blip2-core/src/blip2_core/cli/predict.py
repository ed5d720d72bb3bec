"""``blip2-predict``: caption images or answer a question about them, a few or a whole folder.

The pieces live in their own modules: ``image_sources`` (folders, globs, lists, reading), ``batches`` (a batch
at a time through the model), ``result_file`` (the resumable JSONL/CSV output) and ``inference`` (the model).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..inference.predictor import DEFAULT_CAPTION_PROMPT, GenerationSettings
from ..loading.default_model import DEFAULT_MODEL_NAME, INSTALL_HINT, model_or_default
from .command_line import error_message, start_command_line_tool
from .row_text import json_line, tsv_field

NO_DEFAULT_MODEL = (
    f"the default model ({DEFAULT_MODEL_NAME}) is a package of its own and is not installed: {INSTALL_HINT}; "
    "or pass --model NAME_OR_PATH "
    "(a directory, a checkpoint file, a Hub repo id or a known name: see blip2-predict --list-models)"
)


def build_parser() -> argparse.ArgumentParser:
    from .paddlemix_flags import add_inert_training_flags

    parser = argparse.ArgumentParser(
        prog="blip2-predict",
        description="Caption images, or answer a question about them, with a BLIP-2 model.",
        epilog="Examples:\n  blip2-predict --model Salesforce/blip2-opt-2.7b --image cat.jpg\n"
        "  blip2-predict --model ./my-blip2 --image a.jpg b.jpg --question 'what is on the table?' --json\n"
        "  blip2-predict --model ./my-blip2 --images photos/ --output captions.jsonl   # rerun to resume",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # Each second spelling is PaddleMIX's (paddlemix/examples/blip2/run_predict.py), with its meaning.
    parser.add_argument(
        "--image",
        "--input_image",
        dest="image",
        nargs="+",
        metavar="PATH_OR_URL",
        help="image files or http(s) URLs (several allowed)",
    )
    parser.add_argument(
        "--images",
        nargs="+",
        metavar="DIR_OR_GLOB_OR_LIST",
        help="many images: a folder (recursive), a glob ('photos/**/*.jpg', quoted) or a text file of paths/URLs",
    )
    parser.add_argument(
        "--output",
        metavar="FILE.jsonl|FILE.csv",
        help="write one row per image here instead of printing; rerunning the same command skips the images "
        "already in it (a run killed at any moment leaves a valid file)",
    )
    parser.add_argument(
        "--retry-failed", action="store_true", help="with --output: try the images of its error rows again"
    )
    parser.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default: 8)")
    parser.add_argument(
        "--progress", action="store_true", help="show the progress bar even when stderr is not a terminal"
    )
    parser.add_argument(
        "--model",
        "--model_name_or_path",
        dest="model",
        metavar="NAME_OR_PATH",
        help=f"model directory, checkpoint file, Hub repo id or known name (default: {DEFAULT_MODEL_NAME}, when installed)",
    )
    what = parser.add_mutually_exclusive_group()
    what.add_argument(
        "--prompt",
        help="BLIP-2: text the caption continues, e.g. 'a photo of' (default: none); an instruction-tuned model "
        "(InstructBLIP): the instruction, read by its Q-Former and its LLM, e.g. 'What is unusual about this image?'",
    )
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
        "--tokenizer",
        "--text_model_name_or_path",
        dest="tokenizer",
        metavar="NAME_OR_PATH",
        help="the LLM's tokenizer files (default: the model's, else its LLM's)",
    )
    parser.add_argument(
        "--load_model_path",
        "--model_path",
        "--pretrained_model_path",
        dest="load_model_path",
        metavar="PATH",
        help="weights to load over --model (a checkpoint-N, model directory or checkpoint file of any layout), "
        "PaddleMIX's meaning",
    )
    parser.add_argument("--image_size", type=int, help=argparse.SUPPRESS)  # PaddleMIX's, never read there either
    add_inert_training_flags(parser)
    parser.add_argument(
        "--trust-pickle", action="store_true", help="allow .pth/.pdparams checkpoints found on a hub (read safely)"
    )
    parser.add_argument(
        "--dtype",
        choices=["float32", "float16", "bfloat16"],
        default="float32",
        help="bfloat16 on a CPU: the image encoder compiled once for oneDNN bf16, the LLM in float32; "
        "float16: GPU only",
    )
    return parser


def output_columns(question: str | None) -> list[str]:
    return ["image", "question", "answer", "error"] if question is not None else ["image", "caption", "error"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .paddlemix_flags import warn_ignored_flags

    warn_ignored_flags(args, "blip2-predict")
    if args.list_models:
        from ..loading.default_model import embedded_entries
        from ..loading.model_names import all_entries, format_table

        print(format_table([*embedded_entries(), *all_entries()]))
        return 0
    if not args.image and not args.images:
        parser.error("--image or --images is required (unless --list-models)")
    if args.batch_size < 1:
        parser.error(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.retry_failed and not args.output:
        parser.error("--retry-failed needs --output (the file whose error rows to retry)")
    if args.output:
        from .result_file import FORMATS

        if Path(args.output).suffix.lower() not in FORMATS:
            print(f"blip2-predict: --output {args.output}: the output must end in .jsonl or .csv", file=sys.stderr)
            return 2
    args.model = model_or_default(args.model, question=args.question is not None)
    if not args.model:
        print(f"blip2-predict: {NO_DEFAULT_MODEL}", file=sys.stderr)
        return 2
    start_command_line_tool()
    from ..inference.image_sources import expand_images

    try:
        sources = list(dict.fromkeys([*(args.image or []), *(expand_images(args.images or []))]))
    except (OSError, ValueError) as error:
        print(f"blip2-predict: --images {error}", file=sys.stderr)
        return 2
    if args.output:
        return _run_to_file(args, sources)
    return _run_to_stdout(args, sources)


def _settings(args: argparse.Namespace) -> GenerationSettings:
    return GenerationSettings(
        num_beams=args.num_beams, max_new_tokens=args.max_new_tokens, min_new_tokens=args.min_new_tokens
    )


def _rows(args: argparse.Namespace, predictor: Any, sources: Sequence[str]):
    from ..inference.batches import predict_rows

    return predict_rows(
        predictor,
        sources,
        batch_size=args.batch_size,
        settings=_settings(args),
        prompt=_prompt(args),
        question=args.question,
    )


def _load(args: argparse.Namespace) -> Any:
    from ..inference.predictor import Predictor

    predictor = Predictor.load(
        args.model, llm=args.llm, tokenizer=args.tokenizer, trust_pickle=args.trust_pickle, dtype=args.dtype
    )
    if args.load_model_path:
        from ..loading.pretrained import load_weights_over

        load_weights_over(predictor.model, args.load_model_path)
    return predictor


def _settings_problem(args: argparse.Namespace, predictor: Any) -> str | None:
    """Why the model cannot decode with these settings and this prompt or question (its positions, min > max,
    a bad beam width), in the command's own flags; None when it can."""
    task, text = ("vqa", args.question) if args.question is not None else ("caption", _prompt(args))
    try:
        predictor.check_settings(task, _settings(args), [text])
    except ValueError as error:
        message = str(error)
        for name in ("num_beams", "max_new_tokens", "min_new_tokens"):
            message = message.replace(name, "--" + name.replace("_", "-"))
        return message.replace("shorten the prompt", "shorten the " + ("question" if task == "vqa" else "prompt"))
    return None


def _prompt(args: argparse.Namespace) -> str:
    return args.prompt if args.prompt is not None else DEFAULT_CAPTION_PROMPT


def _progress(args: argparse.Namespace, total: int, initial: int = 0) -> Any:
    from tqdm import tqdm

    # tqdm's rate and remaining time count only this run's images, not those done before a resume
    return tqdm(
        total=total,
        initial=initial,
        unit="img",
        desc="blip2-predict",
        file=sys.stderr,
        dynamic_ncols=True,
        disable=not (args.progress or sys.stderr.isatty()),
    )


def _checked_predictor(args: argparse.Namespace) -> tuple[Any, int]:
    """The loaded model, or None and the exit status once the reason is printed (1: it cannot load; 2: the
    settings do not fit it)."""
    try:
        predictor = _load(args)
    except (OSError, ValueError) as error:
        print(f"blip2-predict: {error_message(error)}", file=sys.stderr)
        return None, 1
    problem = _settings_problem(args, predictor)
    if problem:
        print(f"blip2-predict: {problem}", file=sys.stderr)
        return None, 2
    return predictor, 0


def _run_to_stdout(args: argparse.Namespace, sources: list[str]) -> int:
    predictor, status = _checked_predictor(args)
    if predictor is None:
        return status
    failed = 0
    with _progress(args, len(sources)) as bar:
        for rows in _rows(args, predictor, sources):
            for row in rows:
                if "error" in row:
                    failed += 1
                    bar.write(f"blip2-predict: {row['error']}", file=sys.stderr)
                if args.json:
                    print(json_line(row), flush=True)
                elif "error" not in row:  # one line of two fields, whatever the file name holds
                    print(f"{tsv_field(row['image'])}\t{tsv_field(row.get('answer', row.get('caption')))}", flush=True)
            bar.update(len(rows))
    if failed:
        print(f"blip2-predict: {failed} of {len(sources)} images could not be read", file=sys.stderr)
    return 1 if failed else 0


def _run_to_file(args: argparse.Namespace, sources: list[str]) -> int:
    from .result_file import ResultFile

    output = None
    try:
        output = ResultFile(args.output, output_columns(args.question))
        output.open()
        _check_same_task(output, args.question)
        if args.retry_failed:
            output.drop_failed()
    except (OSError, ValueError) as error:
        if output is not None:
            output.close()
        print(f"blip2-predict: --output {error}", file=sys.stderr)
        return 2
    with output:
        pending = [source for source in sources if source not in output.done]
        skipped = len(sources) - len(pending)
        if pending:
            predictor, status = _checked_predictor(args)
            if predictor is None:
                return status
            try:
                with _progress(args, len(sources), skipped) as bar:
                    for rows in _rows(args, predictor, pending):
                        output.append(rows)
                        for row in rows:
                            if "error" in row:
                                bar.write(f"blip2-predict: {row['error']}", file=sys.stderr)
                        bar.update(len(rows))
            except KeyboardInterrupt:
                done = sum(source in output.done for source in sources)
                print(
                    f"\nblip2-predict: interrupted; {done} of {len(sources)} images are in {args.output}: "
                    "run the same command again to go on",
                    file=sys.stderr,
                )
                return 130
        failed = [source for source in sources if output.done[source].get("error")]
    print(
        f"blip2-predict: {len(sources)} images, {len(sources) - len(failed)} done, {len(failed)} failed"
        + (f" ({skipped} were already in {args.output})" if skipped else "")
        + (" -- their error rows say why; --retry-failed tries them again" if failed else ""),
        file=sys.stderr,
    )
    return 1 if failed else 0


def _check_same_task(output: Any, question: str | None) -> None:
    """A rerun continues the run that wrote the file: the same question (or captions), or a clear refusal."""
    for row in output.done.values():
        if row.get("error"):
            continue
        if row.get("question") != question or ("caption" in row) != (question is None):
            was = f"the question {row['question']!r}" if "question" in row else "captions"
            now = f"the question {question!r}" if question is not None else "captions"
            raise ValueError(f"{output.path} holds {was}, this run asks for {now}: write to another file")


if __name__ == "__main__":
    sys.exit(main())
