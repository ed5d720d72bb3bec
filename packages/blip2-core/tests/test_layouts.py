"""Checkpoints as LAVIS and PaddleMIX ship them in parts: a vision encoder alone (``eva_vit_g.pth``, PaddleMIX's
``eva_vit_g``), a bridge alone (PaddleMIX's ``Qformer``, keys without the ``Qformer.`` prefix), whole PaddleMIX
checkpoints with their LLM, and the keys of those files that no part of our model uses."""

import json
import shutil

import numpy as np
import paddle
import pytest
from safetensors.numpy import load_file
from tiny_checkpoints import paddlemix_config, save_pdparams

from blip2_core import Blip2ForConditionalGeneration
from blip2_core.checkpoint_io import read_state_dict, write_safetensors
from blip2_core.cli.merge import main as merge_main
from blip2_core.formats import as_full_checkpoint, convert_state_dict, detect_layout

ATOL = 1e-4
VISION_HEADS = 4  # tools/shapes.py


def whole(fixtures_dir, layout):
    """The OPT fixture's weights as LAVIS (blip2_opt .pth) and PaddleMIX (vision_and_bridge) lay them out."""
    if layout == "lavis":
        return read_state_dict(fixtures_dir / "opt" / "lavis.pth", trust_pickle=True)
    return load_file(str(fixtures_dir / "opt" / "paddlemix" / "vision_and_bridge.safetensors"))


def part(state, prefix):
    """One part of a whole checkpoint as it is shipped alone: its keys with the prefix removed."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def reference(fixtures_dir):
    return {k: paddle.to_tensor(v) for k, v in load_file(str(fixtures_dir / "opt" / "io.safetensors")).items()}


def assert_matches_reference(model, fixtures_dir):
    ref = reference(fixtures_dir)
    with paddle.no_grad():
        features = model.get_image_features(ref["pixel_values"]).numpy()
        logits = model(
            ref["pixel_values"], ref["input_ids_with_image_tokens"], ref["attention_mask_with_image_tokens"]
        ).logits.numpy()
    np.testing.assert_allclose(features, ref["language_model_inputs"].numpy(), atol=ATOL, rtol=0)
    valid = ref["attention_mask_with_image_tokens"].numpy().astype(bool)  # padded positions are never read
    np.testing.assert_allclose(logits[valid], ref["logits"].numpy()[valid], atol=ATOL, rtol=0)


# -- detection ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["lavis", "paddlemix"])
def test_a_vision_encoder_alone_is_recognised(layout, fixtures_dir):
    """eva_vit_g.pth (LAVIS) and PaddleMIX's eva_vit_g: the encoder's keys, with or without ``visual_encoder.``."""
    state = whole(fixtures_dir, layout)
    expected = {
        k: v
        for k, v in convert_state_dict(state, num_heads=VISION_HEADS, llm_type="opt").items()
        if k.startswith("vision_")
    }
    for alone in (part(state, "visual_encoder."), {k: v for k, v in state.items() if k.startswith("visual_encoder.")}):
        assert detect_layout(as_full_checkpoint(alone)) == layout
        converted = convert_state_dict(alone, num_heads=VISION_HEADS, llm_type="opt")
        assert sorted(converted) == sorted(expected)
        for key, value in expected.items():
            np.testing.assert_array_equal(converted[key], value)


def test_a_bare_paddlemix_bridge_is_recognised(fixtures_dir):
    """PaddleMIX loads a bridge file into its Q-Former module, so its keys carry no ``Qformer.`` prefix."""
    state = whole(fixtures_dir, "paddlemix")
    bridge = part(state, "Qformer.")
    assert "query_tokens" in bridge and "bert.embeddings.token_type_embeddings.weight" in bridge
    assert detect_layout(as_full_checkpoint(bridge)) == "paddlemix"
    expected = {
        k: v
        for k, v in convert_state_dict(state, num_heads=VISION_HEADS, llm_type="opt").items()
        if not k.startswith("vision_")
    }
    converted = convert_state_dict(bridge, num_heads=VISION_HEADS, llm_type="opt")
    assert sorted(converted) == sorted(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(converted[key], value)


def test_real_stage2_keys_no_part_uses_are_dropped(fixtures_dir):
    """LAVIS's BERT position-id buffer; PaddleMIX's too, and its token-type embeddings."""
    lavis, paddlemix = whole(fixtures_dir, "lavis"), whole(fixtures_dir, "paddlemix")
    assert "Qformer.bert.embeddings.position_ids" in lavis
    assert {"Qformer.bert.embeddings.position_ids", "Qformer.bert.embeddings.token_type_embeddings.weight"} <= set(
        paddlemix
    )
    for state in (lavis, paddlemix):
        converted = convert_state_dict(state, num_heads=VISION_HEADS, llm_type="opt")
        assert not any("position_ids" in k or "token_type" in k for k in converted)


# -- the parts composed ----------------------------------------------------------------------------------


@pytest.mark.parametrize("vision_layout", ["lavis", "paddlemix"])
def test_blip2_merge_takes_an_encoder_alone_and_a_bare_bridge(vision_layout, fixtures_dir, tmp_path, capsys):
    """PaddleMIX's merge_weight.py workflow: ``--vision eva_vit_g --bridge Qformer --llm ...``."""
    encoder = tmp_path / "eva_vit_g"
    write_safetensors(part(whole(fixtures_dir, vision_layout), "visual_encoder."), encoder)
    bridge = save_pdparams(part(whole(fixtures_dir, "paddlemix"), "Qformer."), tmp_path / "Qformer")
    shutil.copy(fixtures_dir / "opt" / "hf" / "config.json", bridge / "config.json")  # the sizes
    merged = tmp_path / "merged"
    args = ["--vision", str(encoder), "--bridge", str(bridge), "--llm", str(fixtures_dir / "opt" / "llm")]
    assert merge_main([*args, "--save", str(merged)]) == 0, capsys.readouterr().err
    model = Blip2ForConditionalGeneration.from_pretrained(merged)
    assert model.load_report.missing == [] and model.load_report.unexpected == []
    assert_matches_reference(model, fixtures_dir)


