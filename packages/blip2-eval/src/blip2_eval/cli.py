"""``blip2-eval``: caption, VQA and retrieval evaluation of BLIP-2 models, and the scorers on their own.

Only argparse is imported here; each subcommand imports what it needs when it runs, so the scorers work
without paddle and ``blip2-eval --help`` is instant.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence

from .settings import add_generation_arguments


def add_scorer_parsers(commands: argparse._SubParsersAction) -> None:
    caption = commands.add_parser(
        "caption-score", help="score a captions results file with pycocoevalcap (no model, no paddle)"
    )
    caption.add_argument("--results", required=True, help='JSON list of {"image_id", "caption"}')
    caption.add_argument("--annotations", required=True, help="ground truth in COCO caption format")
    caption.add_argument("--no-spice", action="store_true", help="do not try SPICE (it needs Stanford CoreNLP)")
    caption.add_argument("--json", action="store_true", help="print one JSON object of metrics, nothing else")

    vqa = commands.add_parser("vqa-score", help="score a VQA results file by the official VQA accuracy (no model)")
    vqa.add_argument("--results", required=True, help='JSON list of {"question_id", "answer"}')
    vqa.add_argument("--annotations", required=True, help="official annotations file, or rows with 'answer'")
    vqa.add_argument("--questions", help="official questions file (checked against the annotations)")
    vqa.add_argument(
        "--metric",
        choices=["auto", "vqa_accuracy", "exact_match"],
        default="auto",
        help="auto: VQA accuracy for answer lists (VQAv2, OK-VQA), exact match for single answers (GQA)",
    )
    vqa.add_argument("--json", action="store_true", help="print one JSON object of metrics, nothing else")


def add_model_parsers(commands: argparse._SubParsersAction) -> None:
    for task, datasets in (
        ("caption", "coco_caption, nocaps, custom_caption"),
        ("vqa", "coco_vqa, ok_vqa, gqa"),
        ("retrieval", "coco_retrieval, flickr30k"),
    ):
        sub = commands.add_parser(task, help=f"run a model over a dataset and score it ({datasets})")
        sub.add_argument("--model", required=True, help="model directory, checkpoint, Hub repo id or known name")
        sub.add_argument("--dataset", required=True, help=datasets)
        sub.add_argument(
            "--data_files",
            nargs="+",
            metavar="PATH",
            help="IMAGE_ROOT ANNOTATION [ANNOTATION ...]: local files instead of the download (see the README)",
        )
        sub.add_argument("--split", default=None, help="split to evaluate (default: the dataset's eval split)")
        sub.add_argument("--output_dir", required=True, help="results, settings and metrics go here")
        sub.add_argument("--batch_size", type=int, default=8)
        sub.add_argument("--num_workers", type=int, default=0, help="image-decoding worker processes")
        sub.add_argument("--tokenizer", help="tokenizer files (default: the model directory's)")
        sub.add_argument("--image_size", type=int, help="evaluation image size (default: the model's)")
        sub.add_argument("--limit", type=int, help="evaluate only the first N items (smoke tests)")
        sub.add_argument("--no_score", action="store_true", help="write the results only (e.g. a test split)")
        sub.add_argument("--gather_timeout", type=float, default=3600.0, help="seconds rank 0 waits for the others")
        if task == "retrieval":
            sub.add_argument("--k_test", type=int, default=128, help="ITM re-ranks each row's top k by ITC")
            sub.add_argument("--max_text_length", type=int, default=35, help="text tokens (LAVIS: 35)")
        else:
            add_generation_arguments(sub, task)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="blip2-eval",
        description="Evaluate BLIP-2 models on captioning, VQA and retrieval; score results files.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add_model_parsers(commands)
    add_scorer_parsers(commands)
    return parser


def print_metrics(metrics: dict, as_json: bool) -> None:
    from .report import format_table

    if as_json:
        print(json.dumps(metrics, sort_keys=True))
    else:
        print(format_table(metrics))


def run_scorer(args: argparse.Namespace) -> dict:
    # pycocoevalcap prints progress on stdout; with --json stdout carries the metrics only.
    with contextlib.redirect_stdout(sys.stderr):
        if args.command == "caption-score":
            from .caption_score import score_caption_files

            return score_caption_files(args.results, args.annotations, spice=not args.no_spice)
        from .vqa_score import score_vqa_files

        return score_vqa_files(args.results, args.annotations, args.questions, args.metric)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .json_files import EvalInputError

    try:
        if args.command in ("caption-score", "vqa-score"):
            print_metrics(run_scorer(args), args.json)
            return 0
        from blip2_core.cli.command_line import error_message, start_command_line_tool

        start_command_line_tool()  # threads, MKL's AMD path, quiet imports: before the model runs
        from .evaluate import run_evaluation

        try:
            return run_evaluation(args)
        except (OSError, ValueError) as error:  # a model, tokenizer or data file the user named
            print(f"blip2-eval {args.command}: {error_message(error, llm_flag=None)}", file=sys.stderr)
            return 1
    except EvalInputError as error:
        print(f"blip2-eval {args.command}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
