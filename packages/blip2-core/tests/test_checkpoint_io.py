"""checkpoint_io against files written by torch.save, paddle.save and safetensors (fixtures/io/make_io_fixtures.py)."""

from __future__ import annotations

import json
import logging
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file

from blip2_core.checkpoint_io import (
    CheckpointError,
    UnsafePickleError,
    UntrustedPickleError,
    parse_size,
    read_safetensors,
    read_state_dict,
    write_safetensors,
)

FIXTURES = Path(__file__).parent / "fixtures" / "io"
EXPECTED_TORCH = dict(np.load(FIXTURES / "expected_torch.npz"))
EXPECTED_PADDLE = dict(np.load(FIXTURES / "expected_paddle.npz"))


def expected(prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix) + 1 :]: v for k, v in EXPECTED_TORCH.items() if k.startswith(prefix + "/")}


def assert_same(actual: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> None:
    assert list(actual) == list(reference)
    for key, ref in reference.items():
        assert actual[key].dtype == ref.dtype, key
        assert actual[key].shape == ref.shape, key
        np.testing.assert_array_equal(actual[key], ref, err_msg=key)


# ---------------------------------------------------------------------------------------------------- torch zip


def test_torch_state_matches_what_torch_saved():
    # fp32/fp16/bool/int, bf16 (widened exactly), views with offsets and strides, tied storages, 0-d, empty,
    # and uint16 (pickled through _rebuild_tensor_v3 with an untyped storage).
    state = read_state_dict(FIXTURES / "torch_state.pth", trust_pickle=True)
    assert_same(state, expected("state"))
    assert state["bf16.weight"].dtype == np.float32
    assert state["transposed"].flags.c_contiguous and state["transposed"].flags.writeable
    np.testing.assert_array_equal(state["transposed"], state["linear.weight"].T)
    state["tied.a"][0, 0] = 123.0  # tied names share a storage in torch, but must not share memory here
    assert state["tied.b"][0, 0] != 123.0


def test_module_state_dict_with_parameters_and_metadata():
    state = read_state_dict(FIXTURES / "torch_module.bin", trust_pickle=True)
    assert_same(state, expected("module"))
    np.testing.assert_array_equal(state["weight"], np.arange(6, dtype=np.float32).reshape(2, 3))


def test_lavis_checkpoint_returns_the_inner_model_state_dict():
    state = read_state_dict(FIXTURES / "lavis_style.pth", trust_pickle=True)
    assert sorted(state) == ["qformer.weight", "vision.bf16"]
    np.testing.assert_array_equal(state["qformer.weight"], EXPECTED_TORCH["state/tied.a"])
    np.testing.assert_array_equal(state["vision.bf16"], EXPECTED_TORCH["state/bf16.weight"])


def test_legacy_torch_file_asks_for_a_resave(monkeypatch):
    import pickle

    def refuse(*args, **kwargs):
        raise AssertionError("the head of an untrusted file was unpickled")

    monkeypatch.setattr(pickle, "loads", refuse)  # recognised by its bytes, never by unpickling them
    with pytest.raises(CheckpointError, match=r"legacy .*Re-save it with a recent torch"):
        read_state_dict(FIXTURES / "legacy.pth", trust_pickle=True)


def test_a_crafted_file_head_is_not_run(tmp_path):
    ran = tmp_path / "ran"
    crafted = tmp_path / "crafted.pth"  # a pickle head calling os.system, not a zip
    crafted.write_bytes(b"\x80\x02cos\nsystem\n(Vtouch " + str(ran).encode() + b"\ntR.")
    with pytest.raises(CheckpointError, match="not a torch zip checkpoint"):
        read_state_dict(crafted, trust_pickle=True)
    assert not ran.exists()


@pytest.mark.parametrize("name", ["torch_state.pth", "torch_module.bin", "paddle_state.pdparams"])
def test_pickles_need_trust(name):
    with pytest.raises(UntrustedPickleError) as info:
        read_state_dict(FIXTURES / name)
    message = str(info.value)
    assert name in message and "trust_pickle=True" in message and "safetensors" in message


def test_trusted_pickle_is_read_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="blip2_core.checkpoint_io"):
        read_state_dict(FIXTURES / "torch_module.bin", trust_pickle=True)
    assert any("torch_module.bin is a pickle" in r.getMessage() for r in caplog.records)


def rewrite_zip(source: Path, target: Path, replace: dict[str, bytes]) -> None:
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            suffix = info.filename.split("/", 1)[1]
            dst.writestr(info.filename, replace.get(suffix, src.read(info.filename)))


