"""Print the benchmark table: HF transformers and ours, fp32 and bf16, from the JSON each run wrote."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

RUNS = [("reference", "float32", "HF fp32"), ("reference", "bfloat16", "HF bf16"),
        ("ours", "float32", "ours fp32"), ("ours", "bfloat16", "ours bf16")]  # fmt: skip
METRICS = [("images_per_s", "img/s"), ("captions_per_s", "captions/s"), ("peak_rss_mb", "peak RSS MB"),
           ("load_s", "load s")]  # fmt: skip
RATIOS = [("ours fp32", "HF fp32"), ("ours bf16", "HF bf16"), ("ours bf16", "HF fp32"),
          ("ours bf16", "ours fp32"), ("HF bf16", "HF fp32")]  # fmt: skip


def cpu_description() -> str:
    model, flags = platform.processor() or "unknown CPU", []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.partition(":")[2].strip()
                elif line.startswith("flags"):
                    flags = line.partition(":")[2].split()
    except OSError:
        pass
    bf16 = [flag for flag in ("avx512_bf16", "amx_bf16") if flag in flags]
    return f"{model}, {os.cpu_count()} CPUs, bf16: {', '.join(bf16) or 'none (emulated)'}"


def main() -> None:
    work, sizes = Path(sys.argv[1]), sys.argv[2:]
    print(f"CPU: {cpu_description()}")
    for size in sizes:
        runs = {}
        for side, dtype, label in RUNS:
            file = work / size / f"{side}-{dtype}.json"
            runs[label] = json.loads(file.read_text()) if file.exists() else None
        done = {label: run for label, run in runs.items() if run}
        threads = sorted({run["threads"] for run in done.values()})
        loads = ", ".join(f"{label} {run['load_1m']:.1f}" for label, run in done.items())
        print(f"\n{size}: threads {threads}; 1-minute load average at the end of each run: {loads}")
        print(f"  {'':<12}" + "".join(f"{label:>11}" for _, _, label in RUNS))
        for key, name in METRICS:
            cells = [f"{runs[label][key]:>11.3f}" if runs[label] else f"{'failed':>11}" for _, _, label in RUNS]
            print(f"  {name:<12}" + "".join(cells))
        for top, bottom in RATIOS:
            if runs[top] and runs[bottom]:
                ratios = (
                    ", ".join(f"{name} {runs[top][key] / runs[bottom][key]:.2f}" for key, name in METRICS[:2])
                    + f", peak RSS {runs[top]['peak_rss_mb'] / runs[bottom]['peak_rss_mb']:.2f}"
                    + f", load time {runs[top]['load_s'] / runs[bottom]['load_s']:.2f}"
                )
                print(f"  {top + ' / ' + bottom:<22} {ratios}")
    example = next((run for run in done.values()), {})
    print(
        f"(captions: greedy, {example.get('new_tokens', '?')} new tokens each, image encoding included; "
        f"ours bf16: {runs['ours bf16']['runtime'] if runs.get('ours bf16') else 'n/a'})"
    )


TRAINING_RUNS = [("train-reference", "HF"), ("train-ours", "ours"), ("train-ours-cache", "ours, cache")]


def training_table(work: Path, sizes: list[str]) -> None:
    """One stage-2 training step (tools/bench/train_*.py): samples/s and the ratios, the losses beside them."""
    for size in sizes:
        runs = {}
        for side, label in TRAINING_RUNS:
            file = work / size / f"{side}-float32.json"
            runs[label] = json.loads(file.read_text()) if file.exists() else None
        done = {label: run for label, run in runs.items() if run}
        if not done:
            continue
        example = next(iter(done.values()))
        loads = ", ".join(f"{label} {run['load_1m']:.1f}" for label, run in done.items())
        print(f"\n{size} training, batch {example['batch']}, fp32: {example['step']}; load average: {loads}")
        print(f"  {'':<14}" + "".join(f"{label:>13}" for _, label in TRAINING_RUNS))
        for key, name, fmt in (("samples_per_s", "samples/s", ".3f"), ("seconds_per_step", "s/step", ".2f"),
                               ("eval_loss", "loss (eval)", ".5f"), ("peak_rss_mb", "peak RSS MB", ".0f")):  # fmt: skip
            print(
                f"  {name:<14}" + "".join(f"{run[key]:>13{fmt}}" if run else f"{'failed':>13}" for run in runs.values())
            )
        for top, bottom in (("ours", "HF"), ("ours, cache", "HF"), ("ours, cache", "ours")):
            if runs[top] and runs[bottom]:
                print(f"  {top + ' / ' + bottom:<20} {runs[top]['samples_per_s'] / runs[bottom]['samples_per_s']:.2f}x")


if __name__ == "__main__":
    main()
    training_table(Path(sys.argv[1]), sys.argv[2:])
