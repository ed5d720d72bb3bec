"""Pre-train the demo's small OPT on synthetic_shapes text, then write it as an HF OPT checkpoint (frozen after).

Why a short loop here and not ``blip2-train``: the project's trainer trains BLIP-2 stages (image + text); a
text-only LM recipe would belong in blip2-train, which has none. The LM is paddlenlp's ``OPTForCausalLM`` behind
blip2-core's ``LanguageModel`` -- the class stage 2 freezes -- with AdamW, warmup and a cosine, full batches.

What it learns (a stand-in for the web text a real LLM has read): a scene described in words, then ``</s>``
(OPT's BOS, which starts every text the BLIP-2 collators build), then either a description of the same scene
or ``Question: ... Answer: ...`` about it, ending with "\\n" (the end of caption BLIP-2's OPT models stop on).
Loss is on what follows ``</s>``. In stage 2 the Q-Former's outputs take the place of the words before ``</s>``.

Its text is that of the training images and of many more scenes drawn in words only (``text_only_scenes``): a real
LLM has read far more text than BLIP-2's image-text pairs, and this one, trained on the 3000 training scenes alone,
answered "where is" and "is there" at chance even when the caption was in its context (val split; 89% and 74% after
256 000 examples from 20 000 scenes). The text of a val, test or shifted image is never among them.
"""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from .short_training import adamw_warmup_cosine, optimise
from .unseen_scenes import unseen_scenes

VQA_PROMPT = "Question: {} Answer:"  # blip2-core's (blip2-predict --question); the recipe evaluates with it too
OPT_SHAPE = {"hidden_size": 128, "num_hidden_layers": 3, "ffn_dim": 512, "num_attention_heads": 4}


def scene_texts(captions_file: str | Path, questions_file: str | Path, annotations_file: str | Path) -> list[dict]:
    """Per training image: its captions and its (question, answer) pairs."""
    by_image: dict[str, dict[str, list]] = defaultdict(lambda: {"captions": [], "qa": []})
    for row in json.loads(Path(captions_file).read_text()):
        by_image[str(row["image_id"])]["captions"].append(row["caption"])
    questions = {q["question_id"]: q for q in json.loads(Path(questions_file).read_text())["questions"]}
    for row in json.loads(Path(annotations_file).read_text())["annotations"]:
        question = questions[row["question_id"]]
        by_image[str(question["image_id"])]["qa"].append((question["question"], row["multiple_choice_answer"]))
    return [by_image[k] for k in sorted(by_image, key=int)]


def text_only_scenes(count: int, held_out: set[tuple[str, ...]], seed: int = 0) -> list[dict]:
    """``count`` scenes of synthetic_shapes' training distribution as text only: captions and (question, answer)
    pairs, none whose captions are those of a ``held_out`` image."""
    from blip2_data.synthetic import questions

    drawn = islice(unseen_scenes("text_only_scenes", held_out, seed), count)
    return [{"captions": texts, "qa": [(q, a) for q, a, _, _ in questions(scene, rng)]} for scene, texts, rng in drawn]


def examples(scenes: list[dict], rng: random.Random) -> list[tuple[str, str, str]]:
    """(context, prompt, target) texts: every caption and every question of a scene, after one of its captions.
    Questions are prompts (not learned, as BLIP-2 masks its prompts): after ``</s>`` alone the LM writes a
    caption, never a question."""
    pairs = []
    for scene in scenes:
        for target in scene["captions"]:
            pairs.append((rng.choice(scene["captions"]), "", target))
            if rng.random() < 0.1:
                pairs.append(("", "", target))  # an unconditioned caption now and then: a plain LM of captions
        for question, answer in scene["qa"]:
            pairs.append((rng.choice(scene["captions"]), VQA_PROMPT.format(question), " " + answer))
    return pairs