def test_forbidden_class_is_refused_by_name_and_never_called(tmp_path):
    marker = tmp_path / "ran"
    # What a malicious checkpoint would hold: os.system("touch <marker>") as the pickle's payload.
    payload = b"\x80\x02cos\nsystem\nX" + len(f"touch {marker}").to_bytes(4, "little") + f"touch {marker}".encode()
    payload += b"\x85R."
    evil = tmp_path / "evil.pth"
    rewrite_zip(FIXTURES / "torch_module.bin", evil, {"data.pkl": payload})
    with pytest.raises(UnsafePickleError, match=r"os\.system"):
        read_state_dict(evil, trust_pickle=True)
    evil_paddle = tmp_path / "evil.pdparams"
    evil_paddle.write_bytes(payload)
    with pytest.raises(UnsafePickleError, match=r"os\.system"):
        read_state_dict(evil_paddle, trust_pickle=True)
    assert not marker.exists()
    # Sanity check of the payload itself: plain pickle would have run it.
    assert pickle.loads(payload) == 0 and marker.exists()


def test_tensor_reaching_past_its_storage_is_an_error(tmp_path):
    # Truncate the first storage: as_strided would read past the buffer without the bounds check.
    with zipfile.ZipFile(FIXTURES / "torch_state.pth") as archive:
        first = next(n for n in archive.namelist() if n.endswith("/data/0"))
        short = archive.read(first)[:8]
    broken = tmp_path / "broken.pth"
    rewrite_zip(FIXTURES / "torch_state.pth", broken, {"data/0": short})
    with pytest.raises(CheckpointError, match="reaches past its storage"):
        read_state_dict(broken, trust_pickle=True)


# ---------------------------------------------------------------------------------------------------- paddle


@pytest.mark.parametrize("name", ["paddle_state.pdparams", "paddle_state_p2.pdparams"])
def test_paddle_pickle_matches_what_paddle_saved(name):
    # Protocol 4 (paddle's default) and 2; bf16 is stored by paddle as uint16 and must widen like paddle's cast.
    state = read_state_dict(FIXTURES / name, trust_pickle=True)
    assert sorted(state) == sorted(EXPECTED_PADDLE)
    for key, ref in EXPECTED_PADDLE.items():
        assert state[key].dtype == ref.dtype, key
        np.testing.assert_array_equal(state[key], ref, err_msg=key)


def test_paddle_split_big_parameter_is_reassembled(tmp_path):
    # The layout of paddle/framework/io_utils.py _unpack_saved_dict for arrays over 1 GiB (protocol 2/3),
    # made small here: slices of the flattened array plus an info entry with the original shape.
    full = np.arange(24, dtype=np.float32).reshape(4, 6)
    saved = {
        "w@@.0": full.reshape(-1)[:10],
        "w@@.1": full.reshape(-1)[10:20],
        "w@@.2": full.reshape(-1)[20:],
        "b": ("b_tmp", np.ones(2, dtype=np.float32)),
        "UnpackBigParamInfor@@": {"w": {"OriginShape": (4, 6), "slices": ["w@@.0", "w@@.1", "w@@.2"]}},
        "StructuredToParameterName@@": {"w": "linear_0.w_0"},
    }
    path = tmp_path / "model_state.pdparams"
    path.write_bytes(pickle.dumps(saved, protocol=2))
    state = read_state_dict(tmp_path, trust_pickle=True)
    assert sorted(state) == ["b", "w"]
    np.testing.assert_array_equal(state["w"], full)


# ---------------------------------------------------------------------------------------------------- safetensors


def test_reads_safetensors_written_by_torch_including_bf16():
    state = read_state_dict(FIXTURES / "torch_written.safetensors")
    np.testing.assert_array_equal(state["a"], EXPECTED_TORCH["state/linear.weight"])
    np.testing.assert_array_equal(state["b"], EXPECTED_TORCH["state/bf16.weight"])
    assert state["b"].dtype == np.float32
    np.testing.assert_array_equal(state["h"], EXPECTED_TORCH["state/half.weight"])
    assert state["s"].shape == () and state["s"] == np.float32(1.25)


def sample_state() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    base = rng.standard_normal((6, 8)).astype(np.float32)
    return {
        "dense": base,
        "transposed": base.T,  # a strided view: must be compacted, not written as raw memory
        "every_other": base[:, ::2],
        "scalar": np.float32(3.5) * np.ones((), np.float32),
        "half": rng.standard_normal(5).astype(np.float16),
        "ints": np.arange(7, dtype=np.int64),
        "mask": np.array([True, False]),
        "big_endian": np.arange(3, dtype=">i4"),
    }


def test_write_single_file_round_trips_and_is_readable_by_safetensors(tmp_path):
    state = sample_state()
    written = write_safetensors(state, tmp_path)
    assert written == [tmp_path / "model.safetensors"]
    for reader in (read_state_dict, lambda p: load_file(str(p / "model.safetensors"))):
        back = reader(tmp_path)
        assert sorted(back) == sorted(state)
        for key, value in state.items():
            np.testing.assert_array_equal(back[key], value, err_msg=key)
            assert back[key].shape == value.shape, key
    assert read_state_dict(tmp_path)["scalar"].ndim == 0
    with safe_open(str(tmp_path / "model.safetensors"), framework="numpy") as f:
        assert f.metadata() is None  # accepted by both transformers and paddlenlp


