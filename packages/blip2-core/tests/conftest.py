import os
from pathlib import Path

import pytest


# fixtures_dir is the same few lines in eva-vit, qformer and blip2-core: each package's tests run alone.
@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """Golden fixtures from HF transformers: the committed copy, or a live one from `nox -s parity`."""
    live = os.environ.get("BLIP2_PARITY_FIXTURES")
    return Path(live) if live else Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    # No test may reach a hub: an empty cache in offline mode turns any attempt into a clear error.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("BLIP2_HOME", str(tmp_path / "blip2-home"))