def encode(tokenizer: Any, context: str, prompt: str, target: str, newline: int) -> tuple[list[int], list[int]]:
    """ids = context, </s>, prompt, target, "\\n"; labels = -100 up to the target."""
    plain = tokenizer.convert_tokens_to_ids
    context_ids = plain(tokenizer.tokenize(context)) if context else []
    prompt_ids = tokenizer(prompt)["input_ids"] if prompt else tokenizer("")["input_ids"]  # starts with </s>
    full = tokenizer(prompt + target)["input_ids"] + [newline]
    if full[: len(prompt_ids)] != prompt_ids:
        raise ValueError(f"{prompt!r} does not tokenise as a prefix of {prompt + target!r}")
    ids = context_ids + full
    labels = [-100] * (len(context_ids) + len(prompt_ids)) + full[len(prompt_ids) :]
    return ids, labels


def newline_id(tokenizer: Any) -> int:
    ids = tokenizer.convert_tokens_to_ids(tokenizer.tokenize("\n"))
    if len(ids) != 1:
        raise ValueError(f"'\\n' is {len(ids)} tokens in this vocabulary; it must be one (OPT's end of caption)")
    return ids[0]


def text_config(vocab_size: int, eos: int, shape: dict[str, int]) -> dict[str, Any]:
    """HF's OPTConfig fields; eos is "\\n", so BLIP-2's generation stops at the end of a caption as LAVIS's does."""
    return {
        "model_type": "opt",
        "architectures": ["OPTForCausalLM"],
        "vocab_size": vocab_size,
        **shape,
        "word_embed_proj_dim": shape["hidden_size"],
        "max_position_embeddings": 64,
        "activation_function": "relu",
        "do_layer_norm_before": True,
        "dropout": 0.0,
        "attention_dropout": 0.0,
        "enable_bias": True,
        "pad_token_id": 1,
        "bos_token_id": 2,
        "eos_token_id": eos,
        "torch_dtype": "float32",
    }


_LAYER_TO_HF = {
    "self_attn.q_proj.": "self_attn.q_proj.",
    "self_attn.k_proj.": "self_attn.k_proj.",
    "self_attn.v_proj.": "self_attn.v_proj.",
    "self_attn.out_proj.": "self_attn.out_proj.",
    "norm1.": "self_attn_layer_norm.",
    "norm2.": "final_layer_norm.",
    "linear1.": "fc1.",
    "linear2.": "fc2.",
}