def test_write_sharded_layout_matches_hf_and_round_trips(tmp_path):
    state = sample_state()
    (tmp_path / "model.safetensors").write_bytes(b"stale")  # a stale single file must not shadow the shards
    written = write_safetensors(state, tmp_path, max_shard_size=200)
    names = [p.name for p in written]
    shards = names[:-1]
    assert names[-1] == "model.safetensors.index.json"
    assert shards == [f"model-{i:05d}-of-{len(shards):05d}.safetensors" for i in range(1, len(shards) + 1)]
    assert len(shards) > 2
    assert not (tmp_path / "model.safetensors").exists()
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert index["metadata"]["total_size"] == sum(np.asarray(v).nbytes for v in state.values())
    assert sorted(index["weight_map"]) == sorted(state)
    for key, shard in index["weight_map"].items():
        assert key in load_file(str(tmp_path / shard))
    back = read_state_dict(tmp_path)
    for key, value in state.items():
        np.testing.assert_array_equal(back[key], value, err_msg=key)
    # Writing again unsharded removes the shards and the index.
    write_safetensors(state, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_missing_shard_is_named(tmp_path):
    write_safetensors(sample_state(), tmp_path, max_shard_size=200)
    victim = sorted(tmp_path.glob("model-*.safetensors"))[1]
    victim.unlink()
    with pytest.raises(CheckpointError, match=victim.name):
        read_state_dict(tmp_path)


def test_truncated_safetensors_is_an_error(tmp_path):
    write_safetensors(sample_state(), tmp_path)
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-10])
    with pytest.raises(CheckpointError, match="cut.safetensors"):
        read_safetensors(tmp_path / "cut.safetensors")


# ---------------------------------------------------------------------------------------------------- directories


def test_directory_with_torch_shards_needs_trust_and_reads_all(tmp_path):
    shutil.copy(FIXTURES / "torch_state.pth", tmp_path / "pytorch_model-00001-of-00002.bin")
    shutil.copy(FIXTURES / "torch_module.bin", tmp_path / "pytorch_model-00002-of-00002.bin")
    weight_map = {k: "pytorch_model-00001-of-00002.bin" for k in expected("state")}
    weight_map.update({k: "pytorch_model-00002-of-00002.bin" for k in expected("module")})
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    with pytest.raises(UntrustedPickleError, match="pytorch_model-00001-of-00002.bin"):
        read_state_dict(tmp_path)
    state = read_state_dict(tmp_path, trust_pickle=True)
    assert sorted(state) == sorted(weight_map)
    np.testing.assert_array_equal(state["bf16.weight"], EXPECTED_TORCH["state/bf16.weight"])
    np.testing.assert_array_equal(state["bias"], EXPECTED_TORCH["module/bias"])


def test_directory_prefers_safetensors_over_pickles(tmp_path):
    shutil.copy(FIXTURES / "torch_module.bin", tmp_path / "pytorch_model.bin")
    write_safetensors({"only": np.ones(2, np.float32)}, tmp_path)
    assert list(read_state_dict(tmp_path)) == ["only"]  # no trust needed: the pickle is never opened


def test_directory_with_pytorch_model_bin_and_pdparams(tmp_path):
    torch_dir, paddle_dir = tmp_path / "t", tmp_path / "p"
    torch_dir.mkdir()
    paddle_dir.mkdir()
    shutil.copy(FIXTURES / "torch_module.bin", torch_dir / "pytorch_model.bin")
    shutil.copy(FIXTURES / "paddle_state.pdparams", paddle_dir / "model_state.pdparams")
    assert_same(read_state_dict(torch_dir, trust_pickle=True), expected("module"))
    assert sorted(read_state_dict(paddle_dir, trust_pickle=True)) == sorted(EXPECTED_PADDLE)


def test_empty_directory_and_missing_path(tmp_path):
    with pytest.raises(CheckpointError, match="model.safetensors.index.json"):
        read_state_dict(tmp_path)
    with pytest.raises(FileNotFoundError):
        read_state_dict(tmp_path / "nope")
    (tmp_path / "weights.npz").write_bytes(b"")
    with pytest.raises(CheckpointError, match="unknown checkpoint type"):
        read_state_dict(tmp_path / "weights.npz")


def test_parse_size():
    assert parse_size("5GB") == 5 * 10**9
    assert parse_size("500MiB") == 500 * 2**20
    assert parse_size(123) == 123
    with pytest.raises(ValueError):
        parse_size("5 parsecs")
    with pytest.raises(ValueError):
        parse_size(0)
