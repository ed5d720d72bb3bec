import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

WORDS = ["a", "photo", "of", "what", "is", "in", "the", "picture", "question", "answer", ":", "?", "cat", "dog"]


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


@pytest.fixture(scope="session")
def model_dir(fixtures_dir, tmp_path_factory):
    """The tiny OPT model with a real (WordPiece) tokenizer over its 100 ids, as blip2-predict reads it."""
    directory = tmp_path_factory.mktemp("model") / "blip2"
    shutil.copytree(fixtures_dir / "opt" / "hf", directory)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
    vocab += [f"w{i}" for i in range(100 - len(vocab))]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (directory / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "BertTokenizer", "do_lower_case": True})
    )
    return directory


@pytest.fixture(scope="session")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.RandomState(0)
    paths = []
    for i in range(2):
        path = folder / f"image{i}.jpg"
        Image.fromarray(rng.randint(0, 255, (80, 100, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths
