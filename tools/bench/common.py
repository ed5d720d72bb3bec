"""What both sides of the benchmark share: the model sizes, the arguments, the timer, memory. No dependencies."""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent))
from shapes import OPT as OPT_TINY  # noqa: E402
from shapes import QFORMER as QFORMER_TINY  # noqa: E402
from shapes import VISION as TINY_VISION  # noqa: E402

VIT_G = dict(
    hidden_size=1408,
    intermediate_size=6144,
    num_hidden_layers=39,
    num_attention_heads=16,
    image_size=224,
    patch_size=14,
)
QFORMER = dict()  # BLIP-2's: 12 x 768, cross-attention every 2nd layer
OPT_125M = dict(
    model_type="opt",
    vocab_size=50272,
    hidden_size=768,
    word_embed_proj_dim=768,
    num_hidden_layers=12,
    ffn_dim=3072,
    num_attention_heads=12,
    max_position_embeddings=2048,
)
OPT_2_7B = dict(
    model_type="opt",
    vocab_size=50272,
    hidden_size=2560,
    word_embed_proj_dim=2560,
    num_hidden_layers=32,
    ffn_dim=10240,
    num_attention_heads=32,
    max_position_embeddings=2048,
)

SIZES = {
    # name: (vision, qformer, text, num_query_tokens, images per call, new tokens)
    "tiny": (TINY_VISION, {**QFORMER_TINY, "use_qformer_text_input": False}, OPT_TINY, 8, 8, 20),
    "vitg-opt125m": (VIT_G, QFORMER, OPT_125M, 32, 2, 20),
    "vitg-opt2.7b": (VIT_G, QFORMER, OPT_2_7B, 32, 1, 10),
}
DTYPES = ("float32", "bfloat16")


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--size", choices=SIZES, default="tiny")
    parser.add_argument("--work", type=Path, required=True, help="where the model and the results go")
    parser.add_argument("--dtype", choices=DTYPES, default="float32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prepare", action="store_true", help="only write what later runs load, time nothing")
    parser.add_argument("--load-only", action="store_true", help="time the second load alone (no encoding, captions)")
    return parser.parse_args()


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Mean seconds per call after one warm-up call."""
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed_load(load: Callable[[], object]) -> tuple[object, dict]:
    """``load()``'s result, and its seconds and the process's peak RSS (MB) when it returned.

    Every timed run loads files an earlier run (``--prepare``) has loaded already: the page cache holds them,
    and ours has written its converted-weights cache and compiled bf16 graph; this is the second load, the one
    a user waits for each time."""
    start = time.perf_counter()
    model = load()
    return model, {"load_s": time.perf_counter() - start, "load_peak_rss_mb": peak_rss_mb()}


def current_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def write_result(args: argparse.Namespace, side: str, result: dict) -> None:
    result["load_1m"] = os.getloadavg()[0]  # other work on the machine skews the figures: reported with them
    folder = args.work / args.size
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{side}-{args.dtype}.json").write_text(json.dumps(result))
    print(json.dumps(result))
