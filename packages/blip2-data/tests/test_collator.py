import numpy as np
import pytest

from blip2_data import IGNORE_INDEX, VQA_PROMPT, Blip2Collator


def items(*texts, **extra):
    return [
        {"image": np.full((3, 4, 4), i, np.float32), "image_id": i, "text_input": t, **extra}
        for i, t in enumerate(texts)
    ]


def test_qformer_batch_with_bert(bert_tokenizer):
    batch = Blip2Collator.for_qformer(bert_tokenizer, max_length=6)(items("a dog", "a woman cutting her cake number 7"))
    cls, sep, pad = (bert_tokenizer.convert_tokens_to_ids(t) for t in ("[CLS]", "[SEP]", "[PAD]"))
    dog = bert_tokenizer.convert_tokens_to_ids(["a", "dog"])
    assert batch["input_ids"].tolist()[0] == [cls, *dog, sep, pad, pad]
    assert batch["input_ids"].shape == (2, 6) and batch["input_ids"][1, -1] == sep  # truncated to max_length
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 0, 0], [1] * 6]
    assert batch["labels"].tolist()[0] == [cls, *dog, sep, IGNORE_INDEX, IGNORE_INDEX]
    assert batch["pixel_values"].shape == (2, 3, 4, 4) and batch["pixel_values"][1].max() == 1
    assert batch["image_id"].dtype == np.int64 and batch["image_id"].tolist() == [0, 1]


def test_causal_lm_caption_labels_mask_prompt_and_padding(bpe_tokenizer):
    collate = Blip2Collator.for_causal_lm(bpe_tokenizer)  # "a photo of " + caption + "\n"
    batch = collate(items("a dog", "a cat on a sofa"))
    full = [bpe_tokenizer("a photo of " + t + "\n")["input_ids"] for t in ("a dog", "a cat on a sofa")]
    prompt_len = len(bpe_tokenizer("a photo of")["input_ids"])  # </s> a photo of
    pad = bpe_tokenizer.pad_token_id
    for row, ids in enumerate(full):
        assert batch["input_ids"][row, : len(ids)].tolist() == ids  # right padding for training
        assert (batch["input_ids"][row, len(ids) :] == pad).all()
        labels = batch["labels"][row].tolist()
        assert labels[:prompt_len] == [IGNORE_INDEX] * prompt_len
        assert labels[prompt_len : len(ids)] == ids[prompt_len:]
        assert set(labels[len(ids) :]) <= {IGNORE_INDEX}
    assert (
        bpe_tokenizer.decode(batch["labels"][0][batch["labels"][0] != IGNORE_INDEX]) == " a dog\n"
    )  # BPE keeps the space before "a"


def test_causal_lm_generation_pads_left_without_labels(bpe_tokenizer):
    collate = Blip2Collator.for_causal_lm(bpe_tokenizer, VQA_PROMPT, generate=True)
    batch = collate(items("what color is the cat?", "yes"))
    assert "labels" not in batch
    long_ids = bpe_tokenizer("Question: what color is the cat? Answer:")["input_ids"]
    short_ids = bpe_tokenizer("Question: yes Answer:")["input_ids"]
    assert batch["input_ids"][0].tolist() == long_ids
    assert batch["input_ids"][1, -len(short_ids) :].tolist() == short_ids  # real tokens end at the last position
    assert batch["attention_mask"][1].tolist() == [0] * (len(long_ids) - len(short_ids)) + [1] * len(short_ids)


def test_vqa_training_target_and_seq2seq(bpe_tokenizer):
    vqa = items("what color is the cat?", text_output="black")
    batch = Blip2Collator.for_causal_lm(bpe_tokenizer, VQA_PROMPT, target_key="text_output", text_suffix="")(vqa)
    kept = batch["labels"][0][batch["labels"][0] != IGNORE_INDEX]
    assert bpe_tokenizer.decode(kept) == " black"
    seq = Blip2Collator.for_seq2seq(bpe_tokenizer)(vqa)
    assert (
        bpe_tokenizer.decode(seq["input_ids"][0], skip_special_tokens=True)
        == "Question: what color is the cat? Answer:"
    )
    assert bpe_tokenizer.decode(seq["labels"][0][seq["labels"][0] != IGNORE_INDEX], skip_special_tokens=True) == "black"


def test_skipped_items_are_dropped_and_counted(bert_tokenizer):
    batch = Blip2Collator.for_qformer(bert_tokenizer)([*items("a dog"), {"_skipped": "sample 3 is broken"}])
    assert batch["num_skipped"] == 1 and batch["skipped"] == ["sample 3 is broken"]
    assert batch["input_ids"].shape[0] == 1


def test_needs_pad_token_and_target(bert_tokenizer, bpe_tokenizer):
    with pytest.raises(KeyError, match="text_output"):
        Blip2Collator.for_seq2seq(bpe_tokenizer)(items("q"))
    with pytest.raises(ValueError, match="padding_side"):
        Blip2Collator(bert_tokenizer, padding_side="middle")


def test_qformer_batches_have_one_fixed_length_as_in_lavis(bert_tokenizer):
    # Ranks all-gather stage-1 text ids: two batches with different longest captions must keep one shape.
    collate = Blip2Collator.for_qformer(bert_tokenizer, max_length=12)
    short, long = collate(items("a dog")), collate(items("a woman cutting her cake number 7"))
    assert short["input_ids"].shape == long["input_ids"].shape == (1, 12)
    assert short["attention_mask"].tolist() == [[1, 1, 1, 1] + [0] * 8]
    assert short["labels"][0, 4:].tolist() == [IGNORE_INDEX] * 8
    loose = Blip2Collator.for_qformer(bert_tokenizer, max_length=12, pad_to_max_length=False)
    assert loose(items("a dog"))["input_ids"].shape == (1, 4)
