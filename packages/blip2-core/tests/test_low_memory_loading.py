"""Loading builds the model without random values and puts each weight into its parameter in the target dtype, one
at a time: a bf16 checkpoint never becomes float32 arrays, and no copy of the whole model is ever made.

numpy's allocations are what tracemalloc sees (paddle's own are not): the converted arrays on their way into
paddle. A float32 copy of a single weight is already over the limits below.
"""

import json
import struct
import tracemalloc

import numpy as np
import paddle
import pytest
from paddle import nn

from blip2_core import Blip2ForConditionalGeneration
from blip2_core.checkpoint_io import read_state_dict
from blip2_core.loading import precision, pretrained
from blip2_qformer import assign_weights

LAYERS, WIDTH = 8, 512  # 2.1M parameters: 8 MB in float32; one weight is 1 MB in float32, 0.5 MB in bf16
ONE_WEIGHT_FP32 = WIDTH * WIDTH * 4


def random_weights() -> dict[str, np.ndarray]:
    rng = np.random.RandomState(0)
    shapes = {"weight": (WIDTH, WIDTH), "bias": (WIDTH,)}
    return {
        f"{i}.{name}": rng.randn(*shape).astype(np.float32) for i in range(LAYERS) for name, shape in shapes.items()
    }


def write_bf16_safetensors(path, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A safetensors file of bf16 tensors, by hand (safetensors.numpy has no bf16); returns the words written."""
    header, blobs, words, offset = {}, [], {}, 0
    for name, value in arrays.items():
        words[name] = (value.view(np.uint32) >> 16).astype("<u2")  # truncated: exact bf16 values from here on
        header[name] = {"dtype": "BF16", "shape": list(value.shape), "data_offsets": [offset, offset + value.size * 2]}
        blobs.append(words[name].tobytes())
        offset += value.size * 2
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))
    return words


def lazy_model() -> nn.Layer:
    with paddle.LazyGuard():  # as from_pretrained builds: parameters hold no memory until set
        return nn.Sequential(*[nn.Linear(WIDTH, WIDTH) for _ in range(LAYERS)])


def load_traced(model: nn.Layer, read, dtypes: dict[str, str]) -> int:
    """Read the checkpoint and load it; returns the peak of numpy memory allocated on the way."""
    tracemalloc.start()
    try:
        weights = read()
        report = assign_weights(model, weights, "test", dtypes, consume=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not report.missing and not report.unexpected and not weights  # all used, and handed back one by one
    return peak


def test_a_bf16_checkpoint_goes_into_bf16_parameters_without_any_float32_array(tmp_path):
    arrays = random_weights()
    words = write_bf16_safetensors(tmp_path / "model.safetensors", arrays)
    model = lazy_model()

    peak = load_traced(model, lambda: read_state_dict(tmp_path, keep_bfloat16=True), dict.fromkeys(arrays, "bfloat16"))

    for name, param in model.named_parameters():
        assert param.dtype == paddle.bfloat16, name
        np.testing.assert_array_equal(param.numpy(), words[name])  # bf16's .numpy() is its uint16 words
    assert peak < ONE_WEIGHT_FP32 // 2, f"{peak} bytes of numpy arrays: the bf16 words were converted or copied"


def test_reading_a_bf16_checkpoint_the_old_way_would_fail_the_limit(tmp_path):
    """The limit above can fail: widening bf16 to float32 at read time (the readers' default) exceeds it."""
    write_bf16_safetensors(tmp_path / "model.safetensors", random_weights())
    dtypes = dict.fromkeys(random_weights(), "bfloat16")
    assert load_traced(lazy_model(), lambda: read_state_dict(tmp_path), dtypes) > LAYERS * ONE_WEIGHT_FP32


def test_a_float32_checkpoint_goes_into_bf16_one_weight_at_a_time(tmp_path):
    from safetensors.numpy import save_file

    arrays = random_weights()
    save_file(arrays, str(tmp_path / "model.safetensors"))
    model = lazy_model()

    peak = load_traced(model, lambda: read_state_dict(tmp_path, keep_bfloat16=True), dict.fromkeys(arrays, "bfloat16"))

    for name, param in model.named_parameters():
        assert param.dtype == paddle.bfloat16, name
        expected = paddle.to_tensor(arrays[name]).astype("bfloat16").numpy()  # paddle's own rounding
        np.testing.assert_array_equal(param.numpy(), expected)
    # a few weights' worth of temporaries (one weight's conversion), never the 8 MB model
    assert peak < 3 * ONE_WEIGHT_FP32


def test_from_pretrained_builds_the_model_without_random_values(fixtures_dir, monkeypatch):
    """No parameter holds memory or random values before its weight arrives (and none is initialised after)."""
    initialised_on_entry = []

    def counting(model, *args, **kwargs):
        initialised_on_entry.append(sum(param._is_initialized() for param in model.parameters()))
        return assign_weights(model, *args, **kwargs)

    def refuse(param):
        raise AssertionError(f"{param.name} was randomly initialised, though the checkpoint has it")

    monkeypatch.setattr(pretrained, "assign_weights", counting)
    monkeypatch.setattr(paddle.base.framework.EagerParamBase, "initialize", refuse)
    model = Blip2ForConditionalGeneration.from_pretrained(fixtures_dir / "opt" / "hf")
    assert initialised_on_entry == [0]
    assert not model.load_report.missing
    assert all(param._is_initialized() for param in model.parameters())


def test_on_a_gpu_bf16_weights_are_loaded_as_bf16_not_cast_after(fixtures_dir, monkeypatch):
    """The GPU path, on a CPU: with on_gpu faked, the parameters are already bf16 when loading ends."""
    reference = Blip2ForConditionalGeneration.from_pretrained(fixtures_dir / "opt" / "hf")
    monkeypatch.setattr(precision, "on_gpu", lambda: True)
    seen = {}

    def record_then_cast(model, plan):
        seen.update({name: param.dtype for name, param in model.named_parameters()})
        return finish_cast(model, plan)

    finish_cast = pretrained.finish_cast
    monkeypatch.setattr(pretrained, "finish_cast", record_then_cast)
    model = Blip2ForConditionalGeneration.from_pretrained(fixtures_dir / "opt" / "hf", dtype="bfloat16")

    layer_norms = {f"vision_model.{name}.{p}" for name, layer in model.vision_model.named_sublayers()
                   if isinstance(layer, nn.LayerNorm) for p in ("weight", "bias")}  # fmt: skip
    for name, dtype in seen.items():
        float32 = name.startswith("qformer.") or name in layer_norms
        assert dtype == (paddle.float32 if float32 else paddle.bfloat16), name
    assert any(dtype == paddle.bfloat16 for name, dtype in seen.items() if name.startswith("language_model."))
    weight = model.language_model.input_embeddings.weight
    expected = reference.language_model.input_embeddings.weight.astype("bfloat16")
    np.testing.assert_array_equal(weight.numpy(), expected.numpy())


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_load_report_and_values_match_the_eager_path(fixtures_dir, dtype):
    """Built lazily and loaded weight by weight, the model equals one built normally and given its state dict."""
    model = Blip2ForConditionalGeneration.from_pretrained(fixtures_dir / "opt" / "hf", dtype=dtype)
    eager = Blip2ForConditionalGeneration(model.config)
    reference = Blip2ForConditionalGeneration.from_pretrained(fixtures_dir / "opt" / "hf")
    eager.set_state_dict(reference.state_dict())
    for name, param in model.language_model.named_parameters():
        np.testing.assert_array_equal(param.numpy(), dict(eager.language_model.named_parameters())[name].numpy())
