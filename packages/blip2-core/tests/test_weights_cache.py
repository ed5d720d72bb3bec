"""The converted-weights cache: a checkpoint whose weights a CPU parameter cannot take as they are (HF's [out, in]
Linear weights, ...) is converted once into $BLIP2_HOME/weights, one tensor at a time, and memory-mapped from there
by every later load; a changed checkpoint is converted again, and its old entry goes."""

import hashlib
import json
import logging
import os
import shutil
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from blip2_core import Blip2ForConditionalGeneration
from blip2_core.checkpoint_io import read_safetensors, write_aligned_safetensors
from blip2_core.loading import weights_cache


@pytest.fixture
def hf_dir(fixtures_dir, tmp_path):
    """The tiny OPT model in HF's layout, in a folder of its own (the tests change its file)."""
    return Path(shutil.copytree(fixtures_dir / "opt" / "hf", tmp_path / "hf"))


def entries() -> list[Path]:
    return sorted(weights_cache.cache_dir().glob("*.safetensors"))


def values(model) -> dict[str, np.ndarray]:
    return {name: tensor.numpy() for name, tensor in model.state_dict().items()}


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def converted_in_memory(path, monkeypatch) -> dict[str, np.ndarray]:
    with monkeypatch.context() as patch:
        patch.setenv(weights_cache.ENV_SWITCH, "0")
        return values(Blip2ForConditionalGeneration.from_pretrained(path))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_first_load_writes_the_entry_and_the_next_maps_it_without_converting(hf_dir, monkeypatch):
    expected = converted_in_memory(hf_dir, monkeypatch)
    assert not entries()  # BLIP2_WEIGHTS_CACHE=0: nothing written

    first = Blip2ForConditionalGeneration.from_pretrained(hf_dir)
    (entry,) = entries()
    written = (entry.stat().st_mtime_ns, digest(entry))
    assert_same(values(first), expected)

    def refuse(*args, **kwargs):
        raise AssertionError("the entry was written again")

    monkeypatch.setattr(weights_cache, "write_aligned_safetensors", refuse)
    second = Blip2ForConditionalGeneration.from_pretrained(hf_dir)
    assert_same(values(second), expected)
    assert (entry.stat().st_mtime_ns, digest(entry)) == written
    maps = Path("/proc/self/maps").read_text()
    assert str(entry) in maps and str(hf_dir / "model.safetensors") not in maps  # the weights are the entry's pages


def test_writing_into_a_parameter_never_reaches_the_entry(hf_dir):
    Blip2ForConditionalGeneration.from_pretrained(hf_dir)
    (entry,) = entries()
    before = digest(entry)
    model = Blip2ForConditionalGeneration.from_pretrained(hf_dir)
    original = values(model)
    weight = model.vision_model.blocks[0].mlp.fc1.weight
    weight.set_value(weight * 0 + 7)  # as an optimizer step would
    assert float(weight.mean()) == 7
    assert digest(entry) == before  # copy-on-write: the page changed in this process only
    assert_same(values(Blip2ForConditionalGeneration.from_pretrained(hf_dir)), original)


def test_a_changed_checkpoint_is_converted_again_and_its_old_entry_deleted(hf_dir, monkeypatch):
    Blip2ForConditionalGeneration.from_pretrained(hf_dir)
    (old,) = entries()
    file = hf_dir / "model.safetensors"
    tensors = load_file(str(file))
    name = "vision_model.encoder.layers.0.mlp.fc1.weight"  # [out, in] in HF: converted through the cache
    tensors[name] = tensors[name] * 2
    save_file(tensors, str(file.with_suffix(".tmp")))
    os.replace(file.with_suffix(".tmp"), file)

    model = Blip2ForConditionalGeneration.from_pretrained(hf_dir)
    (new,) = entries()
    assert new != old and not old.exists() and not old.with_suffix(".json").exists()
    np.testing.assert_array_equal(model.vision_model.blocks[0].mlp.fc1.weight.numpy(), tensors[name].T)
    assert_same(values(model), converted_in_memory(hf_dir, monkeypatch))

    stat = file.stat()  # the same bytes with another modification time: converted again too
    os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    Blip2ForConditionalGeneration.from_pretrained(hf_dir)
    (newest,) = entries()
    assert newest != new


