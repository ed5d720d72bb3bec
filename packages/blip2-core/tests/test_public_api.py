"""The public API says what it is: typed text config, one meaning of ``config``, loading leaves inputs alone."""

import copy
import json

import pytest

from blip2_core import Blip2Config, Blip2ForConditionalGeneration, Blip2Qformer
from blip2_core.model.text_config import TextConfig


def test_text_config_fills_hf_token_defaults_and_round_trips(fixtures_dir):
    hf = json.loads((fixtures_dir / "opt" / "hf" / "config.json").read_text())["text_config"]
    text = TextConfig.from_dict(hf)
    # HF's config.json leaves out OPTConfig's defaults: pad 1, bos 2, eos 2
    assert "pad_token_id" not in hf and (text.pad_token_id, text.bos_token_id, text.eos_token_id) == (1, 2, 2)
    assert text.width == hf["hidden_size"] and text.is_decoder_only
    again = text.to_dict()
    assert {k: v for k, v in again.items() if k in hf} == hf  # nothing the file said is lost or changed
    assert "d_model" not in again  # T5's fields stay out of an OPT config

    t5 = TextConfig.from_dict(json.loads((fixtures_dir / "t5" / "hf" / "config.json").read_text())["text_config"])
    assert (t5.pad_token_id, t5.eos_token_id, t5.decoder_start_token_id) == (0, 1, 0)
    assert t5.width == 32 and not t5.is_decoder_only and t5.dense_act_fn == "gelu"


def test_text_config_errors_say_what_is_wrong():
    with pytest.raises(ValueError, match="unsupported language model type 'gpt2'"):
        TextConfig.from_dict({"model_type": "gpt2", "vocab_size": 10})
    with pytest.raises(ValueError, match="the llama text_config lacks hidden_size"):
        TextConfig.from_dict({"model_type": "llama", "vocab_size": 10})
    with pytest.raises(ValueError, match="the t5 text_config lacks d_kv, d_ff"):
        TextConfig.from_dict({"model_type": "t5", "vocab_size": 10, "d_model": 8, "num_layers": 1, "num_heads": 2})


def test_both_models_mean_the_whole_blip2_config_by_config(fixtures_dir):
    stage2 = Blip2ForConditionalGeneration.from_pretrained(fixtures_dir / "opt" / "hf")
    stage1 = Blip2Qformer.from_pretrained(fixtures_dir / "stage1" / "hf")
    for model in (stage2, stage1):
        assert isinstance(model.config, Blip2Config) and model.load_report is not None
    assert stage2.load_report.missing == [] and "temp" in stage1.load_report.missing  # HF's ITM file has none
    assert isinstance(stage2.config.text_config, TextConfig)
    # a model built in code has no load report yet
    assert Blip2Qformer(stage1.config).load_report is None


def test_loading_leaves_the_callers_config_as_it_was(fixtures_dir):
    config = Blip2Config.from_file(fixtures_dir / "opt" / "hf" / "config.json")
    config.text_config = None
    config.text_name_or_path = None
    before = copy.deepcopy(config)
    model = Blip2ForConditionalGeneration.from_pretrained(
        fixtures_dir / "opt" / "hf", config=config, text_name_or_path=str(fixtures_dir / "opt" / "llm")
    )
    assert model.config.text_name_or_path == str(fixtures_dir / "opt" / "llm") and model.config.text_config
    assert config == before and config.text_config is None and config.text_name_or_path is None
