"""Stage-1 Q-Former started from a (tiny, made-up) BERT checkpoint, checked against a numpy BERT."""

import math

import numpy as np
import paddle
import pytest

from blip2_qformer import QFormerConfig, QFormerForPretraining
from blip2_qformer.formats.bert import init_from_bert

HIDDEN, HEADS, FFN, LAYERS, BERT_VOCAB, POSITIONS = 16, 2, 24, 3, 40, 20


def tiny_bert(prefix: str = "bert.", old_names: bool = False) -> dict[str, np.ndarray]:
    """A BertForPreTraining state dict in HF's names and torch shapes ([out, in] Linear weights)."""
    rng = np.random.RandomState(3)

    def w(*shape):
        return rng.normal(0, 0.3, shape).astype("float32")

    gamma, beta = ("gamma", "beta") if old_names else ("weight", "bias")
    sd = {
        f"{prefix}embeddings.word_embeddings.weight": w(BERT_VOCAB, HIDDEN),
        f"{prefix}embeddings.position_embeddings.weight": w(POSITIONS, HIDDEN),
        f"{prefix}embeddings.token_type_embeddings.weight": w(2, HIDDEN),
        f"{prefix}embeddings.LayerNorm.{gamma}": 1 + w(HIDDEN),
        f"{prefix}embeddings.LayerNorm.{beta}": w(HIDDEN),
        f"{prefix}pooler.dense.weight": w(HIDDEN, HIDDEN),
        f"{prefix}pooler.dense.bias": w(HIDDEN),
        "cls.predictions.transform.dense.weight": w(HIDDEN, HIDDEN),
        "cls.predictions.transform.dense.bias": w(HIDDEN),
        f"cls.predictions.transform.LayerNorm.{gamma}": 1 + w(HIDDEN),
        f"cls.predictions.transform.LayerNorm.{beta}": w(HIDDEN),
        "cls.predictions.bias": w(BERT_VOCAB),
        "cls.predictions.decoder.weight": w(BERT_VOCAB, HIDDEN),
        "cls.seq_relationship.weight": w(2, HIDDEN),
        "cls.seq_relationship.bias": w(2),
    }
    for i in range(LAYERS + 1):  # one layer more than the Q-Former has
        layer = f"{prefix}encoder.layer.{i}."
        for name in ("query", "key", "value"):
            sd[f"{layer}attention.self.{name}.weight"] = w(HIDDEN, HIDDEN)
            sd[f"{layer}attention.self.{name}.bias"] = w(HIDDEN)
        sd[f"{layer}attention.output.dense.weight"] = w(HIDDEN, HIDDEN)
        sd[f"{layer}attention.output.dense.bias"] = w(HIDDEN)
        sd[f"{layer}attention.output.LayerNorm.{gamma}"] = 1 + w(HIDDEN)
        sd[f"{layer}attention.output.LayerNorm.{beta}"] = w(HIDDEN)
        sd[f"{layer}intermediate.dense.weight"] = w(FFN, HIDDEN)
        sd[f"{layer}intermediate.dense.bias"] = w(FFN)
        sd[f"{layer}output.dense.weight"] = w(HIDDEN, FFN)
        sd[f"{layer}output.dense.bias"] = w(HIDDEN)
        sd[f"{layer}output.LayerNorm.{gamma}"] = 1 + w(HIDDEN)
        sd[f"{layer}output.LayerNorm.{beta}"] = w(HIDDEN)
    return sd


