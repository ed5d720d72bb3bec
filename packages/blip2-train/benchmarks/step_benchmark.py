"""Peak memory and speed of one training step at BLIP-2's real sizes (random weights, CPU, fp32).

- stage 1: EVA-ViT-g (39 blocks, 224 px) + the BERT-base Q-Former with ITC + ITM + ITG, AdamW step;
- stage 2: the same ViT and Q-Former + OPT-125m (frozen), LM loss, AdamW step;
- gradient checkpointing: peak resident memory of a stage-1 step with and without it, with the ViT frozen
  (the recipe) and unfrozen (fine-tuning, forward + backward only: AdamW's state for a trainable ViT-g would
  not fit beside it here);
- caption fine-tuning (``finetune-caption``): the ViT-g trained at 364 px (677 tokens) + Q-Former + OPT-125m
  (frozen), forward + backward, with and without gradient checkpointing.

Each case runs in its own process so its peak RSS (``ru_maxrss``) is its own.

    python packages/blip2-train/benchmarks/step_benchmark.py [--batch 2] [--steps 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import time

CASES = {
    "stage1": dict(stage="stage1", freeze_vit=True, checkpointing=False, optimizer=True),
    "stage1-ckpt": dict(stage="stage1", freeze_vit=True, checkpointing=True, optimizer=True),
    "stage1-vit-trained": dict(stage="stage1", freeze_vit=False, checkpointing=False, optimizer=False),
    "stage1-vit-trained-ckpt": dict(stage="stage1", freeze_vit=False, checkpointing=True, optimizer=False),
    "stage2-opt125m": dict(stage="stage2", freeze_vit=True, checkpointing=False, optimizer=True),
    # finetune-caption: ViT-g unfrozen at 364 px (677 tokens), forward + backward (no AdamW state, as above)
    "caption-ft-364": dict(stage="stage2", freeze_vit=False, checkpointing=False, optimizer=False, image_size=364),
    "caption-ft-364-ckpt": dict(stage="stage2", freeze_vit=False, checkpointing=True, optimizer=False, image_size=364),
}
OPT_125M = dict(
    model_type="opt", vocab_size=50272, hidden_size=768, num_hidden_layers=12, ffn_dim=3072, num_attention_heads=12,
    max_position_embeddings=2048, word_embed_proj_dim=768, pad_token_id=1, bos_token_id=2, eos_token_id=2,
)  # fmt: skip


def rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kilobytes on Linux


def current_rss_gib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def run_case(name: str, batch: int, steps: int) -> dict:
    from blip2_core.cli.command_line import start_command_line_tool

    start_command_line_tool()  # as blip2-train does: every core, and MKL's fast path on AMD (before paddle computes)
    import paddle

    from blip2_core import Blip2Config, Blip2ForConditionalGeneration, Blip2Qformer
    from blip2_core.model.text_config import TextConfig
    from blip2_train import WarmupCosineSchedule, build_adamw
    from blip2_train.models import enable_gradient_checkpointing

    case = CASES[name]
    paddle.seed(0)
    config = Blip2Config(freeze_vit=case["freeze_vit"])
    image_size = case.get("image_size", 224)
    config.vision_config = dataclasses.replace(config.vision_config, image_size=image_size)
    if case["stage"] == "stage1":
        config.qformer_config = dataclasses.replace(config.qformer_config, has_text_input=True)
        model = Blip2Qformer(config)
    else:
        config.text_config = TextConfig(**OPT_125M)
        model = Blip2ForConditionalGeneration(config)
    if not case["freeze_vit"]:
        for p in model.vision_model.parameters():
            p.stop_gradient = False
    if case["checkpointing"]:
        enable_gradient_checkpointing(model)
    model.train()
    optimizer = build_adamw(model, WarmupCosineSchedule(1e-4, 1e-5, 10, 100), 0.05) if case["optimizer"] else None
    pixels = paddle.randn([batch, 3, image_size, image_size])
    ids = paddle.randint(1000, 2000, [batch, 32])
    mask = paddle.ones([batch, 32], dtype="int64")
    before = current_rss_gib()

    # ITM draws a negative from the other samples: at batch 1 there is none, so ITC + ITG only
    losses = ("itc", "itm", "itg") if batch > 1 else ("itc", "itg")

    def step() -> None:
        if case["stage"] == "stage1":
            loss = model(pixels, ids, mask, losses=losses).loss
        else:
            loss = model(pixels, ids, mask, labels=ids).loss
        loss.backward()
        if optimizer is not None:
            optimizer.step()
            optimizer.clear_grad()
        else:
            model.clear_gradients()

    step()  # warm-up (allocations, kernels)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - start) / steps
    return {
        "case": name,
        "batch": batch,
        "image_size": image_size,
        "losses": list(losses) if case["stage"] == "stage1" else ["lm"],
        "seconds_per_step": round(seconds, 2),
        "samples_per_second": round(batch / seconds, 3),
        "rss_before_step_gib": round(before, 2),
        "peak_rss_gib": round(rss_gib(), 2),
        "threads": paddle.base.core.get_num_threads() if hasattr(paddle.base.core, "get_num_threads") else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--cases", nargs="*", default=list(CASES))
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one case in this process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_case(args.one, args.batch, args.steps)))
        return
    for name in args.cases:
        proc = subprocess.run(
            [sys.executable, __file__, "--one", name, "--batch", str(args.batch), "--steps", str(args.steps)],
            capture_output=True,
            text=True,
        )
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        print(lines[-1] if proc.returncode == 0 and lines else f"{name}: failed\n{proc.stderr[-2000:]}", flush=True)


if __name__ == "__main__":
    main()
