"""Run the benchmark in rounds: HF and ours alternate (each round starts with the other side), every timed run
waits for a quiet machine and records what else ran (rounds.py); the result of each run is kept per round.

python tools/bench/run_rounds.py --reference-python VENV/bin/python --work DIR --sizes tiny vitg-opt125m
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from rounds import attach, measured_run  # noqa: E402

HERE = Path(__file__).parent
TRAINING_SIZES = ("tiny", "vitg-opt125m")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-python", required=True, help="the venv with torch + transformers")
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument(
        "--sizes", nargs="+", default=["tiny", "vitg-opt125m", "data"], help="model shapes, and data: data loading"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quiet-load", type=float, default=0.3, help="1-minute load average to wait for")
    parser.add_argument("--quiet-timeout", type=float, default=1800.0, help="seconds to wait, then run marked")
    parser.add_argument("--load-only", action="store_true", help="time loading alone: no encoding, captions, training")
    parser.add_argument("--train-only", action="store_true", help="time the training step alone: no inference runs")
    parser.add_argument("--infer-only", action="store_true", help="load, encoding and captions: no training step")
    args = parser.parse_args()
    if args.load_only + args.train_only + args.infer_only > 1:
        parser.error("--load-only, --train-only and --infer-only exclude each other")
    env = {**os.environ, "BLIP2_HOME": str(args.work / "blip2-home")}  # ours' compiled bf16 encoders cached here
    ours, reference = sys.executable, args.reference_python
    for size in [s for s in args.sizes if s != "data"]:
        common = ["--size", size, "--work", str(args.work)]
        # untimed: the files every run loads, and our first load (weights converted once, bf16 graph exported)
        for command in ([reference, str(HERE / "reference.py"), *common, "--prepare"],
                        [ours, str(HERE / "ours.py"), *common, "--prepare"]):  # fmt: skip
            measured_run(command, env, threshold=float("inf"), timeout=0)
        for round_number in range(args.rounds):
            sides = [("reference", reference, "reference.py"), ("ours", ours, "ours.py")]
            if round_number % 2:
                sides.reverse()  # each side goes first in every other round
            for dtype in () if args.train_only else ("float32", "bfloat16"):
                for side, python, script in sides:
                    command = [python, str(HERE / script), *common, "--dtype", dtype]
                    command += ["--load-only"] if args.load_only else []
                    record = measured_run(command, env, args.quiet_load, args.quiet_timeout)
                    attach(args.work / size / f"{side}-{dtype}.json", record, round_number)
            if size not in TRAINING_SIZES or args.load_only or args.infer_only:
                continue
            training = [("train-reference", [reference, str(HERE / "train_reference.py")]),
                        ("train-ours", [ours, str(HERE / "train_ours.py")]),
                        ("train-ours-cache", [ours, str(HERE / "train_ours.py"), "--feature_cache"])]  # fmt: skip
            if round_number % 2:
                training.reverse()
            for side, command in training:
                record = measured_run([*command, *common], env, args.quiet_load, args.quiet_timeout)
                attach(args.work / size / f"{side}-float32.json", record, round_number)
    if "data" in args.sizes:  # decoding + preprocessing per worker: JSON + folder against tar shards
        for round_number in range(args.rounds):
            command = [ours, str(HERE / "data_loading.py"), "--work", str(args.work)]
            record = measured_run(command, env, args.quiet_load, args.quiet_timeout)
            attach(args.work / "data" / "loading.json", record, round_number)
    return 0


if __name__ == "__main__":
    sys.exit(main())