def test_a_damaged_entry_is_written_again(hf_dir, monkeypatch, caplog):
    expected = converted_in_memory(hf_dir, monkeypatch)
    Blip2ForConditionalGeneration.from_pretrained(hf_dir)
    (entry,) = entries()
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])  # cut off
    with caplog.at_level(logging.WARNING):
        model = Blip2ForConditionalGeneration.from_pretrained(hf_dir)
    assert "writing it again" in caplog.text
    assert_same(values(model), expected)
    assert entries() == [entry] and read_safetensors(entry)


def test_where_the_cache_cannot_be_written_loading_converts_in_memory(hf_dir, monkeypatch, tmp_path, caplog):
    expected = converted_in_memory(hf_dir, monkeypatch)
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    monkeypatch.setenv("BLIP2_HOME", str(blocked))  # $BLIP2_HOME/weights cannot be made
    with caplog.at_level(logging.WARNING):
        model = Blip2ForConditionalGeneration.from_pretrained(hf_dir)
    assert "converting the weights in memory" in caplog.text
    assert_same(values(model), expected)


def test_the_first_load_converts_one_tensor_at_a_time(tmp_path):
    """Never two copies of the model: the arrays converted are written out (and dropped) one after another."""
    layers, width = 16, 512
    one = width * width * 4
    rng = np.random.RandomState(0)
    save_file(
        {f"{i}.weight": rng.randn(width, width).astype("float32") for i in range(layers)},
        str(tmp_path / "w.safetensors"),
    )
    read = read_safetensors(tmp_path / "w.safetensors", writable=True)
    weights = {name: array.T for name, array in read.items()}  # torch [out, in] -> paddle [in, out]: a copy each
    expected = {name: np.array(array) for name, array in weights.items()}
    del read
    tracemalloc.start()
    try:
        mapped = weights_cache.mappable_weights(
            weights, dict.fromkeys(weights, "float32"), [tmp_path / "w.safetensors"], {}
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5 * one, f"{peak / one:.1f} weights' worth of arrays at once, of {layers}"
    assert_same(mapped, expected)
    assert all(array.flags.c_contiguous and array.ctypes.data % 64 == 0 for array in mapped.values())


def test_the_entry_is_a_safetensors_file_any_reader_takes_with_every_tensor_aligned(tmp_path):
    rng = np.random.RandomState(0)
    arrays = {
        "odd": rng.randn(3, 5).astype("float32"),  # 60 bytes: placed after the aligned ones
        "scalar": np.asarray(1.5, dtype="float32"),
        "big": rng.randn(64, 8).astype("float32"),
        "ids": np.arange(7, dtype="int64"),
        "half": rng.randn(32).astype("float16"),
    }
    specs = [(name, array.shape, str(array.dtype)) for name, array in arrays.items()]
    path = write_aligned_safetensors(tmp_path / "e.safetensors", specs, arrays.__getitem__)
    assert_same(load_file(str(path)), arrays)  # the safetensors library's own reader
    (size,) = struct.unpack("<Q", path.read_bytes()[:8])
    header = json.loads(path.read_bytes()[8 : 8 + size])
    assert (8 + size) % 64 == 0
    aligned = [name for name in arrays if arrays[name].nbytes % 64 == 0]
    assert all(header[name]["data_offsets"][0] % 64 == 0 for name in aligned)
    assert not list(tmp_path.glob("*.tmp"))


def test_other_conversions_of_the_same_file_are_kept_and_only_its_own_old_entry_goes(tmp_path):
    file = tmp_path / "w.safetensors"
    save_file({"w": np.arange(12, dtype="float32").reshape(3, 4)}, str(file))

    def convert(recipe):
        weights = {"w": read_safetensors(file, writable=True)["w"].T}
        return weights_cache.mappable_weights(weights, {"w": "float32"}, [file], recipe)["w"]

    convert({"image_size": 224})
    convert({"image_size": 364})  # another conversion of the same file: both stay
    assert len(entries()) == 2
    stat = file.stat()
    os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    np.testing.assert_array_equal(convert({"image_size": 364}), np.arange(12).reshape(3, 4).T)
    assert len(entries()) == 2  # the 364 one replaced, the 224 one kept