def test_paddlemix_config_composes_an_eva_clip_encoder_and_a_bare_bridge(fixtures_dir, tmp_path):
    """``vision_name_or_path`` + ``bridge_name_or_path`` as PaddleMIX's own config.json names them; the encoder an
    EVA-CLIP tower (LAVIS's names, torch's Linear weights) whose extra block is dropped and whose final norm and
    CLIP head are reported unused."""
    encoder = part(whole(fixtures_dir, "lavis"), "visual_encoder.")
    last = max(int(k.split(".")[1]) for k in encoder if k.startswith("blocks."))
    width = encoder["cls_token"].shape[-1]
    rng = np.random.default_rng(0)
    eva_clip = {
        **encoder,
        **{k.replace(f"blocks.{last}.", f"blocks.{last + 1}."): v for k, v in encoder.items() if f".{last}." in k},
        "norm.weight": np.ones(width, np.float32),
        "norm.bias": np.zeros(width, np.float32),
        "head.weight": rng.standard_normal((16, width)).astype(np.float32),  # torch Linear [out, in]
        "head.bias": np.zeros(16, np.float32),
    }
    vision_dir = tmp_path / "eva_vit_g"
    write_safetensors(eva_clip, vision_dir)
    bridge_dir = save_pdparams(part(whole(fixtures_dir, "paddlemix"), "Qformer."), tmp_path / "Qformer")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    config = paddlemix_config(fixtures_dir, vision_name_or_path=vision_dir, bridge_name_or_path=bridge_dir)
    (model_dir / "config.json").write_text(json.dumps(config))
    model = Blip2ForConditionalGeneration.from_pretrained(model_dir)
    assert model.load_report.missing == []
    assert sorted(model.load_report.unexpected) == [
        "vision_model.head.bias",
        "vision_model.head.weight",
        "vision_model.norm.bias",
        "vision_model.norm.weight",
    ]
    assert_matches_reference(model, fixtures_dir)


def test_a_whole_paddlemix_checkpoints_llm_is_left_out_when_the_llm_comes_from_elsewhere(fixtures_dir, tmp_path):
    """merge_weight.py --llm_path writes ``language_model.*`` (paddlenlp's names) next to the vision encoder and
    the bridge; merged with ``--llm``, the named LLM is the one used, not the checkpoint's."""
    reference_model = Blip2ForConditionalGeneration.from_pretrained(fixtures_dir / "opt" / "hf")
    language_model = {
        "language_model." + k: v.numpy() + 1.0  # other values than the LLM named below
        for k, v in reference_model.language_model.model.state_dict().items()
    }
    state = {**whole(fixtures_dir, "paddlemix"), **language_model}
    full = save_pdparams(state, tmp_path / "blip2")
    shutil.copy(fixtures_dir / "opt" / "hf" / "config.json", full / "config.json")
    merged = tmp_path / "merged"
    args = ["--vision", str(full), "--bridge", str(full), "--llm", str(fixtures_dir / "opt" / "llm")]
    assert merge_main([*args, "--save", str(merged)]) == 0
    assert not any(k.startswith("language_model.") for k in read_state_dict(merged))
    model = Blip2ForConditionalGeneration.from_pretrained(merged)
    assert model.load_report.missing == [] and model.load_report.unexpected == []
    assert_matches_reference(model, fixtures_dir)
