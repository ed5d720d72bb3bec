"""blip2-predict checks its decoding settings against the model before decoding: exit 2 with the limit named."""

import json

import pytest

from blip2_core.cli.predict import main as predict_main


def test_predict_refuses_settings_the_model_cannot_run_with_exit_2(model_dir, images, tmp_path, capsys):
    """The tiny OPT has 64 positions for its 8 visual tokens, the prompt and the new tokens: settings past them
    (or min > max) are refused before decoding, in the command's own flags, not a paddle index error."""
    cases = [
        (["--min-new-tokens", "64"], "--min-new-tokens (64) must be <= --max-new-tokens (30)"),
        (["--max-new-tokens", "64"], "+ --max-new-tokens (64) exceed the LLM's 64 positions"),
        (["--prompt", "a " * 250], "exceed the LLM's 64 positions: shorten the prompt"),
        (["--question", "what is it " * 45], "exceed the LLM's 64 positions: shorten the question"),
        (["--num-beams", "0"], "--num-beams must be >= 1, got 0"),
    ]
    for flags, message in cases:
        for output in ([], ["--output", str(tmp_path / "out.jsonl")]):
            assert predict_main(["--model", str(model_dir), "--image", images[0], *flags, *output]) == 2, flags
            err = capsys.readouterr().err
            assert message in err and "Traceback" not in err, err
    assert not (tmp_path / "out.jsonl").exists() or (tmp_path / "out.jsonl").read_bytes() == b""


def test_a_t5_llm_has_no_position_limit_but_the_rest_is_checked(fixtures_dir, tmp_path):
    from tiny_checkpoints import copy_with_wordpiece_tokenizer

    from blip2_core.inference.predictor import GenerationSettings, Predictor

    config = json.loads((fixtures_dir / "t5" / "hf" / "config.json").read_text())
    vocab = config["text_config"]["vocab_size"]
    predictor = Predictor.load(str(copy_with_wordpiece_tokenizer(fixtures_dir / "t5" / "hf", tmp_path / "t5", vocab)))
    long_prompt = ["a " * 300]  # relative positions: any length runs
    resolved = predictor.check_settings("caption", GenerationSettings(max_new_tokens=500), long_prompt)
    assert resolved.max_new_tokens == 500 and resolved.length_penalty == 1.0
    assert predictor.check_settings("vqa", None, ["what is it?"]).length_penalty == -1.0  # FlanT5's VQA default
    with pytest.raises(ValueError, match=r"min_new_tokens \(40\) must be <= max_new_tokens \(30\)"):
        predictor.check_settings("caption", GenerationSettings(min_new_tokens=40), long_prompt)
