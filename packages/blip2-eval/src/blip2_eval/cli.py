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


# PaddleMIX's run_eval_caption.py / run_eval_vqav2_zeroshot.py defaults: the model each evaluates and its
# task_name (LAVIS has no default model: its yamls name one per run).
PADDLEMIX_DEFAULTS = {
    "caption": ("paddlemix/blip2-caption-opt2.7b", "coco_caption"),
    "vqa": ("paddlemix/blip2-pretrained-opt2.7b", "coco_vqa"),
}


def add_model_parsers(commands: argparse._SubParsersAction) -> None:
    from blip2_core.cli.paddlemix_flags import add_inert_training_flags

    for task, datasets in (
        ("caption", "coco_caption, nocaps, custom_caption, synthetic_shapes"),
        ("vqa", "coco_vqa, ok_vqa, gqa, synthetic_shapes_vqa"),
        ("retrieval", "coco_retrieval, flickr30k, synthetic_shapes_retrieval"),
    ):
        sub = commands.add_parser(task, help=f"run a model over a dataset and score it ({datasets})")
        model, dataset = PADDLEMIX_DEFAULTS.get(task, (None, "coco_retrieval"))
        sub.add_argument(
            "--model",
            "--model_name_or_path",
            dest="model",
            default=model,
            required=model is None,
            help="model directory, checkpoint, Hub repo id or known name"
            + (f" (default {model}, as PaddleMIX's script; --model_name_or_path is its name)" if model else ""),
        )
        sub.add_argument(
            "--dataset",
            "--task_name",
            dest="dataset",
            default=dataset,
            help=f"{datasets} (default {dataset}; --task_name is PaddleMIX's name)",
        )
        sub.add_argument(
            "--load_model_path",
            "--model_path",
            dest="load_model_path",
            help="weights to load over --model (a checkpoint-N, model directory or checkpoint file of any layout: "
            "PaddleMIX's meaning; --model_path is its older name)",
        )
        sub.add_argument(
            "--data_files",
            nargs="+",
            metavar="PATH",
            help="IMAGE_ROOT ANNOTATION [ANNOTATION ...]: local files instead of the download (see the README)",
        )
        sub.add_argument("--split", default=None, help="split to evaluate (default: the dataset's eval split)")
        sub.add_argument(
            "--output_dir", default=None, help="results, settings and metrics go here (default output/eval_DATASET)"
        )
        sub.add_argument("--batch_size", "--per_device_eval_batch_size", dest="batch_size", type=int, default=8)
        sub.add_argument("--num_workers", type=int, default=0, help="image-decoding worker processes")
        sub.add_argument(
            "--tokenizer",
            "--text_model_name_or_path",
            dest="tokenizer",
            help="tokenizer files (default: the model directory's; --text_model_name_or_path is PaddleMIX's name)",
        )
        sub.add_argument("--image_size", type=int, help="evaluation image size (default: the model's)")
        sub.add_argument("--limit", type=int, help="evaluate only the first N items (smoke tests)")
        sub.add_argument("--no_score", action="store_true", help="write the results only (e.g. a test split)")
        sub.add_argument("--gather_timeout", type=float, default=3600.0, help="seconds rank 0 waits for the others")
        if task == "retrieval":
            sub.add_argument("--k_test", type=int, default=128, help="ITM re-ranks each row's top k by ITC")
            sub.add_argument("--max_text_length", type=int, default=35, help="text tokens (LAVIS: 35)")
        else:
            add_generation_arguments(sub, task)
        add_inert_training_flags(sub)


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

    if args.command not in ("caption-score", "vqa-score"):
        from blip2_core.cli.paddlemix_flags import warn_ignored_flags

        warn_ignored_flags(args, f"blip2-eval {args.command}")
        if args.output_dir is None:
            args.output_dir = f"output/eval_{args.dataset}"

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
