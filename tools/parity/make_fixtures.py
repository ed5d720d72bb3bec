"""Write golden fixtures from the reference implementation (HF transformers, torch).

Runs in its own environment (torch + transformers 4.x; no paddle): tiny random HF BLIP-2 models,
their weights in the three layouts found in the wild, inputs, and the reference outputs. Our
paddle tests load the weights and must reproduce the outputs.

    python tools/parity/make_fixtures.py --out DIR

writes DIR/vision/*, DIR/qformer/*, DIR/stage1/*, DIR/opt/*, DIR/t5/* and DIR/instructblip/{t5,llama}/*
(``instructblip_fixtures.py``). The committed copies live in each
package's tests/fixtures (``check_fixture_drift.py`` compares the two and can refresh them).

The LAVIS and PaddleMIX files carry the key sets of the real ones, extra buffers and unused weights included
(read off LAVIS ``eva_vit.py``, ``blip2.py``, ``Qformer.py``, ``blip2_qformer.py``, ``blip2_opt.py``,
``blip2_t5.py``, PaddleMIX ``paddlemix/models/blip2/`` and ``examples/blip2/merge_weight.py``, and HF's
``convert_blip_2_original_to_pytorch.py``), so that dropping them is tested.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import transformers
from safetensors.numpy import save_file
from transformers import Blip2Config, Blip2ForImageTextRetrieval, Blip2VisionConfig, Blip2VisionModel
from transformers.models.bert.configuration_bert import BertConfig
from transformers.models.bert.modeling_bert import BertOnlyMLMHead

sys.path.insert(0, str(Path(__file__).parent.parent))
from shapes import OPT, QFORMER, T5, VISION  # noqa: E402

NUM_QUERY_TOKENS = 8
EMBED_DIM = 16
BOS = 98
TEMP = 0.1
TOKEN_TYPES = 2  # BERT's type_vocab_size, in PaddleMIX's Q-Former config


def randomize(module: torch.nn.Module, seed: int) -> None:
    """Every parameter random (LayerNorm weights near 1), including HF's zero-initialised key bias."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            noise = torch.randn(param.shape, generator=gen)
            if "norm" in name.lower() and name.endswith("weight"):
                param.copy_(1.0 + 0.1 * noise)
            else:
                param.copy_(0.08 * noise)


def numpy_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().astype(np.float32).copy() for k, v in state_dict.items()}


def save(arrays: dict[str, np.ndarray | torch.Tensor], path: Path) -> None:
    # safetensors writes the raw buffer: a strided view (a slice of a torch tensor) must be compacted.
    save_file({k: np.require(np.asarray(v), requirements="C") for k, v in arrays.items()}, str(path))


# -- the LAVIS and PaddleMIX layouts, written from HF's (the reverse of HF's conversion script) ------


