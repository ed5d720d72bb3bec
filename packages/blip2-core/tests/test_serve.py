"""blip2-serve: batching of concurrent requests, the bounded queue, validation, and the command itself.

Every server here listens on 127.0.0.1 only, and every burst is a few requests with timeouts.
"""

import base64
import functools
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

pytest.importorskip("fastapi", reason="the service's tests need blip2-core[serve]")

from blip2_core.inference.predictor import GenerationSettings  # noqa: E402
from blip2_core.serve.app import create_app  # noqa: E402
from blip2_core.serve.schemas import Limits  # noqa: E402

FAST = {"num_beams": "2", "max_new_tokens": "6", "min_new_tokens": "1"}
FAST_SETTINGS = GenerationSettings(num_beams=2, max_new_tokens=6, min_new_tokens=1)


def jpeg(seed: int, size=(60, 80)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.RandomState(seed).randint(0, 255, (*size, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


class Recorder:
    """The predictor, with each model call's batch size recorded (and, if asked, held until released)."""

    def __init__(self, predictor, gate: threading.Event | None = None, fail_on_uniform: bool = False) -> None:
        self.predictor, self.gate, self.fail_on_uniform = predictor, gate, fail_on_uniform
        self.calls: list[tuple[str, int]] = []
        self.entered = threading.Event()

    def __getattr__(self, name):
        return getattr(self.predictor, name)

    def _record(self, task, pixels):
        self.calls.append((task, len(pixels)))
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(60), "the test never released the model"
        if self.fail_on_uniform and any(np.ptp(p, axis=(1, 2)).max() == 0 for p in pixels):
            raise RuntimeError("this model cannot take a blank image")

    def caption(self, pixels, prompt, settings):
        self._record("caption", pixels)
        return self.predictor.caption(pixels, prompt, settings)

    def answer(self, pixels, questions, settings):
        self._record("vqa", pixels)
        return self.predictor.answer(pixels, questions, settings)

    def features(self, pixels):
        self._record("features", pixels)
        return self.predictor.features(pixels)


def one_by_one(predictor, data: bytes, question=None, settings=FAST_SETTINGS):
    pixels = [predictor.pixels(Image.open(io.BytesIO(data)).convert("RGB"))]
    if question is None:
        return predictor.caption(pixels, "", settings)[0]
    return predictor.answer(pixels, [question], settings)[0]


def post(url, path, data=None, files=None, json_body=None, timeout=60):
    return requests.post(url + path, data=data, files=files, json=json_body, timeout=timeout)


@pytest.fixture
def served(tiny_predictor, start_server):
    """A server with a batch window long enough that a burst of requests meets in it, and small limits."""
    recorder = Recorder(tiny_predictor)
    limits = Limits(max_image_bytes=50_000, max_image_pixels=200 * 200, max_new_tokens=20, max_num_beams=4)
    app = create_app(recorder, limits=limits, max_batch_size=4, max_wait=1.0, max_queue=16)
    return start_server(app), recorder


def test_concurrent_requests_share_model_calls_and_answer_as_one_by_one(served, tiny_predictor):
    url, recorder = served
    images = [jpeg(seed) for seed in range(4)]
    questions = ["what is it?", "what is in the picture of the cat?", "cat?", "what is the photo of a dog?"]

    def ask(i):
        if i < 4:
            reply = post(url, "/v1/caption", data=FAST, files={"image": (f"{i}.jpg", images[i])})
            return reply.status_code, reply.json().get("caption")
        reply = post(url, "/v1/vqa", data={**FAST, "question": questions[i - 4]}, files={"image": images[i - 4]})
        return reply.status_code, reply.json().get("answer")

    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(ask, range(8)))
    assert [status for status, _ in replies] == [200] * 8  # none lost
    # fewer model calls than requests: captions went together, and so did answers (to different questions)
    assert len(recorder.calls) < 8 and max(size for _, size in recorder.calls) > 1, recorder.calls
    assert sum(size for _, size in recorder.calls) == 8
    expected = [one_by_one(tiny_predictor, image) for image in images]
    expected += [one_by_one(tiny_predictor, image, question) for image, question in zip(images, questions)]
    assert [text for _, text in replies] == expected  # none wrong: each reply is its own image's


def test_bad_requests_get_a_4xx_saying_what_was_wrong(served):
    url, recorder = served
    good = jpeg(0)
    big = io.BytesIO()
    Image.new("RGB", (300, 300), (10, 200, 30)).save(big, "PNG")  # over the pixel limit, under the byte limit
    big = big.getvalue()
    huge = np.random.RandomState(2).bytes(60_000)  # over the byte limit
    cases = [
        ({"files": {"image": ("notes.txt", b"hello, not an image")}}, 400, "notes.txt is not a readable image"),
        ({"files": {"image": ("cut.jpg", good[: len(good) // 2])}}, 400, "cut.jpg is not a readable image"),
        ({"files": {"image": ("empty.jpg", b"")}}, 400, "empty.jpg is empty (0 bytes)"),
        ({"files": {"image": ("big.jpg", big)}}, 413, "big.jpg is 300x300 pixels, more than the limit of 40000"),
        ({"files": {"image": ("huge.jpg", huge)}}, 413, "more than 50000 bytes, this server's limit"),
        ({"files": {"image": good}, "data": {"nmu_beams": "3"}}, 422, "unknown field 'nmu_beams' (allowed: "),
        ({"files": {"image": good}, "data": {"num_beams": "0"}}, 422, "num_beams: Input should be greater than"),
        ({"files": {"image": good}, "data": {"num_beams": "two"}}, 422, "num_beams: Input should be a valid integer"),
        ({"files": {"image": good}, "data": {"num_beams": "9"}}, 422, "num_beams: at most 4 on this server, got 9"),
        ({"files": {"image": good}, "data": {"temperature": "-1"}}, 422, "temperature: Input should be greater"),
        ({"files": {"image": good}, "data": {"top_p": "2"}}, 422, "top_p: Input should be less than or equal to 1"),
        ({"files": {"image": good}, "data": {"max_new_tokens": "500"}}, 422, "max_new_tokens: at most 20"),
        (
            {"files": {"image": good}, "data": {"min_new_tokens": "9", "max_new_tokens": "5"}},
            422,
            "min_new_tokens (9) is more than max_new_tokens (5)",
        ),
        ({"data": {"num_beams": "2"}, "files": {"x": ("a", b"")}}, 422, "unknown file field 'x'"),
        ({"json_body": {"num_beams": 2}}, 422, "no image: upload a file as 'image', or give image_url"),
        ({"json_body": {"image_url": "http://x/a.jpg", "image_base64": "AAAA"}}, 422, "one image per request"),
        ({"files": {"image": good}, "data": {"image_url": "http://x/a.jpg"}}, 422, "image_url: only in a JSON body"),
        ({"json_body": {"image_url": "http://127.0.0.1:9/a.jpg"}}, 422, "this server does not fetch URLs (start"),
        ({"json_body": {"image_base64": "***"}}, 422, "image_base64: not valid base64"),
        ({"json_body": [1, 2]}, 422, "the JSON body must be an object"),
        ({"data": {"x": "1"}}, 415, "unsupported content type 'application/x-www-form-urlencoded'"),
    ]
    for kwargs, status, message in cases:
        reply = post(url, "/v1/caption", **kwargs)
        assert (reply.status_code, message in reply.json()["detail"]) == (status, True), (kwargs, reply.text)
    reply = requests.post(url + "/v1/caption", data=b"{not json", headers={"content-type": "application/json"})
    assert reply.status_code == 400 and "the body is not valid JSON" in reply.json()["detail"]
    reply = post(url, "/v1/vqa", files={"image": good})
    assert reply.status_code == 422 and reply.json()["detail"] == "question: required"
    reply = post(url, "/v1/vqa", files={"image": good}, data={"question": ""})
    assert reply.status_code == 422 and "question: String should have at least 1 character" in reply.json()["detail"]

    # none of it reached the model, and the server still answers as before
    assert recorder.calls == []
    assert post(url, "/v1/caption", files={"image": good}, data=FAST).json()["caption"] == one_by_one(
        recorder.predictor, good
    )


def test_image_urls_base64_and_features(tiny_predictor, start_server, tmp_path):
    from blip2_core.serve.url_fetch import UrlFetcher

    (tmp_path / "cat.jpg").write_bytes(jpeg(3))
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    images = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=images.serve_forever, daemon=True).start()
    # images.example "resolves" to a public address whose connection lands on the loopback server: the real
    # address check passes it, and nothing leaves this machine
    public = "93.184.215.14"
    fetcher = UrlFetcher(
        max_bytes=50_000,
        timeout=10,
        resolve=lambda host, port: [public] if host == "images.example" else [],
        connect=lambda address, port, timeout: socket.create_connection(
            ("127.0.0.1", images.server_address[1]), timeout
        ),
    )
    url = start_server(create_app(tiny_predictor, url_fetcher=fetcher, max_wait=0.0))
    try:
        image_url = "http://images.example/cat.jpg"
        by_url = post(url, "/v1/caption", json_body={"image_url": image_url, "num_beams": 2, "max_new_tokens": 6})
        missing = post(url, "/v1/caption", json_body={"image_url": image_url.replace("cat", "dog")})
    finally:
        images.shutdown()
    expected = one_by_one(tiny_predictor, jpeg(3), settings=GenerationSettings(num_beams=2, max_new_tokens=6))
    assert by_url.status_code == 200 and by_url.json()["caption"] == expected
    assert missing.status_code == 400 and missing.json()["detail"] == fetcher.message
    encoded = base64.b64encode(jpeg(3)).decode()
    by_b64 = post(url, "/v1/caption", json_body={"image_base64": encoded, "num_beams": 2, "max_new_tokens": 6})
    assert by_b64.json()["caption"] == expected

    reply = post(url, "/v1/features", files={"image": jpeg(3)})
    assert reply.status_code == 200
    features = np.array(reply.json()["features"], dtype="float32")
    direct = tiny_predictor.features([tiny_predictor.pixels(Image.open(io.BytesIO(jpeg(3))).convert("RGB"))])[0]
    assert list(features.shape) == reply.json()["shape"] == list(direct.shape)
    np.testing.assert_allclose(features, direct, atol=1e-5)
    assert post(url, "/v1/features", files={"image": jpeg(3)}, data={"num_beams": "2"}).status_code == 422


def test_model_info_health_and_docs(served):
    url, _ = served
    info = requests.get(url + "/v1/model", timeout=10).json()
    assert info["dtype"] == "float32" and info["image_size"] == 56 and info["decoder_only"] is True
    caption, answer = info["caption_defaults"], info["answer_defaults"]
    assert (caption["num_beams"], caption["max_new_tokens"], caption["min_new_tokens"]) == (5, 30, 8)
    assert caption["length_penalty"] == 1.0 and answer["length_penalty"] == 0.0  # LAVIS's, for this OPT model
    assert info["limits"]["max_num_beams"] == 4 and info["batching"]["max_batch_size"] == 4
    assert requests.get(url + "/healthz", timeout=10).json()["status"] == "ok"
    assert requests.get(url + "/docs", timeout=10).status_code == 200
    spec = requests.get(url + "/openapi.json", timeout=10).json()
    body = spec["paths"]["/v1/vqa"]["post"]["requestBody"]["content"]
    assert body["multipart/form-data"]["schema"]["properties"]["image"]["format"] == "binary"
    assert "question" in body["application/json"]["schema"]["required"]
    assert {"/v1/caption", "/v1/features", "/healthz", "/v1/model"} <= set(spec["paths"])


def test_a_full_queue_answers_503_with_retry_after_and_never_hangs(tiny_predictor, start_server):
    gate = threading.Event()
    recorder = Recorder(tiny_predictor, gate=gate)
    url = start_server(create_app(recorder, max_batch_size=1, max_wait=0.0, max_queue=2))
    with ThreadPoolExecutor(3) as pool:
        busy = pool.submit(post, url, "/v1/caption", data=FAST, files={"image": jpeg(0)})
        assert recorder.entered.wait(30)  # the worker holds the first request
        waiting = [pool.submit(post, url, "/v1/caption", data=FAST, files={"image": jpeg(i)}) for i in (1, 2)]
        deadline = time.monotonic() + 30
        while requests.get(url + "/healthz", timeout=10).json()["waiting"] < 2:
            assert time.monotonic() < deadline, "the two requests never reached the queue"
            time.sleep(0.05)
        started = time.monotonic()
        refused = [post(url, "/v1/caption", data=FAST, files={"image": jpeg(3)}, timeout=10) for _ in range(3)]
        assert time.monotonic() - started < 5  # refused at once, not after a wait
        for reply in refused:
            assert reply.status_code == 503 and int(reply.headers["Retry-After"]) >= 1
            assert "the server is busy (2 requests waiting)" in reply.json()["detail"]
        gate.set()
        assert [future.result(timeout=60).status_code for future in [busy, *waiting]] == [200, 200, 200]
    assert post(url, "/v1/caption", data=FAST, files={"image": jpeg(3)}).status_code == 200


def test_a_model_error_fails_only_its_own_request(tiny_predictor, start_server):
    recorder = Recorder(tiny_predictor, fail_on_uniform=True)
    url = start_server(create_app(recorder, max_batch_size=4, max_wait=0.5))
    blank = io.BytesIO()
    Image.new("RGB", (40, 40), (128, 128, 128)).save(blank, "PNG")
    uploads = [jpeg(0), blank.getvalue(), jpeg(1)]
    with ThreadPoolExecutor(3) as pool:
        replies = list(pool.map(lambda data: post(url, "/v1/caption", data=FAST, files={"image": data}), uploads))
    assert [reply.status_code for reply in replies] == [200, 500, 200]
    # what failed is named, the details (paths, paddle's internals) stay in the server's log
    assert "the model failed on this request (RuntimeError; the server's log has" in replies[1].text
    assert "blank image" not in replies[1].text
    assert [replies[0].json()["caption"], replies[2].json()["caption"]] == [
        one_by_one(tiny_predictor, jpeg(0)),
        one_by_one(tiny_predictor, jpeg(1)),
    ]
    assert requests.get(url + "/healthz", timeout=10).json()["status"] == "ok"


def test_a_vqa_model_beside_answers_the_questions_and_only_them(tiny_predictor, start_server):
    # The default model's layout: captions from the stage-2 model, answers from its VQA model (blip2-shapes/vqa).
    captions, answers = Recorder(tiny_predictor), Recorder(tiny_predictor)
    url = start_server(create_app(captions, vqa_predictor=answers, max_batch_size=4, max_wait=0.0))
    image = jpeg(3)
    caption = post(url, "/v1/caption", data=FAST, files={"image": image})
    answer = post(url, "/v1/vqa", data={**FAST, "question": "what is it?"}, files={"image": image})
    assert caption.status_code == answer.status_code == 200
    assert captions.calls == [("caption", 1)] and answers.calls == [("vqa", 1)]
    assert answer.json()["answer"] == one_by_one(tiny_predictor, image, "what is it?")
    info = requests.get(url + "/v1/model", timeout=10).json()
    assert info["vqa_model"]["image_size"] == info["image_size"]


# -- the command --------------------------------------------------------------------------------------------


def test_blip2_serve_binds_loopback_by_default_and_serves(model_dir, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cli = Path(sys.executable).with_name("blip2-serve")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    log = open(tmp_path / "serve.log", "w+")
    process = subprocess.Popen([str(cli), "--model", str(model_dir), "--port", str(port)], env=env, stderr=log)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "blip2-serve did not start"
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        reply = requests.post(f"http://127.0.0.1:{port}/v1/caption", files={"image": jpeg(0)}, data=FAST, timeout=60)
        assert reply.status_code == 200 and reply.json()["caption"]
        info = requests.get(f"http://127.0.0.1:{port}/v1/model", timeout=5).text
        assert json.loads(info)["name"] == model_dir.name and str(model_dir.parent) not in info  # no server paths
    finally:
        process.terminate()
        process.wait(30)
        log.close()
    output = (tmp_path / "serve.log").read_text()
    assert f"Uvicorn running on http://127.0.0.1:{port}" in output
    assert "No ccache found" not in output  # start_command_line_tool() ran first


def test_blip2_serve_says_which_extra_is_missing_and_that_a_model_is_needed(monkeypatch, capsys):
    from blip2_core.serve import cli

    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if FastAPI were not installed
    assert cli.main(["--model", "anything"]) == 1
    assert "the service needs fastapi: pip install 'blip2-core[serve]'" in capsys.readouterr().err
    monkeypatch.delitem(sys.modules, "fastapi")
    from blip2_core.loading import default_model

    monkeypatch.setattr(default_model, "model_files_directory", lambda: None)  # blip2-shapes not installed
    assert cli.main([]) == 2
    err = capsys.readouterr().err
    assert "pip install blip2-shapes" in err and "or pass --model" in err and "blip2-predict --list-models" in err


def test_blip2_serve_without_a_model_answers_with_the_default_vqa_model(monkeypatch):
    import uvicorn

    from blip2_core.inference import predictor as inference
    from blip2_core.loading.default_model import default_model_path, default_vqa_path
    from blip2_core.serve import app as serve_app
    from blip2_core.serve import cli

    if default_vqa_path() is None:
        pytest.skip("this installation carries no default model")
    loaded, made = [], {}
    monkeypatch.setattr(inference.Predictor, "load", classmethod(lambda cls, path, **kw: loaded.append(path) or path))
    monkeypatch.setattr(serve_app, "create_app", lambda predictor, **kw: made.update(kw, predictor=predictor))
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: None)
    with socket.socket() as probe:  # a free port: the command checks that it can listen before loading
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    assert cli.main(["--port", port]) == 0
    assert made["predictor"] == str(default_model_path()) and made["vqa_predictor"] == str(default_vqa_path())
    loaded.clear()
    assert cli.main(["--model", "mine", "--port", port]) == 0  # a model named: it does everything, as before
    assert loaded == ["mine"] and made["vqa_predictor"] is None


# -- the gallery ----------------------------------------------------------------------------------------------


def test_gallery_search_ranks_by_itc_and_keeps_features_on_disk(stage1_dir, tiny_predictor, start_server, tmp_path):
    import paddle

    from blip2_core import Blip2Qformer
    from blip2_core.model.modeling import tokenize
    from blip2_core.serve.gallery import Gallery

    folder = tmp_path / "gallery"
    (folder / "sub").mkdir(parents=True)
    for seed, name in enumerate(["a.jpg", "sub/b.jpg", "c.jpg"]):
        (folder / name).write_bytes(jpeg(10 + seed))
    (folder / "bad.jpg").write_bytes(b"nope")
    cache = tmp_path / "cache"
    gallery = Gallery.load(str(stage1_dir), folder, cache_dir=cache)
    assert gallery.images == ["a.jpg", "c.jpg", "sub/b.jpg"] and gallery.encoded == 3
    assert len(gallery.skipped) == 1 and "bad.jpg is not a readable image" in gallery.skipped[0]

    # the ranking is the model's own ITC score of each image against the text
    model = Blip2Qformer.from_pretrained(stage1_dir)
    pixels = paddle.to_tensor(
        np.stack([gallery.processor(Image.open(folder / n).convert("RGB")) for n in gallery.images])
    )
    ids, mask = tokenize(gallery.tokenizer, ["a photo of a cat"], left_pad=False)
    expected = model.itc_scores(pixels, ids, mask).numpy()[:, 0]
    (hits,) = gallery.search(["a photo of a cat"], top_k=3)
    assert [hit["image"] for hit in hits] == [gallery.images[i] for i in np.argsort(-expected)]
    np.testing.assert_allclose([hit["score"] for hit in hits], np.sort(expected)[::-1], atol=1e-5)

    # started again: nothing encoded; one image changed: only it
    again = Gallery.load(str(stage1_dir), folder, cache_dir=cache)
    assert again.encoded == 0 and np.array_equal(again.features, gallery.features)
    (folder / "c.jpg").write_bytes(jpeg(99))
    assert Gallery.load(str(stage1_dir), folder, cache_dir=cache).encoded == 1

    url = start_server(create_app(tiny_predictor, gallery=gallery))
    reply = requests.post(url + "/v1/search", json={"text": "a photo of a cat", "top_k": 2}, timeout=30).json()
    assert [hit["image"] for hit in reply["results"]] == [hit["image"] for hit in hits[:2]] and reply["images"] == 3
    picture = requests.get(url + reply["results"][0]["url"], timeout=10)
    assert picture.content == (folder / reply["results"][0]["image"]).read_bytes()
    bad = requests.post(url + "/v1/search", json={"text": "cat", "topk": 2}, timeout=10)
    assert bad.status_code == 422 and "unknown field 'topk'" in bad.json()["detail"]
    assert requests.get(url + "/gallery/7", timeout=10).status_code == 404
    assert requests.get(url + "/v1/model", timeout=10).json()["gallery"]["images"] == 3


def test_no_gallery_says_how_to_start_one(served):
    url, _ = served
    reply = requests.post(url + "/v1/search", json={"text": "cat"}, timeout=10)
    assert reply.status_code == 404 and "--gallery DIR --gallery-model" in reply.json()["detail"]
