"""assign_weights puts numpy arrays into a model's parameters, checked and converted one at a time; in_dtype is
the conversion, bfloat16 included (numpy has none)."""

from __future__ import annotations

import logging

import numpy as np
import paddle
import pytest
from paddle import nn

from blip2_encoder_common import BFLOAT16_WORDS, LoadReport, assign_weights, in_dtype


class Tiny(nn.Layer):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.scale = self.create_parameter([1])  # a scalar, saved as shape [] by some checkpoints


def weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.RandomState(seed)
    return {"linear.weight": rng.randn(4, 3).astype("float32"), "linear.bias": rng.randn(3).astype("float32")}


def test_weights_are_set_and_the_rest_reported():
    model = Tiny()
    given = {**weights(), "scale": np.float32(2.5), "head.weight": np.zeros(2, "float32")}
    report = assign_weights(model, given)
    np.testing.assert_array_equal(model.linear.weight.numpy(), given["linear.weight"])
    assert model.scale.numpy().tolist() == [2.5]  # a [] scalar fits a [1] parameter
    assert report.unexpected == ["head.weight"] and report.missing == []
    assert len(given) == 4  # not consumed unless asked

    report = assign_weights(model, {"linear.bias": np.ones(3, "float32")})
    assert report.missing == ["linear.weight", "scale"] and report.unexpected == []


def test_a_shape_mismatch_names_the_source_the_key_and_both_shapes():
    with pytest.raises(
        ValueError, match=r"^ckpt: shape mismatch for linear.weight: checkpoint \(3, 4\) vs model \(4, 3\)"
    ):
        assign_weights(Tiny(), {"linear.weight": np.zeros((3, 4), "float32")}, source="ckpt")


def test_a_lazy_model_takes_the_weights_and_initialises_the_missing_ones():
    with paddle.LazyGuard():  # no memory and no random values until set
        model = Tiny()
    given = weights()
    report = assign_weights(model, given, consume=True)
    assert not given  # each array dropped once set
    assert report.missing == ["scale"] and model.scale._is_initialized()
    np.testing.assert_array_equal(model.linear.bias.numpy(), weights()["linear.bias"])


def test_dtypes_put_weights_into_parameters_of_another_dtype():
    model = Tiny()
    report = assign_weights(model, weights(), dtypes={"linear.weight": "bfloat16", "scale": "bfloat16"})
    assert report.missing == ["scale"]
    assert model.linear.weight.dtype == paddle.bfloat16 and model.scale.dtype == paddle.bfloat16  # missing too
    assert model.linear.bias.dtype == paddle.float32
    expected = paddle.to_tensor(weights()["linear.weight"]).astype("bfloat16")
    np.testing.assert_array_equal(model.linear.weight.numpy(), expected.numpy())  # bf16's .numpy() is its words


def test_bfloat16_rounds_to_nearest_even_as_paddle_does():
    values = np.array(
        [1.0, -2.5, 1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-8 + 2**-20, 3.4e38, np.inf, -np.inf, 1e-40], "float32"
    )  # ties to even down and up, just above a tie, the largest finite (rounds to inf), a subnormal
    words = in_dtype(values, "bfloat16")
    assert words.dtype == np.uint16
    np.testing.assert_array_equal(words, paddle.to_tensor(values).astype("bfloat16").numpy())
    nan = in_dtype(np.array([np.nan], "float32"), "bfloat16")
    assert (nan & 0x7F80) == 0x7F80 and (nan & 0x7F) != 0  # a NaN stays a NaN (not inf)


def test_bfloat16_words_convert_exactly_and_refuse_arithmetic():
    words = np.array([0x3F80, 0xC020, 0x7F80], "<u2")  # 1.0, -2.5, inf
    tagged = words.view(BFLOAT16_WORDS)
    np.testing.assert_array_equal(in_dtype(tagged, "float32"), [1.0, -2.5, np.inf])
    np.testing.assert_array_equal(in_dtype(tagged, "bfloat16"), words)
    with pytest.raises(TypeError):
        tagged + 1  # noqa: B018  (words are not numbers)


def test_float_arrays_already_in_the_dtype_are_not_copied():
    value = np.ones(3, "float32")
    assert in_dtype(value, "float32") is value
    assert in_dtype(value, "float16").dtype == np.float16


