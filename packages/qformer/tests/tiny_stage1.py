"""The stage-1 model and batch that test_distributed.py and dist_worker.py (its two ranks) share."""

import numpy as np
import paddle

from blip2_qformer import QFormerConfig, QFormerForPretraining

CONFIG = QFormerConfig(
    vocab_size=50, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=24, encoder_hidden_size=12,
    num_query_tokens=4, max_position_embeddings=16, embed_dim=8, bos_token_id=49,
)  # fmt: skip


def tiny_model() -> QFormerForPretraining:
    paddle.seed(0)  # the same weights in every process
    model = QFormerForPretraining(CONFIG)
    model.eval()
    return model


def batch() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Four samples (image features, token ids, mask), the last one padded."""
    rng = np.random.RandomState(7)
    images = rng.randn(4, 5, 12).astype("float32")
    ids = rng.randint(1, 49, size=(4, 6)).astype("int64")
    mask = np.ones((4, 6), dtype="int64")
    mask[3, 4:] = 0
    return images, ids, mask
