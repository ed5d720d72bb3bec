"""InstructBLIP's checkpoint layouts on key sets with the real names (tiny sizes): HF's
``InstructBlipForConditionalGeneration`` and LAVIS's ``blip2_t5_instruct`` / ``blip2_vicuna_instruct``, whole and as
LAVIS releases them (``*_trimmed.pth``: only the trained Q-Former side; the ViT and the LLM come from elsewhere)."""

import json

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from blip2_core.checkpoint_io import read_state_dict
from blip2_core.formats import detect_layout
from blip2_instructblip import InstructBlipConfig, InstructBlipForConditionalGeneration

# Names read off HF's modeling_instructblip.py (InstructBlipQFormerEmbeddings: word_embeddings, position_embeddings,
# layernorm; every layer's intermediate/output beside intermediate_query/output_query) and LAVIS's
# blip2_*_instruct.py (Qformer.bert with its text embeddings kept, no Qformer.cls; t5_proj / llm_proj).
HF_KEYS = {
    "qformer.embeddings.word_embeddings.weight",
    "qformer.embeddings.position_embeddings.weight",
    "qformer.embeddings.layernorm.weight",
    "qformer.encoder.layer.0.intermediate.dense.weight",
    "qformer.encoder.layer.0.output.LayerNorm.weight",
    "qformer.encoder.layer.0.intermediate_query.dense.weight",
    "query_tokens",
    "language_projection.weight",
}
LAVIS_KEYS = {
    "Qformer.bert.embeddings.word_embeddings.weight",
    "Qformer.bert.embeddings.position_embeddings.weight",
    "Qformer.bert.embeddings.LayerNorm.weight",
    "Qformer.bert.embeddings.position_ids",
    "Qformer.bert.encoder.layer.0.intermediate.dense.weight",
    "Qformer.bert.encoder.layer.0.output_query.dense.weight",
    "ln_vision.weight",
    "query_tokens",
}
LLM_KEYS = {
    "t5": ("language_model.shared.weight", "t5_proj.weight", "t5_model.shared.weight"),
    "llama": ("language_model.model.layers.0.mlp.gate_proj.weight", "llm_proj.weight", "llm_model.lm_head.weight"),
}
# What LAVIS's trimmed release files keep: what InstructBLIP trains (the frozen ViT and LLM are left out)
TRAINED = ("Qformer.", "query_tokens", "ln_vision.", "t5_proj.", "llm_proj.")


@pytest.mark.parametrize("llm", ["t5", "llama"])
def test_fixture_key_sets_are_the_real_ones(llm, fixtures_dir):
    hf = set(load_file(str(fixtures_dir / llm / "hf" / "model.safetensors")))
    lavis = set(read_state_dict(fixtures_dir / llm / "lavis.pth", trust_pickle=True))
    hf_llm, lavis_proj, lavis_llm = LLM_KEYS[llm]
    assert HF_KEYS | {hf_llm} <= hf
    assert LAVIS_KEYS | {lavis_proj, lavis_llm} <= lavis
    assert not any(k.startswith("Qformer.cls.") for k in lavis)  # InstructBLIP drops the Q-Former's LM head
    assert detect_layout(dict.fromkeys(hf, np.zeros(1))) == "hf"
    assert detect_layout(dict.fromkeys(lavis, np.zeros(1))) == "lavis"


def trimmed(fixtures_dir, llm, tmp_path):
    whole = read_state_dict(fixtures_dir / llm / "lavis.pth", trust_pickle=True)
    path = tmp_path / "trimmed.safetensors"
    save_file({k: np.ascontiguousarray(v) for k, v in whole.items() if k.startswith(TRAINED)}, str(path))
    return path


def llm_directory(fixtures_dir, llm, tmp_path):
    """The LLM alone as its own repo holds it (HF names, its config.json): LAVIS's llm_repo / t5_model."""
    hf = load_file(str(fixtures_dir / llm / "hf" / "model.safetensors"))
    directory = tmp_path / "llm"
    directory.mkdir()
    prefix = "language_model."
    save_file(
        {k[len(prefix) :]: v for k, v in hf.items() if k.startswith(prefix)}, str(directory / "model.safetensors")
    )
    text = json.loads((fixtures_dir / llm / "hf" / "config.json").read_text())["text_config"]
    (directory / "config.json").write_text(json.dumps(text))
    return directory


@pytest.mark.parametrize("llm", ["t5", "llama"])
def test_lavis_trimmed_file_reports_the_frozen_parts_missing(llm, fixtures_dir, tmp_path):
    config = InstructBlipConfig.from_file(fixtures_dir / llm / "hf" / "config.json")
    model = InstructBlipForConditionalGeneration.from_pretrained(
        trimmed(fixtures_dir, llm, tmp_path), config=config, allow_missing_weights=True
    )
    report = model.load_report
    assert report.unexpected == []  # the position-id buffer is dropped, nothing else is left over
    assert report.missing and all(k.startswith(("vision_model.", "language_model.")) for k in report.missing)
    assert any(k.startswith("vision_model.") for k in report.missing)
    assert any(k.startswith("language_model.") for k in report.missing)


@pytest.mark.parametrize("llm", ["t5", "llama"])
def test_lavis_trimmed_file_with_its_llm_repo_lacks_only_the_vit(llm, fixtures_dir, tmp_path):
    config = InstructBlipConfig.from_file(fixtures_dir / llm / "hf" / "config.json")
    model = InstructBlipForConditionalGeneration.from_pretrained(
        trimmed(fixtures_dir, llm, tmp_path),
        config=config,
        text_name_or_path=str(llm_directory(fixtures_dir, llm, tmp_path)),
        allow_missing_weights=True,
    )
    assert model.load_report.unexpected == []
    assert model.load_report.missing and all(k.startswith("vision_model.") for k in model.load_report.missing)


def test_a_missing_weight_is_refused_without_allow_missing_weights(fixtures_dir, tmp_path):
    from blip2_core.loading.pretrained import MissingWeightsError

    config = InstructBlipConfig.from_file(fixtures_dir / "t5" / "hf" / "config.json")
    with pytest.raises(MissingWeightsError, match="lacks .* weights of the model"):
        InstructBlipForConditionalGeneration.from_pretrained(trimmed(fixtures_dir, "t5", tmp_path), config=config)


def test_hf_config_turns_the_qformer_text_parts_on(fixtures_dir):
    config = InstructBlipConfig.from_file(fixtures_dir / "llama" / "hf" / "config.json")
    assert config.qformer_text_input and config.qformer_config.has_text_input
    assert config.qformer_config.bos_token_id == config.qformer_config.vocab_size - 1  # [DEC], the last id
    assert config.text_config.model_type == "llama" and config.text_config.num_key_value_heads == 2
    again = InstructBlipConfig.from_dict(config.to_dict())
    assert again.to_dict() == config.to_dict() and config.to_dict()["model_type"] == "instructblip"


def test_blip2s_config_reader_refuses_an_instructblip_config_naming_the_class(fixtures_dir):
    from blip2_core import Blip2Config

    with pytest.raises(ValueError, match="InstructBlipForConditionalGeneration"):
        Blip2Config.from_file(fixtures_dir / "t5" / "hf" / "config.json")
