"""--gradient_checkpointing recomputes ViT blocks and Q-Former layers in backward with the same gradients."""

import numpy as np
import paddle
import pytest
import tiny

from blip2_core import Blip2Config, Blip2Qformer
from blip2_train.models import enable_gradient_checkpointing


def counting(forward, calls):
    def run(*args, **kwargs):
        calls.append(1)
        return forward(*args, **kwargs)

    return run


def gradients(checkpointing: bool, freeze_vit: bool, calls: list) -> dict:
    paddle.seed(0)
    model = Blip2Qformer(Blip2Config(vision_config=tiny.vision_config(), qformer_config=tiny.qformer_config(0.1)))
    if not freeze_vit:
        model.config.freeze_vit = False
        for p in model.vision_model.parameters():
            p.stop_gradient = False
    for layer in model.qformer.layers:  # count the layers' real runs: recomputation runs them again
        layer.forward = counting(layer.forward, calls)
    if checkpointing:
        enable_gradient_checkpointing(model)
    model.train()
    rng = np.random.RandomState(0)
    pixels = paddle.to_tensor(rng.randn(2, 3, tiny.IMAGE_SIZE, tiny.IMAGE_SIZE).astype("float32"))
    ids = paddle.to_tensor(rng.randint(5, 19, (2, 6)))
    paddle.seed(1)  # the same dropout masks in both runs (recompute replays the RNG state)
    model(pixels, ids, paddle.ones([2, 6], dtype="int64"), losses=("itc", "itg")).loss.backward()
    return {n: p.grad.numpy() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("freeze_vit", [True, False])
def test_same_gradients_with_recomputation(freeze_vit):
    plain_calls, calls = [], []
    plain = gradients(False, freeze_vit, plain_calls)
    checkpointed = gradients(True, freeze_vit, calls)
    assert plain.keys() == checkpointed.keys()
    assert any(n.startswith("vision_model.") for n in plain) == (not freeze_vit)
    for name in plain:
        np.testing.assert_allclose(checkpointed[name], plain[name], rtol=1e-4, atol=1e-6, err_msg=name)
    # forward: 2 layers x (queries, text, ITG text) passes; backward recomputes the passes that need gradients
    assert len(plain_calls) == 3 * tiny.LAYERS and len(calls) == 2 * len(plain_calls)
