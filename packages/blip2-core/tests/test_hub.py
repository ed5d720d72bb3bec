"""hub.resolve with local paths, a hand-made HF cache under HF_HUB_OFFLINE=1, and an unreachable endpoint.

No real host is contacted: the only network use is a connection refused by a closed port on 127.0.0.1.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from blip2_core.loading.hub import ModelNotAvailableError, hub_cache_dir, resolve, split_repo_id

COMMIT = "0123456789abcdef0123456789abcdef01234567"
REPO = "paddlemix/blip2-stage2"


@pytest.fixture(autouse=True)
def clean_hub_env(monkeypatch, tmp_path):
    for variable in (
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
        "HF_HOME",
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
        "BLIP2_OFFLINE",
        "HF_ENDPOINT",
    ):
        monkeypatch.delenv(variable, raising=False)
    # Nothing here may fall back to the real user cache.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


def make_cache(root: Path, repo_id: str = REPO) -> Path:
    """The layout huggingface_hub writes: models--org--name/{refs/main, snapshots/<commit>/...}."""
    repo_dir = root / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / COMMIT
    (snapshot / "eva_vit_g").mkdir(parents=True)
    (snapshot / "Qformer").mkdir()
    (snapshot / "config.json").write_text("{}")
    (snapshot / "eva_vit_g" / "model.safetensors").write_bytes(b"vision")
    (snapshot / "Qformer" / "model_state.pdparams").write_bytes(b"qformer")
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(COMMIT)
    return snapshot


def closed_local_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_existing_local_directory_and_file_are_returned_as_is(tmp_path):
    model_dir = tmp_path / "org" / "name"
    model_dir.mkdir(parents=True)
    weights = model_dir / "model.safetensors"
    weights.write_bytes(b"x")
    assert resolve(model_dir) == model_dir
    assert resolve(str(weights)) == weights


def test_missing_path_is_not_taken_for_a_repo(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file or directory"):
        resolve(str(tmp_path / "missing"))


def test_split_repo_id():
    assert split_repo_id("Salesforce/blip2-opt-2.7b") == ("Salesforce/blip2-opt-2.7b", None)
    assert split_repo_id("paddlemix/blip2-stage2/eva_vit_g") == ("paddlemix/blip2-stage2", "eva_vit_g")
    assert split_repo_id("org/name/a/b/") == ("org/name", "a/b")
    with pytest.raises(ValueError):
        split_repo_id("org/../etc")


def test_offline_cache_hit_repo_subfolder_and_patterns(tmp_path, monkeypatch):
    snapshot = make_cache(tmp_path / "hub")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve(REPO) == snapshot
    assert resolve(f"{REPO}/eva_vit_g") == snapshot / "eva_vit_g"
    assert resolve(f"{REPO}/eva_vit_g", allow_patterns=["*.safetensors"]) == snapshot / "eva_vit_g"
    assert resolve(REPO, allow_patterns="*.json", revision=COMMIT) == snapshot
    with pytest.raises(ModelNotAvailableError, match=r"eva_vit_g/\*\.bin"):
        resolve(f"{REPO}/eva_vit_g", allow_patterns=["*.bin"])
    with pytest.raises(ModelNotAvailableError, match="'text_model' is not in the cached snapshot"):
        resolve(f"{REPO}/text_model")


def test_hf_home_locates_the_cache(tmp_path, monkeypatch):
    snapshot = make_cache(tmp_path / "home" / "hub")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "true")
    assert hub_cache_dir() == tmp_path / "home" / "hub"
    assert resolve(f"{REPO}/Qformer") == snapshot / "Qformer"


def test_offline_and_not_cached_says_what_to_fetch_and_where(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError) as info:
        resolve("Salesforce/blip2-opt-2.7b", allow_patterns=["*.json", "*.safetensors"])
    message = str(info.value)
    assert isinstance(info.value, OSError)
    assert "Salesforce/blip2-opt-2.7b" in message and "HF_HUB_OFFLINE" in message
    assert "*.json, *.safetensors" in message
    assert "huggingface-cli download Salesforce/blip2-opt-2.7b --include '*.json' --include '*.safetensors'" in message
    assert "--local-dir DIR" in message and str(tmp_path / "hub") in message
    assert "models--Salesforce--blip2-opt-2.7b" in message


def test_offline_subfolder_message_names_the_subfolder(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("BLIP2_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError) as info:
        resolve(f"{REPO}/eva_vit_g")
    message = str(info.value)
    assert "--include 'eva_vit_g/*'" in message and "pass DIR/eva_vit_g" in message


def test_unreachable_hub_raises_quickly_or_falls_back_to_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_local_port()}")
    start = time.monotonic()
    with pytest.raises(ModelNotAvailableError, match="could not be reached") as info:
        resolve("Salesforce/blip2-itm-vit-g")
    assert time.monotonic() - start < 20
    # one plain sentence, not huggingface_hub's urllib3 retry repr, and no chain of its frames
    message = str(info.value)
    assert "MaxRetryError" not in message and "HTTPConnectionPool" not in message and "Errno" not in message
    assert info.value.__suppress_context__
    snapshot = make_cache(tmp_path / "hub")
    assert resolve(REPO) == snapshot


def test_import_does_not_load_huggingface_hub():
    code = "import sys, blip2_core.loading.hub; assert 'huggingface_hub' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
