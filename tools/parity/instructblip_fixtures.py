"""Golden fixtures of InstructBLIP (blip2-instructblip) from HF transformers' InstructBlipForConditionalGeneration.

Called by make_fixtures.py (reference venv: torch + transformers, no paddle); writes DIR/instructblip/t5 and
DIR/instructblip/llama: the HF directory, the same weights as LAVIS's ``blip2_t5_instruct`` /
``blip2_vicuna_instruct`` state dict (``lavis.pth``), inputs with the instruction for the Q-Former and the LLM,
and the reference outputs (logits, loss, greedy / beam / penalised generations, the visual tokens). For the
LLaMA model the logits are also computed in float64, so a test can tell our error from HF's own float32 error.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import torch
import transformers
from make_fixtures import (
    GEN_MAX_NEW_TOKENS,
    GENERATIONS,
    IMAGE_TOKEN,
    numpy_dict,
    pad_prompts,
    qformer_hf_to_lavis,
    save,
    stage2_reference,
    vision_hf_to_lavis,
    with_image_tokens,
)
from shapes import LLAMA, QFORMER, T5

QFORMER_TEXT_LEN = 6
DEC = QFORMER["vocab_size"] - 1  # the [DEC] id HF's InstructBLIP Q-Former vocabulary ends with


def build(text_config: dict, seed: int):
    from transformers import InstructBlipConfig, InstructBlipForConditionalGeneration

    return stage2_reference(InstructBlipConfig, InstructBlipForConditionalGeneration, text_config, seed)


def inputs(config, text_config: dict, seed: int) -> dict[str, torch.Tensor]:
    """Pixels, the instruction in Q-Former ids (right-padded) and in LLM ids with the image tokens, as HF's
    processor lays them out (decoder-only: left padding; T5: right padding), and labels."""
    decoder_only = config.use_decoder_only_language_model
    gen = torch.Generator().manual_seed(seed + 1)
    batch, prompt_len = 3, 5
    pixels = torch.randn(batch, 3, 56, 56, generator=gen)
    qformer_ids = torch.randint(1, DEC, (batch, QFORMER_TEXT_LEN), generator=gen)
    qformer_mask = torch.ones(batch, QFORMER_TEXT_LEN, dtype=torch.long)
    qformer_mask[1, 4:] = 0
    qformer_mask[2, 2:] = 0
    qformer_ids[qformer_mask == 0] = 0
    pad = text_config["pad_token_id"]
    prompt = torch.randint(3, IMAGE_TOKEN, (batch, prompt_len), generator=gen)
    prompt_mask = torch.ones(batch, prompt_len, dtype=torch.long)
    pad_prompts(prompt, prompt_mask, pad, decoder_only)
    if decoder_only:  # the LLaMA tokenizer starts every prompt with its BOS
        first = prompt_mask.bool() & (prompt_mask.cumsum(1) == 1)
        prompt[first] = text_config["bos_token_id"]
    input_ids, attention_mask = with_image_tokens(prompt, prompt_mask, pad, decoder_only)
    if decoder_only:  # LAVIS's targets: the prompt's last tokens, padding never
        labels = torch.full_like(input_ids, -100)
        labels[:, -2:] = input_ids[:, -2:]
    else:
        labels = torch.randint(3, IMAGE_TOKEN, (batch, 4), generator=gen)
        labels[2, 3:] = -100
    return dict(
        pixel_values=pixels,
        qformer_input_ids=qformer_ids,
        qformer_attention_mask=qformer_mask,
        prompt_ids=prompt,
        prompt_mask=prompt_mask,
        input_ids_with_image_tokens=input_ids,
        attention_mask_with_image_tokens=attention_mask,
        labels=labels,
    )


def reference_outputs(model, io: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    args = dict(
        pixel_values=io["pixel_values"],
        qformer_input_ids=io["qformer_input_ids"],
        qformer_attention_mask=io["qformer_attention_mask"],
        input_ids=io["input_ids_with_image_tokens"],
        attention_mask=io["attention_mask_with_image_tokens"],
    )
    decoder_only = model.config.use_decoder_only_language_model
    with torch.no_grad():
        out = model(**args, labels=io["labels"])
        generated = {
            name: model.generate(**args, max_new_tokens=GEN_MAX_NEW_TOKENS, do_sample=False, **settings)
            for name, settings in GENERATIONS.items()
        }
        features = model.get_image_features(io["pixel_values"], io["qformer_input_ids"], io["qformer_attention_mask"])
        double = copy.deepcopy(model).double()
        logits64 = double(**{**args, "pixel_values": io["pixel_values"].double()}, labels=io["labels"]).logits
    # HF returns prompt + new tokens for decoder-only models, the decoder start first for encoder-decoder ones
    start = io["input_ids_with_image_tokens"].shape[1] if decoder_only else 1
    return {
        "logits": out.logits,
        "logits_float64": logits64,
        "loss": out.loss,
        "language_model_inputs": features if isinstance(features, torch.Tensor) else features[0],
        **{name: ids[:, start:] for name, ids in generated.items()},
    }


def lavis_state_dict(model, text_config: dict) -> dict[str, np.ndarray]:
    """The weights as LAVIS's Blip2T5Instruct / Blip2VicunaInstruct hold them (their state_dict): visual_encoder,
    ln_vision, Qformer.bert (word and position embeddings kept: qformer_text_input; no cls head), query_tokens,
    t5_proj + t5_model (T5) or llm_proj + llm_model (Vicuna)."""
    hf = numpy_dict(model.state_dict())
    vision = {
        k[len("vision_model.") :]: v
        for k, v in hf.items()
        if k.startswith("vision_model.") and "post_layernorm" not in k
    }
    bridge = {}
    for key, value in hf.items():
        if key.startswith("qformer.embeddings.layernorm."):
            bridge["qformer.layernorm." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("qformer.embeddings."):
            bridge[key[len("qformer.") :]] = value  # embeddings.word_embeddings / position_embeddings
        elif key.startswith(("qformer.", "query_tokens", "vision_model.post_layernorm")):
            bridge[key] = value
    lavis = {"visual_encoder." + k: v for k, v in vision_hf_to_lavis(vision).items()}
    lavis.update(qformer_hf_to_lavis(bridge))
    prefix = "t5" if text_config["model_type"] == "t5" else "llm"
    lavis[f"{prefix}_proj.weight"] = hf["language_projection.weight"]
    lavis[f"{prefix}_proj.bias"] = hf["language_projection.bias"]
    llm = {k[len("language_model.") :]: v for k, v in hf.items() if k.startswith("language_model.")}
    lavis.update({f"{prefix}_model.{k}": v for k, v in llm.items()})
    return lavis


def instructblip_fixture(out: Path, text_config: dict, seed: int) -> None:
    model = build(text_config, seed)
    io = inputs(model.config, text_config, seed)
    io.update(reference_outputs(model, io))
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out / "hf", safe_serialization=True)
    lavis = lavis_state_dict(model, text_config)
    torch.save({"model": {k: torch.from_numpy(v) for k, v in lavis.items()}}, out / "lavis.pth")
    arrays = {k: v.detach().numpy() for k, v in io.items()}
    arrays["logits_float64"] = arrays["logits_float64"].astype(np.float64)
    save(arrays, out / "io.safetensors")
    (out / "meta.json").write_text(
        json.dumps(dict(transformers_version=transformers.__version__, max_new_tokens=GEN_MAX_NEW_TOKENS))
    )


def main_instructblip(out: Path) -> None:
    instructblip_fixture(out / "instructblip" / "t5", T5, seed=21)
    instructblip_fixture(out / "instructblip" / "llama", LLAMA, seed=22)
