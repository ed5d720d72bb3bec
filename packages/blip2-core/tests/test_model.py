"""Config dialects, loading errors, labels, prompts per image, saving, and the stage-1 model."""

import dataclasses
import json
import shutil

import numpy as np
import paddle
import pytest
from safetensors.numpy import load_file

from blip2_core import Blip2Config, Blip2ForConditionalGeneration, Blip2Qformer
from blip2_core.loading.hub import ModelNotAvailableError

# The config.json of PaddleMIX's BLIP-2 README (blip2-stage2), verbatim.
PADDLEMIX_CONFIG = {
    "architectures": ["Blip2ForConditionalGeneration"],
    "vision_name_or_path": "paddlemix/blip2-stage2/eva_vit_g",
    "bridge_name_or_path": "paddlemix/blip2-stage2/Qformer",
    "vision_and_bridge_name_or_path": "paddlemix/blip2-caption-opt2.7b",
    "text_config": "facebook/opt-2.7b",
    "freeze_vit": True,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "use_decoder_only_language_model": True,
    "model_type": "blip-2",
    "paddlenlp_version": None,
    "qformer_config": {
        "add_cross_attention": True,
        "attention_probs_dropout_prob": 0.1,
        "cross_attention_freq": 2,
        "embed_dim": 256,
        "fuse": False,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": 768,
        "initializer_range": 0.02,
        "intermediate_size": 3072,
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": 512,
        "model_type": "bert",
        "num_attention_heads": 12,
        "num_hidden_layers": 12,
        "num_query_tokens": 32,
        "pad_token_id": 0,
        "paddlenlp_version": None,
        "pool_act": "tanh",
        "type_vocab_size": 2,
        "vocab_size": 30522,
        "dropout": None,
    },
    "vision_config": {
        "depth": 39,
        "drop_rate": 0,
        "embed_dim": 1408,
        "epsilon": 1e-06,
        "gradient_checkpointing": False,
        "img_size": 224,
        "mlp_ratio": 4.3637,
        "model_type": "blip_2_vision_model",
        "num_heads": 16,
        "paddlenlp_version": None,
        "patch_size": 14,
        "qkv_bias": True,
        "return_dict": True,
    },
}


def test_seed_config_reads_as_blip2_opt():
    config = Blip2Config.from_dict(PADDLEMIX_CONFIG)
    v, q = config.vision_config, config.qformer_config
    assert (v.num_layers, v.hidden_size, v.mlp_hidden_size, v.num_heads, v.image_size) == (39, 1408, 6144, 16, 224)
    assert (q.num_layers, q.hidden_size, q.cross_attention_freq, q.num_query_tokens, q.encoder_hidden_size) == (
        12,
        768,
        2,
        32,
        1408,
    )
    assert not q.has_text_input  # a stage-2 model: no word embeddings, no text FFN
    assert config.text_config is None and config.text_name_or_path == "facebook/opt-2.7b"
    assert config.vision_and_bridge_name_or_path == "paddlemix/blip2-caption-opt2.7b"
    assert Blip2Config.from_dict(PADDLEMIX_CONFIG, stage1=True).qformer_config.vocab_size == 30523  # + [DEC]


def test_num_query_tokens_is_honoured():
    values = json.loads(json.dumps(PADDLEMIX_CONFIG))
    values["qformer_config"]["num_query_tokens"] = 16
    assert Blip2Config.from_dict(values).num_query_tokens == 16


def test_hf_config_with_and_without_image_token(fixtures_dir):
    values = json.loads((fixtures_dir / "opt" / "hf" / "config.json").read_text())
    assert Blip2Config.from_dict(values).image_token_index == 99
    values.pop("image_token_index")
    values["image_token_id"] = 99  # the newer spelling
    assert Blip2Config.from_dict(values).image_token_index == 99
    values.pop("image_token_id")
    assert Blip2Config.from_dict(values).image_token_index is None


def test_our_config_round_trips(fixtures_dir):
    config = Blip2Config.from_file(fixtures_dir / "t5" / "hf" / "config.json")
    again = Blip2Config.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again.vision_config == config.vision_config and again.qformer_config == config.qformer_config
    assert again.text_config == config.text_config and again.llm_type == "t5"


