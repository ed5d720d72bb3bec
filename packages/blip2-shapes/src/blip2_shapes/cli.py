"""``blip2-shapes``: where the default model's files are, and the recipe that trains it.

blip2-shapes where                                  the model's folder (what blip2-predict loads by default)
blip2-shapes train --work WORK                      train from nothing (under 30 minutes on 2 CPU cores),
                                                    evaluate, and replace the shipped model only if its figures
                                                    improve
blip2-shapes train --work WORK --out DIR            train and write the model to DIR (no comparison)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import MODEL_DIRECTORY


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="blip2-shapes", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("where", help="print the folder of the installed model")
    measure = commands.add_parser("measure", help="the model on pictures drawn by another renderer")
    measure.add_argument("--model", type=Path, default=MODEL_DIRECTORY, help="a model folder with vqa/ inside")
    measure.add_argument("--images", type=int, default=60)
    train = commands.add_parser("train", help="train the model from nothing with the project's commands")
    train.add_argument("--work", required=True, type=Path, help="scratch folder (data, runs, logs, the new model)")
    train.add_argument("--out", type=Path, help="write the model here instead of comparing it with the shipped one")
    train.add_argument("--profile", choices=["full", "learning_test"], default="full")
    train.add_argument("--skip-eval", action="store_true", help="train and package only (needs --out)")
    train.add_argument("--replace-anyway", action="store_true", help="replace the shipped model even if a figure fell")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "where":
        print(MODEL_DIRECTORY)
        return 0
    if args.command == "measure":
        import json

        from .drawn_differently import measure_model

        vqa = args.model / "vqa"
        measured = measure_model(str(args.model), str(vqa) if vqa.is_dir() else None, args.images)
        print(json.dumps(measured, indent=1))
        return 0
    if args.skip_eval and args.out is None:
        print("blip2-shapes train: --skip-eval gives no figures to compare; pass --out DIR", file=sys.stderr)
        return 2
    from .recipe.improvement import replace_if_better
    from .recipe.recipe import train_model

    out = args.out or args.work / "model"
    train_model(args.work, out, args.profile, args.skip_eval)
    if args.out is not None:
        print(f"the model is in {out}")
        return 0
    replaced, table = replace_if_better(out, MODEL_DIRECTORY, anyway=args.replace_anyway)
    print(table)
    if not replaced:
        print(f"kept the shipped model ({MODEL_DIRECTORY}): a figure fell or none rose; the new one is in {out}")
        return 1
    print(f"replaced the shipped model ({MODEL_DIRECTORY}): commit its weights, scores.json and README.md together")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
