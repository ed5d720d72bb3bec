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


def test_fused_attention_equals_the_unfused_form():
    """The GPU fp16/bf16 path (paddle's scaled_dot_product_attention, flash there) computes the same attention;
    on a CPU it is a plain composition, so the two agree in float32 here (the flash kernel itself is not run)."""
    paddle.seed(1)
    attention = Attention(hidden_size=48, num_heads=4)
    attention.eval()
    q, k, v = (paddle.randn([2, 4, 17, 12]) for _ in range(3))
    np.testing.assert_allclose(
        attention.attend(q, k, v, fused=True).numpy(), attention.attend(q, k, v).numpy(), rtol=1e-5, atol=1e-6
    )
    assert attention.attend(q, k, v, fused=True).shape == [2, 17, 4, 12]


def test_packed_qkv_traces_to_the_same_attention_and_unpacks_cleanly():
    """``pack_qkv`` gives the traced graph the q/k/v weights as one stored matrix (no per-head re-layout left in
    the graph for Paddle Inference to fold at every load); the numbers stay the per-head form's."""
    paddle.seed(2)
    attention = Attention(hidden_size=48, num_heads=4)
    for bias in (attention.q_bias, attention.v_bias):
        bias.set_value(paddle.randn(bias.shape))
    attention.eval()
    keys = set(attention.state_dict())
    x = paddle.randn([2, 17, 48])
    expected = Attention.forward(attention, x).numpy()

    attention.pack_qkv()
    assert attention.packed_qkv_weight.shape == [48, 3 * 48]
    np.testing.assert_array_equal(attention.packed_qkv_bias.numpy()[48:96], np.zeros(48, np.float32))  # no key bias
    spec = [paddle.static.InputSpec([None, 17, 48], "float32", "x")]
    traced = paddle.jit.to_static(attention, input_spec=spec, full_graph=True)
    np.testing.assert_allclose(traced(x).numpy(), expected, rtol=1e-5, atol=1e-5)
    program = str(traced.forward.main_program)  # the per-head slicing is gone: one slice per head and weight before
    assert program.count("pd_op.slice") < 3 * attention.num_heads

    attention.unpack_qkv()
    assert set(attention.state_dict()) == keys
    np.testing.assert_allclose(Attention.forward(attention, x).numpy(), expected, rtol=1e-6, atol=1e-6)