def vision_hf_to_lavis(sd: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for key, value in sd.items():
        if key == "embeddings.class_embedding":
            out["cls_token"] = value
        elif key == "embeddings.position_embedding":
            out["pos_embed"] = value
        elif key.startswith("embeddings.patch_embedding."):
            out["patch_embed.proj." + key.split(".")[-1]] = value
        elif key.startswith("encoder.layers."):
            i, rest = key.split(".")[2], ".".join(key.split(".")[3:])
            block = f"blocks.{i}."
            if rest == "self_attn.qkv.bias":
                third = value.shape[0] // 3
                out[block + "attn.q_bias"] = value[:third]
                out[block + "attn.v_bias"] = value[2 * third :]
            else:
                rest = (
                    rest.replace("layer_norm1", "norm1")
                    .replace("layer_norm2", "norm2")
                    .replace("self_attn.qkv", "attn.qkv")
                    .replace("self_attn.projection", "attn.proj")
                )
                out[block + rest] = value
        # post_layernorm is LAVIS's ln_vision, outside the encoder
    return out


def vision_lavis_to_paddlemix(sd: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for key, value in sd.items():
        if key.endswith("attn.q_bias"):
            v_bias = sd[key.replace("q_bias", "v_bias")]
            out[key.replace("q_bias", "qkv.bias")] = np.concatenate([value, np.zeros_like(value), v_bias])
        elif key.endswith("attn.v_bias"):
            continue
        elif key.endswith(".weight") and value.ndim == 2:
            out[key] = value.T.copy()  # paddle Linear: [in, out]
        else:
            out[key] = value
    return out


def qformer_hf_to_lavis(sd: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for key, value in sd.items():
        if key.startswith("vision_model.encoder") or key.startswith("vision_model.embeddings"):
            continue
        if key.startswith("vision_model.post_layernorm."):
            out["ln_vision." + key.split(".")[-1]] = value
        elif key == "query_tokens":
            out[key] = value
        elif key.startswith("qformer.layernorm."):
            out["Qformer.bert.embeddings.LayerNorm." + key.split(".")[-1]] = value
        elif key.startswith("embeddings."):
            out["Qformer.bert." + key] = value
        elif key.startswith("qformer.encoder."):
            out[
                "Qformer.bert."
                + key[len("qformer.") :]
                .replace(".attention.attention.", ".attention.self.")
                .replace(".crossattention.attention.", ".crossattention.self.")
            ] = value
        elif key.startswith("vision_projection."):
            out["vision_proj." + key.split(".")[-1]] = value
        elif key.startswith("text_projection."):
            out["text_proj." + key.split(".")[-1]] = value
        elif key.startswith("itm_head."):
            out[key] = value
        else:
            raise KeyError(key)
    # A persistent buffer of LAVIS's BertEmbeddings, in every LAVIS BLIP-2 state dict (stage 1 and 2)
    out["Qformer.bert.embeddings.position_ids"] = np.arange(QFORMER["max_position_embeddings"], dtype=np.int64)[None]
    return out


def qformer_lavis_to_paddlemix(sd: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """PaddleMIX's Blip2ForConditionalGeneration state dict: the bridge under ``Qformer.``, paddle Linear weights.

    What PaddleMIX has and LAVIS has not: BERT's token-type embeddings (its Q-Former config keeps
    ``type_vocab_size``), an LM decoder Linear of its own ([hidden, vocab], never used: the logits are taken
    against the word embeddings), and ``temp`` of shape [1] on the model itself, outside the Q-Former.
    """
    rng = np.random.default_rng(seed)
    out = {}
    for key, value in sd.items():
        if key == "temp":
            out[key] = value.reshape(1)
            continue
        name = key if key.startswith("Qformer.") else "Qformer." + key
        if name == "Qformer.cls.predictions.decoder.weight":
            out[name] = (0.08 * rng.standard_normal(value.shape[::-1])).astype(np.float32)  # untied
            continue
        linear = value.ndim == 2 and key.endswith(".weight") and "embeddings" not in key
        out[name] = value.T.copy() if linear else value
    hidden = QFORMER["hidden_size"]
    token_types = (0.08 * rng.standard_normal((TOKEN_TYPES, hidden))).astype(np.float32)
    out["Qformer.bert.embeddings.token_type_embeddings.weight"] = token_types
    return out


def paddlemix_bridge(sd: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A bridge file alone (PaddleMIX's ``bridge_name_or_path``): the Q-Former module's own keys, no ``Qformer.``."""
    return {k[len("Qformer.") :]: v for k, v in sd.items() if k.startswith("Qformer.")}


def eva_clip_vision(lavis: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """EVA-CLIP's visual tower (``eva_vit_g.pth`` is cut from it): LAVIS's names plus the final norm and the CLIP
    head that BLIP-2 does not use (LAVIS's ``eva_vit.py`` comments both out and loads with strict=False)."""
    rng = np.random.default_rng(seed)
    width = VISION["hidden_size"]
    extra = {
        "norm.weight": 1.0 + 0.1 * rng.standard_normal(width),
        "norm.bias": 0.08 * rng.standard_normal(width),
        "head.weight": 0.08 * rng.standard_normal((EMBED_DIM, width)),  # torch Linear [out, in]
        "head.bias": 0.08 * rng.standard_normal(EMBED_DIM),
    }
    return dict(lavis, **{k: v.astype(np.float32) for k, v in extra.items()})


# -- fixtures -----------------------------------------------------------------------------------


def vision_fixtures(out: Path) -> None:
    torch.manual_seed(0)
    config = Blip2VisionConfig(**VISION)
    model = Blip2VisionModel(config).eval()
    randomize(model, seed=1)
    gen = torch.Generator().manual_seed(2)
    pixels = torch.randn(2, 3, 56, 56, generator=gen)
    pixels_large = torch.randn(1, 3, 84, 84, generator=gen)
    with torch.no_grad():
        base = model(pixel_values=pixels, output_hidden_states=True)
        large = model(pixel_values=pixels_large, interpolate_pos_encoding=True, output_hidden_states=True)
    io = {
        "pixel_values": pixels.numpy(),
        "pixel_values_large": pixels_large.numpy(),
        "last_hidden_state_post_layernorm": base.last_hidden_state.numpy(),
        "large_last_hidden_state": large.hidden_states[-1].numpy(),
    }
    for i, hidden in enumerate(base.hidden_states):
        io[f"hidden_states.{i}"] = hidden.numpy()
    hf = numpy_dict(model.state_dict())
    lavis = vision_hf_to_lavis(hf)
    # EVA-CLIP-g checkpoints carry one block more than BLIP-2 uses: add one to check it is dropped.
    last = VISION["num_hidden_layers"] - 1
    lavis_extra = dict(
        lavis,
        **{
            k.replace(f"blocks.{last}.", f"blocks.{last + 1}."): v
            for k, v in lavis.items()
            if k.startswith(f"blocks.{last}.")
        },
    )
    out.mkdir(parents=True, exist_ok=True)
    save(hf, out / "weights_hf.safetensors")
    save(lavis_extra, out / "weights_lavis.safetensors")  # as eva_vit_g.pth: LAVIS's names, one block more
    save(eva_clip_vision(lavis_extra, seed=6), out / "weights_eva_clip.safetensors")
    save(vision_lavis_to_paddlemix(lavis), out / "weights_paddlemix.safetensors")
    save(io, out / "io.safetensors")
    (out / "config.json").write_text(json.dumps(dict(VISION, transformers_version=transformers.__version__), indent=2))


def unilm_mask(text_mask: torch.Tensor, num_queries: int) -> torch.Tensor:
    """[B, Q+T, Q+T]: queries see queries; text sees queries and earlier (non-padding) text."""
    batch, text = text_mask.shape
    total = num_queries + text
    mask = torch.zeros(batch, total, total)
    mask[:, :num_queries, :num_queries] = 1
    mask[:, num_queries:, :num_queries] = 1
    mask[:, num_queries:, num_queries:] = torch.tril(torch.ones(text, text))[None] * text_mask[:, None, :]
    return mask


def itm_loss_on_hardest_negatives(
    model: Blip2ForImageTextRetrieval,
    image_embeds: torch.Tensor,
    input_ids: torch.Tensor,
    text_mask: torch.Tensor,
    similarity: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """LAVIS's ITM loss (``Blip2Qformer.forward``) written out, on fixed negatives instead of sampled ones.

    LAVIS draws, for each text, a negative image from softmax(sim_t2i) and, for each image, a negative text
    from softmax(sim_i2t), the positives excluded. Here each draw is the most likely one (the most similar
    other sample), so the tests can give our sampler the same choice. The batch is LAVIS's three blocks:
    (image, text), (negative image, text), (image, negative text), labels 1, 0, 0; the logits are the ITM
    head averaged over the query outputs; the loss is cross-entropy.
    """
    batch = input_ids.shape[0]
    others = similarity.masked_fill(torch.eye(batch, dtype=torch.bool), float("-inf"))  # [images, texts]
    for sims in (others, others.t()):  # a near tie would make the choice depend on rounding
        top2 = sims.topk(2, dim=1).values
        assert bool(((top2[:, 0] - top2[:, 1]) > 1e-3).all()), f"ambiguous hardest negative: {top2}"
    negative_images = others.t().argmax(1)  # for each text (a row of sim_t2i)
    negative_texts = others.argmax(1)  # for each image (a row of sim_i2t)
    images = torch.cat([image_embeds, image_embeds[negative_images], image_embeds])
    texts = torch.cat([input_ids, input_ids, input_ids[negative_texts]])
    masks = torch.cat([text_mask, text_mask, text_mask[negative_texts]])
    queries = model.query_tokens.expand(3 * batch, -1, -1)
    hidden = model.qformer(
        query_embeds=model.embeddings(input_ids=texts, query_embeds=queries),
        query_length=NUM_QUERY_TOKENS,
        attention_mask=torch.cat([torch.ones(3 * batch, NUM_QUERY_TOKENS, dtype=torch.long), masks], 1),
        encoder_hidden_states=images,
    ).last_hidden_state
    logits = model.itm_head(hidden[:, :NUM_QUERY_TOKENS]).mean(1)
    labels = torch.cat([torch.ones(batch, dtype=torch.long), torch.zeros(2 * batch, dtype=torch.long)])
    loss = -torch.log_softmax(logits, dim=-1)[torch.arange(3 * batch), labels].mean()
    return {
        "itm_negative_images": negative_images,
        "itm_negative_texts": negative_texts,
        "itm_hard_negative_logits": logits,
        "loss_itm": loss,
    }


def qformer_fixtures(out: Path) -> None:
    torch.manual_seed(0)
    config = Blip2Config(
        vision_config=VISION,
        qformer_config=QFORMER,
        num_query_tokens=NUM_QUERY_TOKENS,
        image_text_hidden_size=EMBED_DIM,
    )
    model = Blip2ForImageTextRetrieval(config).eval()
    randomize(model, seed=3)
    bert_config = BertConfig(
        vocab_size=QFORMER["vocab_size"], hidden_size=QFORMER["hidden_size"], layer_norm_eps=1e-12, hidden_act="gelu"
    )
    lm_head = BertOnlyMLMHead(bert_config).eval()
    randomize(lm_head, seed=4)
    lm_head.predictions.decoder.weight = model.embeddings.word_embeddings.weight  # tied, as in LAVIS

    gen = torch.Generator().manual_seed(5)
    batch, text_len = 3, 7
    pixels = torch.randn(batch, 3, 56, 56, generator=gen)
    input_ids = torch.randint(1, BOS, (batch, text_len), generator=gen)
    text_mask = torch.ones(batch, text_len, dtype=torch.long)
    text_mask[1, 5:] = 0
    text_mask[2, 3:] = 0
    input_ids[text_mask == 0] = 0
    itg_ids = input_ids.clone()
    itg_ids[:, 0] = BOS

    with torch.no_grad():
        vision = model.vision_model(pixel_values=pixels, output_hidden_states=True)
        raw = vision.hidden_states[-1]
        image_embeds = vision.last_hidden_state  # post_layernorm = ln_vision
        queries = model.query_tokens.expand(batch, -1, -1)
        query_out = model.qformer(query_embeds=queries, encoder_hidden_states=image_embeds).last_hidden_state
        text_out = model.qformer(
            query_embeds=model.embeddings(input_ids=input_ids), query_length=0, attention_mask=text_mask
        ).last_hidden_state
        full_mask = torch.cat([torch.ones(batch, NUM_QUERY_TOKENS, dtype=torch.long), text_mask], 1)
        multimodal = model.qformer(
            query_embeds=model.embeddings(input_ids=input_ids, query_embeds=queries),
            query_length=NUM_QUERY_TOKENS,
            attention_mask=full_mask,
            encoder_hidden_states=image_embeds,
        ).last_hidden_state
        itm = model(
            pixel_values=pixels, input_ids=input_ids, attention_mask=text_mask, use_image_text_matching_head=True
        )
        itc = model(
            pixel_values=pixels, input_ids=input_ids, attention_mask=text_mask, use_image_text_matching_head=False
        )
        itg_hidden = model.qformer(
            query_embeds=model.embeddings(input_ids=itg_ids, query_embeds=queries),
            query_length=NUM_QUERY_TOKENS,
            attention_mask=unilm_mask(text_mask, NUM_QUERY_TOKENS),
            encoder_hidden_states=image_embeds,
        ).last_hidden_state[:, NUM_QUERY_TOKENS:]
        itg_logits = lm_head(itg_hidden)
        labels = itg_ids.masked_fill(text_mask == 0, -100)
        loss_itg = torch.nn.functional.cross_entropy(
            itg_logits[:, :-1].reshape(-1, QFORMER["vocab_size"]), labels[:, 1:].reshape(-1), label_smoothing=0.1
        )
        targets = torch.arange(batch)
        sims = itc.logits_per_image / TEMP
        loss_itc = (
            torch.nn.functional.cross_entropy(sims, targets, label_smoothing=0.1)
            + torch.nn.functional.cross_entropy(sims.t(), targets, label_smoothing=0.1)
        ) / 2
        itm_reference = itm_loss_on_hardest_negatives(model, image_embeds, input_ids, text_mask, itc.logits_per_image)

    io = {
        "image_embeds_raw": raw.numpy(),
        "image_embeds_normalized": image_embeds.numpy(),
        "input_ids": input_ids.numpy(),
        "itg_input_ids": itg_ids.numpy(),
        "attention_mask": text_mask.numpy(),
        "query_output": query_out.numpy(),
        "text_output": text_out.numpy(),
        "multimodal_output": multimodal.numpy(),
        "itm_logits": itm.logits_per_image.numpy(),
        "itc_similarity": itc.logits_per_image.numpy(),
        "itg_text_hidden": itg_hidden.numpy(),
        "itg_logits": itg_logits.numpy(),
        "loss_itg": loss_itg.numpy(),
        "loss_itc": loss_itc.numpy(),
        **{k: v.numpy() for k, v in itm_reference.items()},
    }
    hf = {
        k: v
        for k, v in numpy_dict(model.state_dict()).items()
        if not k.startswith(("vision_model.encoder", "vision_model.embeddings"))
    }
    # LAVIS's Blip2Qformer state dict: its LM head's decoder is tied to the word embeddings and its bias is
    # cls.predictions.bias, but state_dict() lists both under their own names too; temp is a 0-d parameter.
    lavis = qformer_hf_to_lavis(hf)
    lavis.update({"Qformer.cls." + k: v for k, v in numpy_dict(lm_head.state_dict()).items()})
    lavis["temp"] = np.array(TEMP, dtype=np.float32)
    paddlemix = qformer_lavis_to_paddlemix(lavis, seed=7)
    out.mkdir(parents=True, exist_ok=True)
    save(hf, out / "weights_hf.safetensors")
    save(lavis, out / "weights_lavis.safetensors")
    save(paddlemix, out / "weights_paddlemix.safetensors")
    save(paddlemix_bridge(paddlemix), out / "weights_paddlemix_bridge.safetensors")
    save(io, out / "io.safetensors")
    # The whole retrieval model as HF saves it, for blip2-core's stage-1 model (pixels in).
    stage1 = out.parent / "stage1"
    model.save_pretrained(stage1 / "hf", safe_serialization=True)
    stage1_io = {
        "pixel_values": pixels,
        "input_ids": input_ids,
        "attention_mask": text_mask,
        "itm_logits": itm.logits_per_image,
        "itc_similarity": itc.logits_per_image,
    }
    save({k: v.numpy() for k, v in stage1_io.items()}, stage1 / "io.safetensors")
    # ... and whole, as LAVIS's Blip2Qformer and PaddleMIX's stage-1 model hold it (vision encoder included)
    vision = {
        k[len("vision_model.") :]: v
        for k, v in numpy_dict(model.state_dict()).items()
        if k.startswith(("vision_model.embeddings.", "vision_model.encoder."))
    }
    lavis_vision = vision_hf_to_lavis(vision)
    lavis_whole = {**{"visual_encoder." + k: v for k, v in lavis_vision.items()}, **lavis}
    torch.save({"model": {k: torch.from_numpy(v) for k, v in lavis_whole.items()}}, stage1 / "lavis.pth")
    paddlemix_vision = {"visual_encoder." + k: v for k, v in vision_lavis_to_paddlemix(lavis_vision).items()}
    (stage1 / "paddlemix").mkdir(exist_ok=True)
    save({**paddlemix_vision, **paddlemix}, stage1 / "paddlemix" / "model_state.safetensors")
    meta = dict(
        QFORMER,
        num_query_tokens=NUM_QUERY_TOKENS,
        embed_dim=EMBED_DIM,
        bos_token_id=BOS,
        vision_layer_norm_eps=VISION["layer_norm_eps"],
        transformers_version=transformers.__version__,
    )
    (out / "config.json").write_text(json.dumps(meta, indent=2))


# -- full BLIP-2 with an LLM (blip2-core) -----------------------------------------------------------

IMAGE_TOKEN = 99  # the last id of both tiny vocabularies
GEN_MAX_NEW_TOKENS = 7
# what blip2-core's test_parity.py compares, by name
GENERATIONS = {
    "greedy": dict(num_beams=1),
    "beam": dict(num_beams=3, length_penalty=1.0),
    "penalised": dict(min_new_tokens=4, repetition_penalty=1.5),
}


def stage2_reference(config_class: type, model_class: type, text_config: dict, seed: int) -> torch.nn.Module:
    """HF's stage-2 model (BLIP-2's or InstructBLIP's) at the tiny sizes, its weights randomised from ``seed``."""
    torch.manual_seed(0)
    qformer = {k: v for k, v in QFORMER.items() if k != "use_qformer_text_input"}
    config = config_class(
        vision_config=VISION,
        qformer_config=qformer,
        text_config=text_config,
        num_query_tokens=NUM_QUERY_TOKENS,
        image_token_index=IMAGE_TOKEN,
    )
    model = model_class(config).eval()
    randomize(model, seed=seed)
    with torch.no_grad():  # larger LLM weights: tokens depend on their context, so generations differ
        for name, param in model.language_model.named_parameters():
            if "norm" not in name:
                param.mul_(3.0)
    return model


def pad_prompts(prompt: torch.Tensor, prompt_mask: torch.Tensor, pad: int, decoder_only: bool) -> None:
    """Rows 1 and 2 shortened to 3 and 4 tokens, in place: left padding for a decoder-only LLM, right for T5's
    encoder."""
    prompt_len = prompt.shape[1]
    for row, length in ((1, 3), (2, 4)):
        if decoder_only:
            prompt[row, : prompt_len - length] = pad
            prompt_mask[row, : prompt_len - length] = 0
        else:
            prompt[row, length:] = pad
            prompt_mask[row, length:] = 0


def with_image_tokens(
    prompt: torch.Tensor, prompt_mask: torch.Tensor, pad: int, decoder_only: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """As HF's processor builds them: image tokens before the prompt, the padding outside both."""
    rows, masks = [], []
    for row in range(prompt.shape[0]):
        valid = prompt[row][prompt_mask[row] == 1].tolist()
        pads = [pad] * (prompt.shape[1] - len(valid))
        tokens = [IMAGE_TOKEN] * NUM_QUERY_TOKENS + valid
        rows.append(pads + tokens if decoder_only else tokens + pads)
        ones, zeros = [1] * len(tokens), [0] * len(pads)
        masks.append(zeros + ones if decoder_only else ones + zeros)
    return torch.tensor(rows), torch.tensor(masks)


def llm_fixtures(out: Path, text_config: dict, seed: int) -> None:
    from transformers import Blip2ForConditionalGeneration

    model = stage2_reference(Blip2Config, Blip2ForConditionalGeneration, text_config, seed)
    config = model.config
    decoder_only = config.use_decoder_only_language_model

    gen = torch.Generator().manual_seed(seed + 1)
    batch, prompt_len = 3, 5
    pixels = torch.randn(batch, 3, 56, 56, generator=gen)
    prompt = torch.randint(3, IMAGE_TOKEN, (batch, prompt_len), generator=gen)
    prompt_mask = torch.ones(batch, prompt_len, dtype=torch.long)
    pad = text_config["pad_token_id"]
    pad_prompts(prompt, prompt_mask, pad, decoder_only)  # different prompt lengths per sample
    if decoder_only:
        prompt[:, -prompt_len:][prompt_mask.bool() & (torch.arange(prompt_len) == 0)] = text_config["bos_token_id"]
    input_ids, attention_mask = with_image_tokens(prompt, prompt_mask, pad, decoder_only)
    labels = torch.randint(3, IMAGE_TOKEN, (batch, 4), generator=gen)
    labels[2, 3:] = -100

    with torch.no_grad():
        if decoder_only:
            out_fwd = model(pixel_values=pixels, input_ids=input_ids, attention_mask=attention_mask)
            text_labels = torch.full_like(prompt, -100)
            text_labels[:, 2:] = prompt[:, 2:]
            text_labels[prompt_mask == 0] = -100
            out_loss = model(
                pixel_values=pixels, input_ids=input_ids, attention_mask=attention_mask, labels=text_labels
            )
            loss_labels = text_labels
        else:
            out_fwd = model(pixel_values=pixels, input_ids=input_ids, attention_mask=attention_mask, labels=labels)
            out_loss = out_fwd
            loss_labels = labels
        generated = {
            name: model.generate(
                pixel_values=pixels,
                input_ids=input_ids,
                attention_mask=attention_mask,
                max_new_tokens=GEN_MAX_NEW_TOKENS,
                do_sample=False,
                **settings,
            )
            for name, settings in GENERATIONS.items()
        }
        image_features = model.get_image_features(pixels)
    # HF returns prompt + new tokens for decoder-only models, the decoder start first for encoder-decoder ones
    start = input_ids.shape[1] if decoder_only else 1
    generated = {name: ids[:, start:] for name, ids in generated.items()}
    io = {
        "pixel_values": pixels,
        "prompt_ids": prompt,
        "prompt_mask": prompt_mask,
        "input_ids_with_image_tokens": input_ids,
        "attention_mask_with_image_tokens": attention_mask,
        "labels": loss_labels,
        "logits": out_fwd.logits,
        "loss": out_loss.loss,
        **generated,
        "language_model_inputs": image_features if isinstance(image_features, torch.Tensor) else image_features[0],
    }
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out / "hf", safe_serialization=True)
    write_other_layouts(model, out, text_config)
    save({k: v.detach().numpy() for k, v in io.items()}, out / "io.safetensors")
    (out / "meta.json").write_text(
        json.dumps(dict(transformers_version=transformers.__version__, max_new_tokens=GEN_MAX_NEW_TOKENS))
    )


def write_other_layouts(model, out: Path, text_config: dict) -> None:
    """The same weights as LAVIS saves them (.pth, torch.save) and as PaddleMIX lays them out, its LLM apart.

    lavis.pth holds the Blip2OPT / Blip2T5 state dict under "model": HF's keys renamed back, plus BERT's
    position-id buffer (HF's conversion script finds exactly that one key unexpected). LAVIS's released files
    hold the trained subset of these keys.

    The PaddleMIX copy is PaddleMIX's ``vision_and_bridge`` file: ``visual_encoder.*`` and ``Qformer.*``
    with the stage-2 Q-Former's leftovers (position ids, token-type embeddings). It is safetensors (no paddle
    here): the tests re-save it as model_state.pdparams with paddle.save, next to a PaddleMIX-style config.json that
    names the LLM directory written here (``llm/``).
    """
    hf = numpy_dict(model.state_dict())
    llm_name = "opt" if text_config["model_type"] == "opt" else "t5"
    vision = {
        k[len("vision_model.") :]: v
        for k, v in hf.items()
        if k.startswith("vision_model.") and "post_layernorm" not in k
    }
    bridge = {k: v for k, v in hf.items() if k.startswith(("qformer.", "query_tokens", "vision_model.post_layernorm"))}
    lavis = {"visual_encoder." + k: v for k, v in vision_hf_to_lavis(vision).items()}
    lavis.update(qformer_hf_to_lavis(bridge))
    lavis[f"{llm_name}_proj.weight"] = hf["language_projection.weight"]
    lavis[f"{llm_name}_proj.bias"] = hf["language_projection.bias"]
    llm = {k[len("language_model.") :]: v for k, v in hf.items() if k.startswith("language_model.")}
    lavis.update({f"{llm_name}_model.{k}": v for k, v in llm.items()})
    torch.save({"model": {k: torch.from_numpy(v) for k, v in lavis.items()}, "epoch": 3}, out / "lavis.pth")

    paddlemix = {"visual_encoder." + k: v for k, v in vision_lavis_to_paddlemix(vision_hf_to_lavis(vision)).items()}
    paddlemix.update(qformer_lavis_to_paddlemix(qformer_hf_to_lavis(bridge), seed=13))
    paddlemix["Qformer.language_projection.weight"] = hf["language_projection.weight"].T.copy()
    paddlemix["Qformer.language_projection.bias"] = hf["language_projection.bias"]
    (out / "paddlemix").mkdir(exist_ok=True)
    save(paddlemix, out / "paddlemix" / "vision_and_bridge.safetensors")
    model.language_model.save_pretrained(out / "llm", safe_serialization=True)


def main_with_llms(out: Path) -> None:
    llm_fixtures(out / "opt", OPT, seed=11)
    llm_fixtures(out / "t5", T5, seed=12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="directory to write the fixtures into")
    args = parser.parse_args()
    vision_fixtures(args.out / "vision")
    qformer_fixtures(args.out / "qformer")
    main_with_llms(args.out)
    from instructblip_fixtures import main_instructblip  # imports this module's helpers

    main_instructblip(args.out)
    print(f"fixtures written to {args.out} (transformers {transformers.__version__}, torch {torch.__version__})")


if __name__ == "__main__":
    main()
