import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import tiny  # noqa: E402

CORE_FIXTURES = Path(__file__).parents[2] / "blip2-core" / "tests" / "fixtures"


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("BLIP2_HOME", str(tmp_path / "blip2-home"))


@pytest.fixture(scope="session")
def assets(tmp_path_factory):
    """Tiny vision encoder, BERT, OPT and caption data, written once."""
    root = tmp_path_factory.mktemp("assets")
    return {
        "vision": tiny.write_vision_only(root / "vision"),
        "vision_no_dropout": tiny.write_vision_only(root / "vision0", dropout=0.0),
        "bert": tiny.write_bert(root / "bert"),
        "llm": tiny.write_llm(root / "llm", CORE_FIXTURES / "opt" / "llm"),
        "llm_no_dropout": tiny.write_llm(root / "llm0", CORE_FIXTURES / "opt" / "llm", dropout=0.0),
        "data": tiny.write_captions(root / "data"),
        "data_lengths": tiny.write_captions(root / "data_lengths", words=(1, 6)),  # 3 to 8 tokens with [CLS]/[SEP]
        "root": root,
    }
