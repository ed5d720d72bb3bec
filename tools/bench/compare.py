"""Print the benchmark table: HF transformers and ours, fp32 and bf16, from the JSON each run wrote."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

from rounds import spread

RUNS = [("reference", "float32", "HF fp32"), ("reference", "bfloat16", "HF bf16"),
        ("ours", "float32", "ours fp32"), ("ours", "bfloat16", "ours bf16")]  # fmt: skip
# load: the second load of the files (--prepare loaded them first), and the peak RSS when it returned
METRICS = [("images_per_s", "img/s"), ("captions_per_s", "captions/s"), ("peak_rss_mb", "peak RSS MB"),
           ("load_s", "2nd load s"), ("load_peak_rss_mb", "load RSS MB")]  # fmt: skip
UNTIMED = ("peak_rss_mb", "load_peak_rss_mb")
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


def load_rounds(folder: Path, name: str) -> list[dict]:
    """Every round's result of one run (``{name}-r{N}.json``, written by run_rounds.py), in round order."""
    files = sorted(folder.glob(f"{name}-r*.json"), key=lambda p: int(p.stem.rsplit("-r", 1)[1]))
    return [json.loads(file.read_text()) for file in files]


def figure(runs: list[dict], key: str) -> str:
    """Median [range] of ``key`` over the successful rounds, with the count of timed rounds that ran noisy."""
    good = [run[key] for run in runs if key in run]
    noisy = 0 if key in UNTIMED else sum(1 for run in runs if key in run and not run["run"]["reliable"])
    return spread(good) + (f" ({noisy} noisy)" if noisy else "")


def ratio(tops: list[dict], bottoms: list[dict], key: str) -> str:
    """The ratio round by round (the two sides of one round ran minutes apart), as median [range]; not printed
    as a result when a run of either side had other processes take CPU."""
    pairs = [(t, b) for t, b in zip(tops, bottoms) if key in t and key in b]
    if not pairs:
        return "n/a"
    if key in UNTIMED:  # memory: other processes cannot change a run's own peak RSS
        return spread([t[key] / b[key] for t, b in pairs])
    if not all(t["run"]["reliable"] and b["run"]["reliable"] for t, b in pairs):
        taken = max(max(t["run"]["others_share"], b["run"]["others_share"]) for t, b in pairs)
        return f"unreliable (other processes took up to {taken:.2f} cores during a run)"
    return spread([t[key] / b[key] for t, b in pairs])


def main() -> None:
    work, sizes = Path(sys.argv[1]), sys.argv[2:]
    print(f"CPU: {cpu_description()}")
    for size in sizes:
        runs = {label: load_rounds(work / size, f"{side}-{dtype}") for side, dtype, label in RUNS}
        done = [run for rounds in runs.values() for run in rounds if "run" in run]
        if not done:
            continue
        loads = [run["run"]["load_before"] for run in done] + [run["run"]["load_after"] for run in done]
        print(f"\n{size}: {len(next(iter(runs.values())))} rounds, threads {sorted({r.get('threads') for r in done})}; "
              f"1-minute load before/after runs {min(loads):.2f}-{max(loads):.2f}; median [range] per figure")  # fmt: skip
        for key, name in METRICS:
            print(f"  {name:<12} " + " | ".join(f"{label} {figure(runs[label], key)}" for _, _, label in RUNS))
        for top, bottom in RATIOS:
            cells = ", ".join(f"{name} {ratio(runs[top], runs[bottom], key)}" for key, name in METRICS)
            print(f"  {top + ' / ' + bottom:<22} {cells}")
        first = work / size / "ours-first-load-float32.json"
        if first.exists():  # one run, in --prepare: the machine was not waited on
            values = json.loads(first.read_text())
            print(f"  ours' first load (weights converted into the cache), one unpaced run: "
                  f"{values['first_load_s']:.1f} s, peak RSS {values['first_load_peak_rss_mb']:.0f} MB")  # fmt: skip


TRAINING_RUNS = [("train-reference", "HF"), ("train-ours", "ours"), ("train-ours-cache", "ours, cache")]


def training_table(work: Path, sizes: list[str]) -> None:
    """One stage-2 training step (tools/bench/train_*.py): samples/s and the ratios over the rounds."""
    for size in sizes:
        runs = {label: load_rounds(work / size, f"{side}-float32") for side, label in TRAINING_RUNS}
        if not any(runs.values()):
            continue
        done = [run["run"] for rounds in runs.values() for run in rounds if "run" in run]
        loads = [r["load_before"] for r in done] + [r["load_after"] for r in done]
        print(f"\n{size} training, one stage-2 step, fp32; median [range] over {max(map(len, runs.values()))} rounds; "
              f"1-minute load before/after runs {min(loads):.2f}-{max(loads):.2f}, other processes took at most "
              f"{max(r['others_share'] for r in done):.3f} cores")  # fmt: skip
        for key, name in (("samples_per_s", "samples/s"), ("seconds_per_step", "s/step"),
                          ("peak_rss_mb", "peak RSS MB")):  # fmt: skip
            print(f"  {name:<14} " + " | ".join(f"{label} {figure(rounds, key)}" for label, rounds in runs.items()))
        for top, bottom in (("ours", "HF"), ("ours, cache", "HF"), ("ours, cache", "ours")):
            print(f"  {top + ' / ' + bottom:<20} {ratio(runs[top], runs[bottom], 'samples_per_s')}")


def data_table(work: Path, sizes: list[str]) -> None:
    """Decoding + training preprocessing per DataLoader worker (tools/bench/data_loading.py), and the workers a
    GPU needs to keep up with the paper's runs."""
    runs = load_rounds(work / "data", "loading") if "data" in sizes else []
    if not runs:
        return
    example = runs[0]
    print(f"\ndata loading, {example['images']} JPEGs of {example['image_size']} to 224 px (training transform), "
          f"one worker; median [range] over rounds")  # fmt: skip
    for key, name in (("folder_images_per_s", "JSON + folder img/s"), ("shards_images_per_s", "tar shards img/s")):
        print(f"  {name:<22} {figure(runs, key)}")
    for stage in example["workers_per_gpu"]:
        need = {kind: [run["workers_per_gpu"][stage][kind] for run in runs] for kind in ("folder", "shards")}
        print(f"  workers per A100, {stage}: folder {spread(need['folder'])}, shards {spread(need['shards'])}")


if __name__ == "__main__":
    main()
    training_table(Path(sys.argv[1]), sys.argv[2:])
    data_table(Path(sys.argv[1]), sys.argv[2:])