def test_bad_config_names_the_file(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json: not valid JSON"):
        Blip2Config.from_file(tmp_path / "config.json")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="config.json: config.json is neither"):
        Blip2Config.from_file(tmp_path / "config.json")


@pytest.fixture(scope="module")
def opt(fixtures_dir):
    return Blip2ForConditionalGeneration.from_pretrained(fixtures_dir / "opt" / "hf")


def test_llm_is_frozen_and_the_frozen_vit_stays_in_eval(opt):
    assert all(p.stop_gradient for p in opt.language_model.parameters())
    assert all(p.stop_gradient for p in opt.vision_model.parameters())
    assert not all(p.stop_gradient for p in opt.qformer.parameters())
    opt.train()
    try:
        assert not opt.vision_model.training and opt.qformer.training
    finally:
        opt.eval()


def test_make_labels_masks_padding_and_prompt_as_lavis():
    ids = paddle.to_tensor([[1, 1, 2, 10, 11, 12], [2, 20, 21, 22, 23, 24]])
    mask = paddle.to_tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    labels = Blip2ForConditionalGeneration.make_labels(ids, mask, prompt_lengths=[2, 3])
    assert labels.numpy().tolist() == [[-100, -100, -100, -100, 11, 12], [-100, -100, -100, 22, 23, 24]]


@paddle.no_grad()
def test_training_loss_ignores_prompt_and_padding(opt, fixtures_dir):
    ref = load_file(str(fixtures_dir / "opt" / "io.safetensors"))
    pixels, ids, mask = (paddle.to_tensor(ref[k]) for k in ("pixel_values", "prompt_ids", "prompt_mask"))
    labels = Blip2ForConditionalGeneration.make_labels(ids, mask, [2, 2, 2])
    out = opt(pixels, ids, mask, labels=labels)
    logits = out.logits.numpy()[:, -ids.shape[1] :]
    lab = labels.numpy()
    terms = []
    for b in range(lab.shape[0]):
        for t in range(1, lab.shape[1]):
            if lab[b, t] != -100:
                row = logits[b, t - 1]
                terms.append(np.log(np.exp(row - row.max()).sum()) + row.max() - row[lab[b, t]])
    np.testing.assert_allclose(float(out.loss), np.mean(terms), rtol=1e-5)


@paddle.no_grad()
def test_several_prompts_per_image_reuse_its_features(opt, fixtures_dir):
    ref = load_file(str(fixtures_dir / "opt" / "io.safetensors"))
    pixels = paddle.to_tensor(ref["pixel_values"][:1])
    prompts, masks = paddle.to_tensor(ref["prompt_ids"]), paddle.to_tensor(ref["prompt_mask"])
    features = opt.get_image_features(pixels)
    together = opt.generate(image_features=features, input_ids=prompts, attention_mask=masks, max_new_tokens=4)
    for row in range(3):
        alone = opt.generate(pixels, prompts[row : row + 1], masks[row : row + 1], max_new_tokens=4)
        np.testing.assert_array_equal(together.numpy()[row, : alone.shape[1]], alone.numpy()[0])
    with pytest.raises(ValueError, match="exactly one of pixel_values, image_embeds and image_features"):
        opt.generate(pixels, prompts, masks, image_features=features)


def test_image_token_count_is_checked(opt):
    ids = paddle.to_tensor([[99, 99, 5, 6]])
    with pytest.raises(ValueError, match="8 image tokens"):
        opt(image_features=paddle.zeros([1, 8, 32]), input_ids=ids)


