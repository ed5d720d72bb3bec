import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_checkpoints import copy_with_wordpiece_tokenizer


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
    return copy_with_wordpiece_tokenizer(fixtures_dir / "opt" / "hf", tmp_path_factory.mktemp("model") / "blip2", 100)


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


# -- blip2-serve ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_predictor(model_dir):
    """The tiny model, loaded once for all the service's tests."""
    from blip2_core.inference.predictor import Predictor

    return Predictor.load(str(model_dir))


@pytest.fixture
def start_server():
    """``start_server(app) -> base URL``: the app under uvicorn in a thread, on a free port of 127.0.0.1 only;
    stopped (its batching worker too) when the test ends."""
    import socket
    import threading
    import time

    import uvicorn

    running = []

    def start(app) -> str:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "the test server did not start"
            time.sleep(0.02)
        running.append((server, thread, sock))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

    yield start
    for server, thread, sock in running:
        server.should_exit = True
        thread.join(30)
        sock.close()


@pytest.fixture(scope="session")
def stage1_dir(fixtures_dir, tmp_path_factory):
    """The tiny stage-1 model (ITC heads) with a WordPiece tokenizer over its 99 ids: a gallery's model."""
    directory = tmp_path_factory.mktemp("stage1") / "blip2-stage1"
    return copy_with_wordpiece_tokenizer(fixtures_dir / "stage1" / "hf", directory, 99)