def test_the_report_logs_what_the_load_changed_missed_and_left_unused(caplog):
    report = LoadReport(missing=[f"m{i}" for i in range(10)], unexpected=["u"], notes=["resized pos_embed"])
    with caplog.at_level(logging.INFO, logger="blip2_encoder_common"):
        report.log("ckpt", logging.INFO)
    assert caplog.messages == [
        "ckpt: resized pos_embed",
        "ckpt: 10 weights not in the checkpoint, left as initialised: m0, m1, m2, m3, m4, m5, m6, m7 ... (+2)",
        "ckpt: 1 checkpoint weights unused: u",
    ]


# -- taking an array's memory (share_memory) ---------------------------------------------------------------------


def lazy_tiny() -> Tiny:
    with paddle.LazyGuard():
        return Tiny()


def aligned(array: np.ndarray) -> np.ndarray:
    from blip2_encoder_common.weights import aligned_copy

    return aligned_copy(array, str(array.dtype))


def test_with_share_memory_a_lazy_parameter_takes_an_aligned_array_as_it_is():
    given = {k: aligned(v) for k, v in weights().items()}
    addresses = {k: v.ctypes.data for k, v in given.items()}
    model = lazy_tiny()
    assign_weights(model, dict(given), share_memory=True)
    assert model.linear.weight.data_ptr() == addresses["linear.weight"]  # no copy
    assert model.linear.bias.data_ptr() == addresses["linear.bias"]
    np.testing.assert_array_equal(model.linear.weight.numpy(), given["linear.weight"])
    model.linear.weight.set_value(paddle.zeros([4, 3]))  # the parameter is writable, and is the array
    assert not given["linear.weight"].any()


def test_without_share_memory_or_when_unfit_the_parameter_gets_a_copy():
    reference = weights()
    read_only = aligned(reference["linear.weight"])
    read_only.flags.writeable = False
    unaligned = aligned(np.zeros(13, "float32"))[1:].reshape(4, 3)  # 4 bytes past a 64-byte boundary
    unaligned[...] = reference["linear.weight"]
    cases = {
        "not asked": ({k: aligned(v) for k, v in reference.items()}, False),
        "transposed": ({"linear.weight": aligned(reference["linear.weight"].T.copy()).T}, True),
        "read-only": ({"linear.weight": read_only}, True),
        "float64": ({"linear.weight": reference["linear.weight"].astype("float64")}, True),
        "unaligned": ({"linear.weight": unaligned}, True),
    }
    for name, (given, share) in cases.items():
        model = lazy_tiny()
        address = given["linear.weight"].ctypes.data
        expected = np.array(given["linear.weight"], dtype="float32")
        assign_weights(model, dict(given), share_memory=share)
        assert model.linear.weight.data_ptr() != address, name
        assert model.linear.weight.data_ptr() % 64 == 0, name
        np.testing.assert_array_equal(model.linear.weight.numpy(), expected, err_msg=name)


def test_one_array_given_under_two_names_is_taken_once_and_copied_once():
    class Two(nn.Layer):
        def __init__(self):
            super().__init__()
            self.a = self.create_parameter([4, 3])
            self.b = self.create_parameter([4, 3])

    with paddle.LazyGuard():
        model = Two()
    shared = aligned(weights()["linear.weight"])
    assign_weights(model, {"a": shared, "b": shared}, share_memory=True)
    assert model.a.data_ptr() != model.b.data_ptr()  # two parameters, as the copying path gives
    np.testing.assert_array_equal(model.a.numpy(), model.b.numpy())


def test_aligned_copy_of_a_transposed_view_is_exact_and_c_contiguous():
    from blip2_encoder_common.weights import aligned_copy

    rng = np.random.RandomState(1)
    for shape in [(300, 200), (3, 130, 257), (5,), ()]:
        value = np.asarray(rng.randn(*shape), dtype="float32")
        view = value.T if value.ndim == 2 else value.transpose(0, 2, 1) if value.ndim == 3 else value
        copy = aligned_copy(view, "float32")
        assert copy.flags.c_contiguous and copy.ctypes.data % 64 == 0 and copy.shape == view.shape
        np.testing.assert_array_equal(copy, view)
