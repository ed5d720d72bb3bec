"""bf16 on CPU: the image side compiled once (Paddle Inference, oneDNN), cached on disk, close to float32.

Tolerances, measured on the tiny OPT model (an AMD EPYC with avx512_bf16): the bf16 visual tokens differ from
float32's by about 1% of their largest magnitude (bf16 keeps 8 bits of mantissa), the LLM logits fed with them
by a few percent of the logit range; greedy tokens agree on most positions.
"""

import json

import numpy as np
import paddle
import pytest
from safetensors.numpy import load_file

from blip2_core import Blip2ForConditionalGeneration
from blip2_core.inference.predictor import Predictor
from blip2_core.loading import compiled_image_encoder as compiled
from blip2_core.loading.bundle import ModelBundle
from blip2_core.loading.compiled_image_encoder import CompiledImageEncoder, cpu_bf16_support

needs_bf16 = pytest.mark.skipif(cpu_bf16_support() is None, reason="this CPU has neither avx512_bf16 nor AMX")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("compiled")


@pytest.fixture(scope="module")
def fp32_model(fixtures_dir):
    return Blip2ForConditionalGeneration.from_pretrained(fixtures_dir / "opt" / "hf")


@pytest.fixture(scope="module")
def reference(fixtures_dir):
    return {k: paddle.to_tensor(v) for k, v in load_file(str(fixtures_dir / "opt" / "io.safetensors")).items()}


def relative_error(actual, expected) -> float:
    actual, expected = np.asarray(actual, np.float32), np.asarray(expected, np.float32)
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def test_the_compiled_float32_graph_is_the_model(fp32_model, reference, cache_dir):
    encoder = CompiledImageEncoder.for_model(fp32_model, "float32", cache_dir=cache_dir)
    expected = fp32_model.get_image_features(reference["pixel_values"]).numpy()
    assert relative_error(encoder(reference["pixel_values"]).numpy(), expected) < 1e-5


@needs_bf16
def test_bf16_visual_tokens_are_within_2_percent_of_float32(fp32_model, reference, cache_dir):
    encoder = CompiledImageEncoder.for_model(fp32_model, "bfloat16", cache_dir=cache_dir)
    actual = encoder(reference["pixel_values"]).numpy()
    error = relative_error(actual, fp32_model.get_image_features(reference["pixel_values"]).numpy())
    assert 1e-4 < error < 2e-2  # above 1e-4: bf16 really ran (float32 agrees to 1e-6)
    assert actual.dtype == np.float32


def test_the_bf16_graph_holds_the_vit_blocks_in_bf16_and_leaves_the_model_as_it_was(fp32_model, cache_dir):
    before = {name: param.numpy().copy() for name, param in fp32_model.vision_model.named_parameters()}
    sizes = {}
    for dtype in ("float32", "bfloat16"):
        graph = compiled.exported_graph(fp32_model, cache_dir, dtype)
        sizes[dtype] = (graph / (compiled.GRAPH_NAME + ".pdiparams")).stat().st_size
    blocks = sum(int(np.prod(p.shape)) for p in fp32_model.vision_model.blocks.parameters())
    # the blocks' weights are stored in 2 bytes instead of 4 (LayerNorms, 4 per block, stay float32)
    assert sizes["float32"] - sizes["bfloat16"] > 0.9 * 2 * blocks
    for name, param in fp32_model.vision_model.named_parameters():
        assert param.dtype == paddle.float32, name
        np.testing.assert_array_equal(param.numpy(), before[name])


def test_the_saved_graph_reads_the_vit_qkv_weights_packed(fp32_model, cache_dir):
    """The graph holds each block's q/k/v weights as one stored matrix (``Attention.pack_qkv`` while tracing), not
    the per-head ones: a graph that slices them per head makes Paddle Inference fold the slices at every load."""
    graph = compiled.exported_graph(fp32_model, cache_dir, "float32")
    program = json.loads((graph / (compiled.GRAPH_NAME + ".json")).read_text())
    ops = program["program"]["regions"][0]["blocks"][0]["ops"]
    shapes = [tuple(op["O"]["TT"]["D"][1]) for op in ops if op["#"] == "p"]  # the graph's parameters
    vision = fp32_model.config.vision_config
    width, heads = vision.hidden_size, vision.num_heads
    assert shapes.count((width, 3 * width)) == vision.num_layers
    assert (heads, width, width // heads) not in shapes
    assert not [name for name, _ in fp32_model.vision_model.named_parameters() if "packed_qkv" in name]


def test_the_export_is_cached_on_disk_and_keyed_by_the_weights(fp32_model, cache_dir, monkeypatch):
    first = compiled.exported_graph(fp32_model, cache_dir)
    monkeypatch.setattr(compiled, "export_image_side", lambda *a: pytest.fail("exported again"))
    assert compiled.exported_graph(fp32_model, cache_dir) == first  # found, not exported again
    monkeypatch.undo()

    changed = Blip2ForConditionalGeneration(fp32_model.config)
    changed.set_state_dict(fp32_model.state_dict())
    weight = changed.qformer.layers[0].attention.query.weight
    weight.set_value(weight + 1e-3)
    assert compiled.cache_key(changed, 56) != compiled.cache_key(fp32_model, 56)
    assert compiled.cache_key(fp32_model, 56) != compiled.cache_key(fp32_model, 112)


@needs_bf16
def test_from_pretrained_bfloat16_captions_agree_with_float32(fixtures_dir, fp32_model, reference):
    model = Blip2ForConditionalGeneration.from_pretrained(fixtures_dir / "opt" / "hf", dtype="bfloat16")
    assert isinstance(model.compiled_image_encoder, CompiledImageEncoder)
    # the dygraph copy of the image side is freed: the compiled graph holds the weights
    assert not any(p._is_initialized() for p in model.vision_model.parameters())
    assert not any(p._is_initialized() for p in model.qformer.parameters())
    assert (
        Predictor(ModelBundle(model, None, None)).dtype == "image bfloat16 (compiled oneDNN), LLM float32"
    )  # what runs
    assert Predictor(ModelBundle(fp32_model, None, None)).dtype == "float32"
    inputs = (reference["pixel_values"], reference["prompt_ids"], reference["prompt_mask"])

    logits = model(*inputs).logits.numpy()
    expected = fp32_model(*inputs).logits.numpy()
    assert relative_error(logits, expected) < 5e-2

    ids = model.generate(*inputs, max_new_tokens=10).numpy()
    expected_ids = fp32_model.generate(*inputs, max_new_tokens=10).numpy()
    assert ids.shape == expected_ids.shape
    assert (ids == expected_ids).mean() >= 0.8


def test_float16_on_cpu_is_refused_with_a_way_out(fixtures_dir):
    with pytest.raises(ValueError, match="needs a GPU.*bfloat16 or float32"):
        Blip2ForConditionalGeneration.from_pretrained(fixtures_dir / "opt" / "hf", dtype="float16")
