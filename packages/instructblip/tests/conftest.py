import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


# fixtures_dir is the same few lines in each package with golden fixtures: each package's tests run alone.
@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """Golden fixtures from HF transformers: the committed copy, or a live one from `nox -s parity`."""
    live = os.environ.get("BLIP2_PARITY_FIXTURES")
    return Path(live) / "instructblip" if live else Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    # No test may reach a hub: an empty cache in offline mode turns any attempt into a clear error.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("BLIP2_HOME", str(tmp_path / "blip2-home"))


WORDS = ["a", "photo", "of", "what", "is", "in", "the", "picture", "question", "short", "answer", ":", "?", "cat",
         "describe", "image", "caption", "color", "shape", "how", "many"]  # fmt: skip


def write_wordpiece(directory: Path, vocab_size: int) -> Path:
    """A real WordPiece tokenizer over ``vocab_size`` ids (WORDS, then filler words)."""
    directory.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    vocab += [f"w{i}" for i in range(vocab_size - len(vocab))]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (directory / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "BertTokenizer", "do_lower_case": True})
    )
    return directory


@pytest.fixture(scope="session", params=["t5", "llama"])
def model_dir(request, fixtures_dir, tmp_path_factory):
    """The tiny InstructBLIP (HF's files) as a model directory the tools read: the LLM's tokenizer beside the
    weights (WordPiece over its 100 ids) and the Q-Former's in qformer_tokenizer/, as HF's repos ship it."""
    directory = tmp_path_factory.mktemp(request.param) / "instructblip"
    shutil.copytree(fixtures_dir / request.param / "hf", directory)
    write_wordpiece(directory, 100)
    write_wordpiece(directory / "qformer_tokenizer", 99)
    return directory


@pytest.fixture(scope="session")
def image_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("images") / "x.jpg"
    Image.fromarray(np.random.RandomState(0).randint(0, 255, (60, 80, 3), dtype=np.uint8)).save(path)
    return path
