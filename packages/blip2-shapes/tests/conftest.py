import pytest


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    # No test may reach a hub: an empty cache in offline mode turns any attempt into a clear error.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("BLIP2_HOME", str(tmp_path / "blip2-home"))
