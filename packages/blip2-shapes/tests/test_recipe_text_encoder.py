"""The recipe's Q-Former text pre-training (blip2_shapes.recipe.pretrain_text): after it, a caption's paraphrase is
its nearest text among other scenes' captions far more often than from the random start, and the weights land in
the stage-1 model where a BERT start would put them (the queries' feed-forward a copy, cross-attention untouched)."""

import numpy as np
import pytest


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from blip2_core.loading.text_tokenizer import load_tokenizer
    from blip2_shapes.recipe.initial_model import qformer_config
    from blip2_shapes.recipe.pretrain_lm import text_only_scenes
    from blip2_shapes.recipe.pretrain_text import pretrain_text_encoder
    from blip2_shapes.recipe.tokenizers_for_shapes import bert_vocab

    scenes = text_only_scenes(1200, set())
    held_out, training = scenes[:100], scenes[100:]
    vocab = bert_vocab([c for s in scenes for c in s["captions"]], tmp_path_factory.mktemp("vocab"))
    config, tokenizer = qformer_config(vocab), load_tokenizer(vocab)
    state, record = pretrain_text_encoder(config, tokenizer, training, steps=200, batch_size=48, learning_rate=2e-3)
    return vocab, config, tokenizer, held_out, state, record


def paraphrase_is_nearest(config, tokenizer, scenes, state) -> float:
    """Share of captions whose nearest other caption (cosine of the ITC text feature) describes the same scene."""
    import paddle

    from blip2_data import pre_caption
    from blip2_qformer import QFormerForPretraining

    paddle.seed(1)
    model = QFormerForPretraining(config)
    if state is not None:
        model.set_state_dict({k: paddle.to_tensor(v) for k, v in state.items()})
    model.eval()
    texts = [c for s in scenes for c in s["captions"]]
    content = [tuple(sorted(s["captions"])) for s in scenes for _ in s["captions"]]
    encoded = tokenizer([pre_caption(t) for t in texts], padding=True, return_tensors="np", return_attention_mask=True)
    with paddle.no_grad():
        _, feats = model.text_features(
            paddle.to_tensor(encoded["input_ids"]), paddle.to_tensor(encoded["attention_mask"])
        )
    similarity = feats.numpy() @ feats.numpy().T
    np.fill_diagonal(similarity, -np.inf)
    nearest = similarity.argmax(axis=1)
    return float(np.mean([content[i] == content[j] for i, j in enumerate(nearest)]))


def test_paraphrases_are_nearest_after_pretraining(trained):
    _, config, tokenizer, held_out, state, record = trained
    before = paraphrase_is_nearest(config, tokenizer, held_out, None)
    after = paraphrase_is_nearest(config, tokenizer, held_out, state)
    assert after > before + 0.25, (before, after)
    assert record["last_loss"]["masked_words"] < record["first_loss"]["masked_words"] / 2, record
    assert record["last_loss"]["contrastive"] < record["first_loss"]["contrastive"] / 2, record


def test_the_stage1_start_takes_the_text_side_only(trained, tmp_path):
    from safetensors.numpy import load_file

    from blip2_shapes.recipe.initial_model import write_initial_stage1

    vocab, _, _, _, state, _ = trained
    weights = load_file(str(write_initial_stage1(vocab, tmp_path / "init", text_state=state) / "model.safetensors"))
    fresh = load_file(str(write_initial_stage1(vocab, tmp_path / "fresh") / "model.safetensors"))
    for name in ("qformer.embeddings.word_embeddings.weight", "qformer.layers.1.attention.query.weight",
                 "lm_head.dense.weight", "text_proj.weight"):  # fmt: skip
        np.testing.assert_array_equal(weights[name], state[name])
    np.testing.assert_array_equal(
        weights["qformer.layers.0.query_ffn.fc1.weight"], state["qformer.layers.0.ffn.fc1.weight"]
    )
    for name in ("qformer.layers.0.crossattention.key.weight", "qformer.query_tokens", "vision_proj.weight"):
        np.testing.assert_array_equal(weights[name], fresh[name])


def test_weights_that_do_not_fit_are_refused(trained, tmp_path):
    from blip2_shapes.recipe.initial_model import write_initial_stage1

    vocab, _, _, _, state, _ = trained
    with pytest.raises(ValueError, match="qformer.layers.0.ffn.fc1.weight"):
        write_initial_stage1(
            vocab, tmp_path / "a", text_state={**state, "qformer.layers.0.ffn.fc1.weight": np.zeros((2, 2), "float32")}
        )
    with pytest.raises(ValueError, match="do not fit"):
        write_initial_stage1(
            vocab, tmp_path / "b", text_state={"qformer.layers.9.ffn.fc1.weight": np.zeros((2, 2), "float32")}
        )
