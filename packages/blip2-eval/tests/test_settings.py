"""Generation settings: LAVIS's defaults per dataset, overrides, and what is resolved from the model."""

from __future__ import annotations

import argparse
from types import SimpleNamespace

import pytest

from blip2_eval.model_io import lavis_eos_token_ids
from blip2_eval.settings import add_generation_arguments, settings_from_args


def parse(task, dataset, *argv):
    parser = argparse.ArgumentParser()
    add_generation_arguments(parser, task)
    args = parser.parse_args(list(argv))
    args.command, args.dataset = task, dataset
    return settings_from_args(args)


def test_lavis_defaults_per_dataset():
    coco = parse("caption", "coco_caption")
    coco = coco.for_model("caption", "opt", (2,))
    assert (coco.prompt, coco.num_beams, coco.max_new_tokens, coco.min_new_tokens) == ("a photo of", 5, 30, 8)
    nocaps = parse("caption", "nocaps").for_model("caption", "t5", (1,))
    assert (nocaps.max_new_tokens, nocaps.min_new_tokens, nocaps.length_penalty) == (80, 10, 1.0)
    for dataset in ("coco_vqa", "ok_vqa", "gqa"):
        vqa = parse("vqa", dataset)
        resolved = vqa.for_model("vqa", "opt", (2,))
        assert (resolved.prompt, resolved.num_beams, resolved.max_new_tokens, resolved.min_new_tokens) == (
            "Question: {} Short answer:", 5, 10, 1
        )  # fmt: skip
        assert vqa.for_model("vqa", "t5", (1,)).length_penalty == -1.0 and resolved.length_penalty == 0.0
    assert parse("vqa", "coco_vqa", "--length_penalty", "0.5").for_model("vqa", "t5", (1,)).length_penalty == 0.5


def test_overrides_and_unresolved_settings_refused():
    settings = parse("caption", "coco_caption", "--repetition_penalty", "1.15", "--num_beams", "3", "--prompt", "")
    assert (settings.repetition_penalty, settings.num_beams, settings.prompt) == (1.15, 3, "")
    with pytest.raises(ValueError, match="unresolved"):
        settings.generate_kwargs()
    kwargs = settings.for_model("caption", "opt", (50118,)).generate_kwargs()
    assert kwargs["eos_token_id"] == (50118,) and "prompt" not in kwargs and kwargs["repetition_penalty"] == 1.15


def fake(decoder_only, eos, newline_ids):
    model = SimpleNamespace(
        generation_config=SimpleNamespace(eos_token_id=eos),
        language_model=SimpleNamespace(is_decoder_only=decoder_only),
    )
    tokenizer = lambda text, add_special_tokens=True: {"input_ids": newline_ids}  # noqa: E731
    tokenizer.unk_token_id = 3
    return model, tokenizer


def test_opt_stops_at_newline_as_lavis_when_the_vocabulary_has_one():
    assert lavis_eos_token_ids(*fake(True, (2,), [50118])) == (50118,)
    assert lavis_eos_token_ids(*fake(True, (2,), [])) == (2,)  # no newline token: the model's eos
    assert lavis_eos_token_ids(*fake(True, (2,), [3])) == (2,)  # newline is unknown to the vocabulary
    assert lavis_eos_token_ids(*fake(False, (1,), [50118])) == (1,)  # FlanT5 keeps its </s>