def test_save_and_reload_keeps_outputs_and_generation_settings(opt, fixtures_dir, tmp_path):
    opt.generation_config = dataclasses.replace(opt.generation_config, eos_token_id=(50,))
    opt.save_pretrained(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["format"] == "blip2-paddle" and config["text_config"]["model_type"] == "opt"
    again = Blip2ForConditionalGeneration.from_pretrained(tmp_path / "saved")
    assert again.generation_config.eos_token_id == (50,)
    for (name, a), b in zip(opt.state_dict().items(), again.state_dict().values()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)


def test_shape_mismatch_names_key_and_shapes(fixtures_dir, tmp_path):
    config = Blip2Config.from_file(fixtures_dir / "opt" / "hf" / "config.json")
    config.qformer_config = dataclasses.replace(config.qformer_config, intermediate_size=40)
    with pytest.raises(
        ValueError,
        match=r"shape mismatch for qformer\.layers\.0\.query_ffn\.fc1\.(bias|weight): checkpoint \((32, )?37,?\) vs model \((32, )?40,?\)",
    ):
        Blip2ForConditionalGeneration.from_pretrained(fixtures_dir / "opt" / "hf", config=config)


def test_missing_weights_are_an_error_unless_allowed_and_then_reported(fixtures_dir, tmp_path):
    hf = fixtures_dir / "opt" / "hf"
    partial = tmp_path / "partial"
    shutil.copytree(hf, partial)
    state = load_file(str(partial / "model.safetensors"))
    from blip2_core.checkpoint_io import write_safetensors
    from blip2_core.loading.pretrained import MissingWeightsError

    write_safetensors({k: v for k, v in state.items() if not k.startswith("language_projection")}, partial)
    with pytest.raises(MissingWeightsError, match=r"lacks 2 weights of the model \(language_projection.bias, "):
        Blip2ForConditionalGeneration.from_pretrained(partial)
    model = Blip2ForConditionalGeneration.from_pretrained(partial, allow_missing_weights=True)
    assert model.load_report.missing == ["language_projection.bias", "language_projection.weight"]


def test_pickles_need_trust_unless_named_directly(fixtures_dir, tmp_path, monkeypatch):
    from blip2_core.checkpoint_io import UntrustedPickleError
    from blip2_core.loading import pretrained

    config = Blip2Config.from_file(fixtures_dir / "opt" / "hf" / "config.json")
    lavis = fixtures_dir / "opt" / "lavis.pth"
    # as if a hub had resolved a name to this file: not named by the user
    monkeypatch.setattr(pretrained.hub, "resolve", lambda name, **_: lavis)
    with pytest.raises(UntrustedPickleError, match="lavis.pth"):
        Blip2ForConditionalGeneration.from_pretrained("someone/blip2-lavis", config=config)
    model = Blip2ForConditionalGeneration.from_pretrained("someone/blip2-lavis", config=config, trust_pickle=True)
    assert model.load_report.missing == []


def test_offline_hub_name_says_what_to_download():
    with pytest.raises(ModelNotAvailableError, match="Salesforce/blip2-opt-2.7b"):
        Blip2ForConditionalGeneration.from_pretrained("Salesforce/blip2-opt-2.7b")


def test_stage1_model_computes_losses_from_pixels(fixtures_dir):
    model = Blip2Qformer.from_pretrained(fixtures_dir / "stage1" / "hf")
    model.train()
    assert not model.vision_model.training
    ref = load_file(str(fixtures_dir / "stage1" / "io.safetensors"))
    pixels, ids, mask = (paddle.to_tensor(ref[k]) for k in ("pixel_values", "input_ids", "attention_mask"))
    out = model(pixels, ids, mask)
    out.loss.backward()
    assert all(p.grad is None for p in model.vision_model.parameters())
    assert float(model.qformer.query_tokens.grad.abs().sum()) > 0
    features = model.extract_features(pixels, ids, mask, mode="multimodal")
    assert features.multimodal_embeds.shape == [3, 8, 32]


def test_seed_composition_from_a_bare_vision_encoder_and_a_bridge(fixtures_dir, tmp_path, caplog):
    """vision_name_or_path + bridge_name_or_path, the vision file as EVA ships it: no prefix, one block too many."""
    from blip2_core.checkpoint_io import write_safetensors

    hf = json.loads((fixtures_dir / "stage1" / "hf" / "config.json").read_text())
    state = load_file(str(fixtures_dir / "stage1" / "hf" / "model.safetensors"))
    encoder = {
        k[len("vision_model.") :]: v
        for k, v in state.items()
        if k.startswith("vision_model.") and "post_layernorm" not in k
    }
    last = hf["vision_config"]["num_hidden_layers"] - 1
    encoder.update(
        {k.replace(f"layers.{last}.", f"layers.{last + 1}."): v for k, v in encoder.items() if f"layers.{last}." in k}
    )
    write_safetensors(encoder, tmp_path / "eva_vit")
    write_safetensors(
        {k: v for k, v in state.items() if not k.startswith("vision_model.") or "post_layernorm" in k},
        tmp_path / "qformer",
    )
    vision, qformer = hf["vision_config"], hf["qformer_config"]
    paddlemix_config = {
        "vision_name_or_path": str(tmp_path / "eva_vit"),
        "bridge_name_or_path": str(tmp_path / "qformer"),
        "freeze_vit": True,
        "vision_config": {"depth": vision["num_hidden_layers"], "embed_dim": vision["hidden_size"], "epsilon": vision["layer_norm_eps"],
                          "img_size": vision["image_size"], "mlp_ratio": vision["intermediate_size"] / vision["hidden_size"],
                          "num_heads": vision["num_attention_heads"], "patch_size": vision["patch_size"]},
        "qformer_config": {"cross_attention_freq": qformer["cross_attention_frequency"], "hidden_size": qformer["hidden_size"],
                           "intermediate_size": qformer["intermediate_size"], "max_position_embeddings": qformer["max_position_embeddings"],
                           "num_attention_heads": qformer["num_attention_heads"], "num_hidden_layers": qformer["num_hidden_layers"],
                           "num_query_tokens": hf["num_query_tokens"], "vocab_size": qformer["vocab_size"], "embed_dim": hf["image_text_hidden_size"],
                           "vision_layer_norm_eps": vision["layer_norm_eps"]},
    }  # fmt: skip
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text(json.dumps(paddlemix_config))
    with caplog.at_level("INFO"):
        model = Blip2Qformer.from_pretrained(tmp_path / "model")
    assert any(f"dropped blocks [{last + 1}]" in message for message in caplog.messages)
    assert not any(k.startswith(("vision_model.", "qformer.")) for k in model.load_report.missing)
    ref = {k: paddle.to_tensor(v) for k, v in load_file(str(fixtures_dir / "stage1" / "io.safetensors")).items()}
    itc = model.itc_scores(ref["pixel_values"], ref["input_ids"], ref["attention_mask"])
    np.testing.assert_allclose(itc.numpy(), ref["itc_similarity"].numpy(), atol=1e-4, rtol=0)


def test_clip_vit_l_models_are_refused_clearly():
    with pytest.raises(NotImplementedError, match="only EVA-ViT-g"):
        Blip2Qformer.from_pretrained("blip2/pretrain_vitL")


def cached_repo(cache, repo_id: str, files: dict) -> None:
    """A Hub repo as huggingface_hub caches it: models--org--name/{refs/main, snapshots/<commit>/...}."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / "0123456789abcdef0123456789abcdef01234567"
    snapshot.mkdir(parents=True)
    for name, source in files.items():
        shutil.copy(source, snapshot / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(snapshot.name)


def test_hub_repo_from_the_offline_cache_prefers_safetensors(fixtures_dir, tmp_path, monkeypatch):
    import os

    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    hf = fixtures_dir / "opt" / "hf"
    cached_repo(
        cache, "someone/blip2-tiny", {"config.json": hf / "config.json", "model.safetensors": hf / "model.safetensors"}
    )
    model = Blip2ForConditionalGeneration.from_pretrained("someone/blip2-tiny")
    assert model.load_report.missing == [] and model.load_report.unexpected == []
    assert os.environ["HF_HUB_OFFLINE"] == "1"

    # a repo with only a torch pickle: read only when trusted, since nobody named the file
    cached_repo(
        cache,
        "someone/blip2-pickle",
        {"config.json": hf / "config.json", "pytorch_model.bin": fixtures_dir / "opt" / "lavis.pth"},
    )
    from blip2_core.checkpoint_io import UntrustedPickleError

    with pytest.raises(UntrustedPickleError, match="pytorch_model.bin"):
        Blip2ForConditionalGeneration.from_pretrained("someone/blip2-pickle")
    model = Blip2ForConditionalGeneration.from_pretrained("someone/blip2-pickle", trust_pickle=True)
    assert model.load_report.missing == []