def to_hf(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """paddlenlp OPTForCausalLM names and [in, out] Linear weights -> HF's names and [out, in]."""
    out = {}
    for key, value in state.items():
        if key == "opt.embeddings.word_embeddings.weight":
            out["model.decoder.embed_tokens.weight"] = value
        elif key == "opt.embeddings.position_embeddings.weight":
            out["model.decoder.embed_positions.weight"] = value
        elif key.startswith("opt.decoder.final_layer_norm."):
            out["model.decoder." + key[len("opt.decoder.") :]] = value
        elif key == "lm_head.decoder_weight":
            out["lm_head.weight"] = value
        elif m := re.match(r"^opt\.decoder\.layers\.(\d+)\.(.*)$", key):
            old = next((o for o in _LAYER_TO_HF if m.group(2).startswith(o)), None)
            if old is None:
                raise KeyError(f"no HF name for {key}")
            rest = _LAYER_TO_HF[old] + m.group(2)[len(old) :]
            linear = rest.endswith(".weight") and "layer_norm" not in rest
            out[f"model.decoder.layers.{m.group(1)}.{rest}"] = value.T.copy() if linear else value
        else:
            raise KeyError(f"no HF name for {key}")
    return out


def pretrain(
    tokenizer_dir: Path,
    scenes: list[dict],
    out: Path,
    *,
    steps: int = 1500,
    batch_size: int = 64,
    learning_rate: float = 2e-3,
    seed: int = 0,
    shape: dict[str, int] | None = None,
    log=print,
) -> dict[str, Any]:
    """Train on ``scenes`` (``scene_texts`` and ``text_only_scenes``), write ``out`` (config.json,
    model.safetensors, tokenizer files) and return the loss record."""
    import paddle
    from safetensors.numpy import save_file

    from blip2_core.formats.hf import llm_from_hf
    from blip2_core.loading.text_tokenizer import load_tokenizer
    from blip2_core.model.language_model import LanguageModel
    from blip2_core.model.text_config import TextConfig

    tokenizer = load_tokenizer(tokenizer_dir)
    newline = newline_id(tokenizer)
    config = text_config(len(tokenizer), newline, shape or OPT_SHAPE)
    rng = random.Random(seed)
    pairs = examples(scenes, rng)
    encoded = [encode(tokenizer, c, p, t, newline) for c, p, t in pairs]
    longest = max(len(ids) for ids, _ in encoded)
    if longest > config["max_position_embeddings"]:
        raise ValueError(f"a training text has {longest} tokens, more than the LM's 64 positions")
    log(f"LM pre-training: {len(encoded)} texts, {steps} steps of {batch_size}")

    paddle.seed(seed)
    model = LanguageModel(TextConfig.from_dict(config))
    model.train()
    optimizer, schedule = adamw_warmup_cosine(model.parameters(), learning_rate, steps, weight_decay=0.01, floor=0.05)
    order = np.random.RandomState(seed)
    losses = []
    for step in range(steps):
        batch = [encoded[i] for i in order.randint(0, len(encoded), batch_size)]
        width = max(len(ids) for ids, _ in batch)
        ids = np.full((batch_size, width), 1, dtype=np.int64)
        labels = np.full((batch_size, width), -100, dtype=np.int64)
        mask = np.zeros((batch_size, width), dtype=np.int64)
        for row, (i, lab) in enumerate(batch):
            ids[row, : len(i)], labels[row, : len(lab)], mask[row, : len(i)] = i, lab, 1
        ids_t = paddle.to_tensor(ids)
        logits, _ = model.decoder_step(model.embed(ids_t), paddle.to_tensor(mask))
        loss = paddle.nn.functional.cross_entropy(
            logits[:, :-1].reshape([-1, logits.shape[-1]]), paddle.to_tensor(labels[:, 1:].reshape([-1, 1])), ignore_index=-100
        )  # fmt: skip
        losses.append(optimise(loss, optimizer, schedule))
        if step % 100 == 0 or step == steps - 1:
            log(f"  LM step {step}: loss {losses[-1]:.4f}")

    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.numpy() for k, v in model.model.state_dict().items()}
    hf = to_hf(state)
    back = llm_from_hf(hf, "opt")  # the project's reader must give back exactly what was trained
    for key, value in state.items():
        if not np.array_equal(back["model." + key], value):
            raise AssertionError(f"{key} does not survive the HF layout round trip")
    if np.shares_memory(hf["lm_head.weight"], hf["model.decoder.embed_tokens.weight"]) or np.array_equal(
        hf["lm_head.weight"], hf["model.decoder.embed_tokens.weight"]
    ):
        del hf["lm_head.weight"]  # tied, as HF stores OPT
    save_file(hf, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    tokenizer.save_pretrained(str(out))
    for name in ("tokenizer_config.json", "special_tokens_map.json"):  # ours, as written, not paddlenlp's rewrite
        (out / name).write_text((tokenizer_dir / name).read_text())
    record = {"steps": steps, "batch_size": batch_size, "scenes": len(scenes), "texts": len(encoded)}
    record["first_loss"] = losses[0]
    record["shape"] = f"{config['num_hidden_layers']} layers of {config['hidden_size']}, vocabulary {len(tokenizer)}"
    record["last_loss"] = float(np.mean(losses[-20:]))
    (out / "pretraining.json").write_text(json.dumps(record, indent=2) + "\n")
    return record