def numpy_bert(sd: dict[str, np.ndarray], ids: np.ndarray, layers: int, eps: float) -> np.ndarray:
    """BERT's encoder written out (post-LayerNorm, exact GELU, no token types), [batch, text, hidden]."""
    key = {k.replace("gamma", "weight").replace("beta", "bias"): v for k, v in sd.items()}

    def ln(x, name):
        mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + eps) * key[name + ".weight"] + key[name + ".bias"]

    def linear(x, name):
        return x @ key[name + ".weight"].T + key[name + ".bias"]

    erf = np.vectorize(math.erf)
    x = (
        key["bert.embeddings.word_embeddings.weight"][ids]
        + key["bert.embeddings.position_embeddings.weight"][: ids.shape[1]]
    )
    x = ln(x, "bert.embeddings.LayerNorm")
    head = HIDDEN // HEADS
    for i in range(layers):
        p = f"bert.encoder.layer.{i}."
        q, k, v = (
            linear(x, p + f"attention.self.{n}").reshape(*x.shape[:2], HEADS, head) for n in ("query", "key", "value")
        )
        scores = np.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(head)
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        context = np.einsum("bhqk,bkhd->bqhd", probs, v).reshape(x.shape)
        x = ln(linear(context, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
        h = linear(x, p + "intermediate.dense")
        h = 0.5 * h * (1 + erf(h / math.sqrt(2)))
        x = ln(linear(h, p + "output.dense") + x, p + "output.LayerNorm")
    return x


def stage1_model() -> QFormerForPretraining:
    paddle.seed(11)
    config = QFormerConfig(
        vocab_size=BERT_VOCAB + 1, hidden_size=HIDDEN, num_layers=LAYERS, num_heads=HEADS, intermediate_size=FFN,
        encoder_hidden_size=12, num_query_tokens=4, max_position_embeddings=POSITIONS, embed_dim=8,
        bos_token_id=BERT_VOCAB,
    )  # fmt: skip
    model = QFormerForPretraining(config)
    model.eval()
    return model


@pytest.mark.parametrize("prefix,old_names", [("bert.", False), ("", True)])
def test_text_encoder_is_bert_and_the_rest_starts_as_lavis(prefix, old_names):
    sd = tiny_bert(prefix, old_names)
    model = stage1_model()
    fresh_before = {
        name: model.state_dict()[name].numpy().copy()
        for name in ("qformer.query_tokens", "qformer.layers.0.crossattention.query.weight", "itm_head.weight")
    }
    dec_row_before = model.qformer.embeddings.word_embeddings.weight.numpy()[BERT_VOCAB].copy()
    report = init_from_bert(model, sd)

    ids = np.random.RandomState(0).randint(1, BERT_VOCAB, (2, 7))
    hidden, _ = model.text_features(paddle.to_tensor(ids), paddle.ones([2, 7], dtype="int64"))
    canonical = {("bert." + k if not k.startswith(("bert.", "cls.")) else k): v for k, v in sd.items()}
    expected = numpy_bert(canonical, ids, LAYERS, eps=model.config.layer_norm_eps)
    np.testing.assert_allclose(hidden.numpy(), expected, rtol=1e-4, atol=1e-4)

    for i in range(LAYERS):  # query FFN = copy of the text FFN
        layer = model.qformer.layers[i]
        np.testing.assert_array_equal(layer.query_ffn.fc1.weight.numpy(), layer.ffn.fc1.weight.numpy())
        np.testing.assert_array_equal(layer.query_ffn.layer_norm.bias.numpy(), layer.ffn.layer_norm.bias.numpy())
    for name, before in fresh_before.items():  # cross-attention, queries, heads: fresh
        np.testing.assert_array_equal(model.state_dict()[name].numpy(), before)
        assert name in report.fresh
    words = model.qformer.embeddings.word_embeddings.weight.numpy()
    np.testing.assert_array_equal(words[BERT_VOCAB], dec_row_before)  # [DEC] keeps its initialisation
    assert model.lm_head.bias.numpy()[BERT_VOCAB] == 0
    np.testing.assert_array_equal(model.lm_head.bias.numpy()[:BERT_VOCAB], sd["cls.predictions.bias"])
    assert f"{prefix}encoder.layer.{LAYERS}.output.dense.weight" in report.unused
    assert f"{prefix}pooler.dense.weight" in report.unused


def test_a_checkpoint_of_another_width_is_refused_by_key():
    sd = tiny_bert()
    sd["bert.encoder.layer.1.intermediate.dense.weight"] = np.zeros((FFN + 1, HIDDEN), "float32")
    with pytest.raises(ValueError, match=r"layers\.1\.ffn\.fc1\.weight.*\(16, 25\).*\(16, 24\)"):
        init_from_bert(stage1_model(), sd)


def test_not_a_bert_checkpoint_is_an_error():
    with pytest.raises(ValueError, match="no BERT encoder layers"):
        init_from_bert(stage1_model(), {"vision_model.cls_token": np.zeros((1, 1, 4), "float32")})
