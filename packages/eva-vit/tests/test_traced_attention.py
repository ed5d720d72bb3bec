"""A traced graph (paddle.jit) runs attention as one fused qkv matmul: the same numbers as dygraph's per-head form."""

import numpy as np
import paddle

from blip2_eva_vit.model import Attention


def test_traced_attention_equals_the_per_head_form():
    paddle.seed(0)
    attention = Attention(hidden_size=48, num_heads=4)
    for bias in (attention.q_bias, attention.v_bias):
        bias.set_value(paddle.randn(bias.shape))  # non-zero, so a misplaced bias shows
    attention.eval()
    x = paddle.randn([2, 17, 48])
    spec = [paddle.static.InputSpec([None, 17, 48], "float32", "x")]
    traced = paddle.jit.to_static(attention, input_spec=spec, full_graph=True)
    expected = Attention.forward(attention, x).numpy()
    np.testing.assert_allclose(traced(x).numpy(), expected, rtol=1e-5, atol=1e-5)
