"""blip2-serve cannot be turned against its host or brought down by allowed requests: image_url off by default and
never inside, request bodies capped while they are read, decoding admitted against a pixel budget, generation
settings checked against the model, /docs offline, no server paths in replies, clear errors for --host/--port.

Every server here listens on 127.0.0.1 only; nothing is sent to any other address.
"""

import asyncio
import io
import json
import shutil
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from PIL import Image

pytest.importorskip("fastapi", reason="the service's tests need blip2-core[serve]")

from test_serve import FAST, Recorder, jpeg, post  # noqa: E402

from blip2_core.serve.app import create_app  # noqa: E402
from blip2_core.serve.pixel_budget import BudgetFullError, PixelBudget  # noqa: E402
from blip2_core.serve.schemas import Limits  # noqa: E402
from blip2_core.serve.url_fetch import UrlFetcher  # noqa: E402


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 40)).save(buffer, "PNG")
    return buffer.getvalue()


class Counting(BaseHTTPRequestHandler):
    """A loopback service that must never hear from the server: it counts what reaches it."""

    hits: list = []

    def do_GET(self):
        Counting.hits.append(self.path)
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{self.server.server_address[1]}/secret")
            self.end_headers()
            return
        body = b"loopback-only secret"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def inside_service():
    Counting.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Counting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


# -- image_url ------------------------------------------------------------------------------------------------


def test_image_urls_are_off_by_default(tiny_predictor, start_server, inside_service):
    url = start_server(create_app(Recorder(tiny_predictor), max_wait=0.0))
    reply = post(url, "/v1/caption", json_body={"image_url": f"http://127.0.0.1:{inside_service}/secret"})
    assert reply.status_code == 422 and "does not fetch URLs (start it with --allow-image-urls" in reply.text
    assert Counting.hits == []
    assert requests.get(url + "/v1/model", timeout=10).json()["limits"]["allow_image_urls"] is False


def test_with_urls_on_nothing_inside_is_fetched_and_every_refusal_reads_the_same(
    tiny_predictor, start_server, inside_service
):
    recorder = Recorder(tiny_predictor)
    url = start_server(create_app(recorder, limits=Limits(allow_image_urls=True), max_wait=0.0))
    own_port = url.rsplit(":", 1)[1]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    targets = [
        f"http://127.0.0.1:{own_port}/healthz",  # the server itself
        f"http://127.0.0.1:{inside_service}/secret",  # a loopback-only service
        f"http://127.0.0.1:{inside_service}/redirect",
        f"http://0x7f000001:{inside_service}/secret",
        f"http://2130706433:{inside_service}/secret",
        f"http://0177.0.0.1:{inside_service}/secret",
        f"http://127.1:{inside_service}/secret",
        f"http://[::ffff:127.0.0.1]:{inside_service}/secret",
        f"http://[::1]:{inside_service}/secret",
        f"http://localhost:{inside_service}/secret",
        f"http://127.0.0.1:{closed}/secret",  # a closed port reads the same as an open one
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://100.64.0.1/",
    ]
    details = set()
    for target in targets:
        reply = post(url, "/v1/caption", json_body={"image_url": target})
        assert reply.status_code == 400, (target, reply.text)
        details.add(reply.json()["detail"])
    assert len(details) == 1 and "public addresses only" in details.pop()
    assert Counting.hits == [] and recorder.calls == []

    # in a form, image_url is refused whatever it names: any web page can post a form to a local server
    reply = post(url, "/v1/caption", data={"image_url": "http://example.com/a.jpg"}, files={"image": jpeg(0)})
    assert reply.status_code == 422 and "only in a JSON body" in reply.json()["detail"]


def test_slow_sources_cannot_take_every_worker(tiny_predictor, start_server):
    """A source sending a byte a second is cut at the fetch's deadline, and past --max-url-fetches at once the
    server answers 503 at once instead of tying up more threads."""
    listener = socket.create_server(("127.0.0.1", 0))
    held = []

    def accept():
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            held.append(connection)
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nx")  # then nothing

    threading.Thread(target=accept, daemon=True).start()
    fetcher = UrlFetcher(
        max_bytes=50_000,
        timeout=3.0,
        resolve=lambda host, port: ["93.184.215.14"],  # public; the connection lands on the slow loopback source
        connect=lambda address, port, timeout: socket.create_connection(listener.getsockname(), timeout),
    )
    limits = Limits(allow_image_urls=True, max_url_fetches=2)
    url = start_server(create_app(Recorder(tiny_predictor), limits=limits, url_fetcher=fetcher, max_wait=0.0))
    body = {"image_url": "http://slow.example/a.jpg"}
    try:
        with ThreadPoolExecutor(2) as pool:
            started = time.monotonic()
            slow = [pool.submit(post, url, "/v1/caption", json_body=body) for _ in range(2)]
            deadline = time.monotonic() + 10
            while requests.get(url + "/healthz", timeout=10).json()["fetching_urls"] < 2:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            busy = post(url, "/v1/caption", json_body=body, timeout=5)
            assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
            replies = [future.result(timeout=30) for future in slow]
        assert [reply.status_code for reply in replies] == [400, 400]
        assert time.monotonic() - started < 8  # cut at the 3 s deadline, not after 1000 one-byte reads
        assert requests.get(url + "/healthz", timeout=10).json()["fetching_urls"] == 0
    finally:
        listener.close()
        for connection in held:
            connection.close()


# -- request bodies -------------------------------------------------------------------------------------------


def call_app(app, path: str, headers: dict, chunks) -> tuple[int, int, dict]:
    """One request straight into the ASGI app with its body from ``chunks`` (no Content-Length unless given:
    chunked); returns the status, how many body bytes the app pulled, and the reply."""
    pulled = 0
    sent = []

    async def receive():
        nonlocal pulled
        chunk = next(chunks, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(name.lower().encode(), value.encode()) for name, value in headers.items()],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }
    asyncio.run(app(scope, receive, send))
    status = next(message["status"] for message in sent if message["type"] == "http.response.start")
    body = b"".join(message.get("body", b"") for message in sent if message["type"] == "http.response.body")
    return status, pulled, json.loads(body)


def endless(first: bytes, chunk: bytes = b"A" * 65536, total: int = 30 * 1024 * 1024):
    """``first`` then ``chunk`` after ``chunk``, ``total`` bytes in all: a client that never stops sending."""
    yield first
    for _ in range(total // len(chunk)):
        yield chunk


@pytest.mark.parametrize("declared", [False, True], ids=["chunked", "content-length"])
def test_request_bodies_are_capped_while_they_are_read(tiny_predictor, declared):
    limits = Limits(max_image_bytes=100_000)
    app = create_app(Recorder(tiny_predictor), limits=limits)
    cap = 4 * 100_000 // 3 + 64 * 1024  # base64 of the largest image, and the fields around it
    size = {"content-length": str(30 * 1024 * 1024)} if declared else {}
    boundary = "b0undary"
    cases = [
        ("/v1/caption", {"content-type": "application/json"}, b'{"image_base64": "'),
        ("/v1/vqa", {"content-type": "application/json"}, b'{"question": "what?", "image_base64": "'),
        (
            "/v1/caption",
            {"content-type": f"multipart/form-data; boundary={boundary}"},
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n".encode(),
        ),
        ("/v1/search", {"content-type": "application/json"}, b'{"text": "'),
    ]
    for path, headers, first in cases:
        status, pulled, reply = call_app(app, path, {**headers, **size}, endless(first))
        if path == "/v1/search":  # no gallery: refused before the body is read at all
            assert status == 404 and pulled < 64 * 1024, (status, pulled)
            continue
        assert status == 413, (path, reply)
        assert "more than this server takes (--max-image-mb)" in reply["detail"]
        assert pulled <= cap + 2 * 65536, (path, pulled)  # never the 30 MB sent


def test_search_bodies_are_capped_too(tiny_predictor):
    gallery = SimpleNamespace(folder=Path("photos"), images=["a.jpg"], skipped=[], search=None)
    app = create_app(Recorder(tiny_predictor), gallery=gallery)
    status, pulled, reply = call_app(app, "/v1/search", {"content-type": "application/json"}, endless(b'{"text": "'))
    assert status == 413 and pulled <= 64 * 1024 + 2 * 65536


# -- decoding: a budget of pixels in flight ------------------------------------------------------------------


def test_decoding_is_admitted_against_the_pixels_in_flight(tiny_predictor, start_server, monkeypatch):
    from blip2_core.serve import request_image

    gate, entered = threading.Event(), threading.Event()
    real = request_image.decode_image

    def held(*args):
        if not entered.is_set():  # the first decode is held until the test lets it go
            entered.set()
            assert gate.wait(30)
        return real(*args)

    monkeypatch.setattr(request_image, "decode_image", held)
    limits = Limits(max_image_pixels=200 * 200, max_decoding_pixels=50_000, decoding_wait=0.3)
    url = start_server(create_app(Recorder(tiny_predictor), limits=limits, max_wait=0.0))
    first, second = png(150, 150), png(190, 190)  # 22500 + 36100 pixels: more than 50000 together
    with ThreadPoolExecutor(1) as pool:
        decoding = pool.submit(post, url, "/v1/caption", data=FAST, files={"image": first})
        assert entered.wait(30)
        assert requests.get(url + "/healthz", timeout=10).json()["decoding_pixels"] == 150 * 150
        started = time.monotonic()
        refused = post(url, "/v1/caption", data=FAST, files={"image": second}, timeout=10)
        assert time.monotonic() - started < 3  # waited briefly, then refused
        assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
        assert "busy decoding other images (at most 50000 pixels at once" in refused.json()["detail"]
        small = post(url, "/v1/caption", data=FAST, files={"image": png(100, 100)}, timeout=10)  # 10000 fits
        gate.set()
        assert decoding.result(timeout=60).status_code == 200
    assert small.status_code == 200
    assert post(url, "/v1/caption", data=FAST, files={"image": second}).status_code == 200
    assert requests.get(url + "/healthz", timeout=10).json()["decoding_pixels"] == 0


def test_the_pixel_budget_waits_then_refuses():
    async def scenario():
        budget = PixelBudget(100, wait=0.2)
        async with budget.admit(60):
            with pytest.raises(BudgetFullError):
                async with budget.admit(50):
                    pass
            async with budget.admit(40):  # fits beside
                assert budget.in_flight == 100

        async def later():
            async with budget.admit(60):
                await asyncio.sleep(0.1)

        holder = asyncio.ensure_future(later())
        await asyncio.sleep(0.01)
        async with budget.admit(90):  # waits for the first to finish, within the wait
            assert budget.in_flight == 90
        await holder
        async with budget.admit(500):  # alone, an image over the budget still goes (the per-image limit rules)
            pass
        assert budget.in_flight == 0

    asyncio.run(scenario())


def test_limits_refuse_a_decoding_budget_smaller_than_one_image():
    with pytest.raises(ValueError, match="max_decoding_pixels"):
        Limits(max_image_pixels=1000, max_decoding_pixels=999)


# -- generation settings checked against the model -----------------------------------------------------------


def test_generation_settings_the_model_cannot_run_get_a_422_naming_the_limit(tiny_predictor, start_server):
    recorder = Recorder(tiny_predictor)
    url = start_server(create_app(recorder, limits=Limits(max_new_tokens=64), max_wait=0.0))
    image = {"image": jpeg(0)}
    cases = [
        ("/v1/caption", {"min_new_tokens": "64"}, "min_new_tokens (64) must be <= max_new_tokens (30)"),
        ("/v1/caption", {"max_new_tokens": "64"}, "+ max_new_tokens (64) exceed the LLM's 64 positions"),
        ("/v1/caption", {"max_new_tokens": "64", "min_new_tokens": "64"}, "exceed the LLM's 64 positions"),
        ("/v1/caption", {"prompt": "a " * 250}, "exceed the LLM's 64 positions: shorten the prompt"),
        ("/v1/vqa", {"question": "what is it " * 45}, "exceed the LLM's 64 positions"),
        ("/v1/caption", {"length_penalty": "-10"}, "length_penalty: Input should be greater than or equal to -5"),
        ("/v1/vqa", {"question": "what?", "length_penalty": "6"}, "length_penalty: Input should be less than"),
    ]
    for path, fields, message in cases:
        reply = post(url, path, data=fields, files=image)
        assert reply.status_code == 422 and message in reply.json()["detail"], (fields, reply.text)
    assert recorder.calls == []  # refused before anything was queued
    # the longest that fits: 8 visual tokens + 2 prompt tokens + 54 new ones = the 64 positions
    reply = post(
        url, "/v1/caption", data={"num_beams": "1", "max_new_tokens": "54", "min_new_tokens": "54"}, files=image
    )
    assert reply.status_code == 200 and reply.json()["settings"]["min_new_tokens"] == 54


def test_predictor_check_settings_resolves_and_counts_the_visual_tokens(tiny_predictor):
    from blip2_core.inference.predictor import GenerationSettings

    resolved = tiny_predictor.check_settings("vqa", GenerationSettings(num_beams=3), ["what is it?"])
    assert (resolved.num_beams, resolved.max_new_tokens, resolved.min_new_tokens) == (3, 10, 1)
    prompt_tokens = len(tiny_predictor.tokenizer(["a photo of"])["input_ids"][0])
    room = 64 - tiny_predictor.model.config.num_query_tokens - prompt_tokens
    tiny_predictor.check_settings("caption", GenerationSettings(max_new_tokens=room), ["a photo of"])
    with pytest.raises(ValueError, match=rf"the prompt \({64 - room} tokens with the image's\)"):
        tiny_predictor.check_settings("caption", GenerationSettings(max_new_tokens=room + 1), ["a photo of"])


# -- what the server shows: /docs offline, no paths ---------------------------------------------------------


def test_docs_are_served_from_here_and_render_without_a_network(served_plain, tmp_path):
    url = served_plain
    docs = requests.get(url + "/docs", timeout=10)
    assert docs.status_code == 200 and "text/html" in docs.headers["content-type"]
    assert "http" not in docs.text.replace("http-equiv", "")  # no CDN, nothing from elsewhere
    for asset in ("/page/docs.js", "/page/page.css"):
        assert asset in docs.text and requests.get(url + asset, timeout=10).status_code == 200
    script = requests.get(url + "/page/docs.js", timeout=10).text
    assert "http://" not in script and "https://" not in script
    assert requests.get(url + "/redoc", timeout=10).status_code == 404  # FastAPI's, from a CDN: gone
    if shutil.which("node") is None:
        pytest.skip("no node to run the docs page's script")
    spec = requests.get(url + "/openapi.json", timeout=10).json()
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    (tmp_path / "docs.js").write_text(script)
    rendered = json.loads(run_with_a_fake_dom(tmp_path / "docs.js", tmp_path / "spec.json"))
    assert rendered["error"] == ""
    for path in ("/v1/caption", "/v1/vqa", "/v1/features", "/v1/search", "/healthz", "/v1/model"):
        assert path in rendered["index"] and path in rendered["endpoints"]
    assert "max_new_tokens" in rendered["endpoints"] and "multipart/form-data" in rendered["endpoints"]


FAKE_DOM = """
const fs = require("fs");
const spec = JSON.parse(fs.readFileSync(process.argv[3], "utf8"));
class Text { constructor(text) { this.text = text; } get textContent() { return this.text; } }
class Element {
  constructor(tag) { this.tag = tag; this.children = []; this.attributes = {}; this.hidden = false; }
  appendChild(child) { this.children.push(child); return child; }
  setAttribute(name, value) { this.attributes[name] = String(value); }
  set textContent(text) { this.children = [new Text(text)]; }
  get textContent() { return this.children.map((child) => child.textContent).join(" "); }
}
const byId = {};
global.document = {
  title: "",
  createElement: (tag) => new Element(tag),
  createTextNode: (text) => new Text(text),
  getElementById: (id) => byId[id] || (byId[id] = new Element("div")),
};
global.fetch = async (url) => ({ ok: url === "/openapi.json", status: 404, json: async () => spec });
require(process.argv[2]);
setTimeout(() => console.log(JSON.stringify({
  index: document.getElementById("index").textContent,
  endpoints: document.getElementById("endpoints").textContent,
  error: document.getElementById("error").textContent,
})), 200);
"""


def run_with_a_fake_dom(script: Path, spec: Path) -> str:
    harness = script.with_name("harness.js")
    harness.write_text(FAKE_DOM)
    done = subprocess.run(["node", str(harness), str(script), str(spec)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def served_plain(tiny_predictor, start_server):
    return start_server(create_app(Recorder(tiny_predictor), max_wait=0.0))


def test_no_server_paths_in_replies(tiny_predictor, model_dir, start_server):
    secret = "/srv/private/photos"
    gallery = SimpleNamespace(
        folder=Path(secret), images=["a.jpg"], skipped=[f"{secret}/bad.jpg is not a readable image"], search=None
    )

    class Broken(Recorder):
        def pixels(self, image):
            raise RuntimeError(f"cannot open {model_dir}/weights.bin")  # as an internal error may say

    url = start_server(create_app(Broken(tiny_predictor), gallery=gallery, max_wait=0.0))
    info = requests.get(url + "/v1/model", timeout=10)
    assert str(model_dir) == tiny_predictor.name  # loaded by its absolute path ...
    assert info.json()["name"] == model_dir.name  # ... shown by its folder's name
    assert info.json()["gallery"] == {"folder": "photos", "images": 1, "skipped": 1}
    assert str(model_dir.parent) not in info.text and "/srv" not in info.text
    failed = post(url, "/v1/caption", files={"image": jpeg(0)}, data=FAST)
    assert failed.status_code == 500 and "RuntimeError" in failed.text and str(model_dir) not in failed.text
    page = requests.get(url + "/", timeout=10).text + requests.get(url + "/docs", timeout=10).text
    assert str(model_dir.parent) not in page


def test_public_names():
    from blip2_core.serve.public_names import public_name

    assert public_name("/home/me/models/blip2-mine") == "blip2-mine"
    assert public_name("/home/me/models/blip2-mine/") == "blip2-mine"
    assert public_name("~/models/m") == "m" and public_name("./m") == "m"
    assert public_name("Salesforce/blip2-opt-2.7b") == "Salesforce/blip2-opt-2.7b"  # a Hub id, not a path
    assert public_name("blip2-shapes") == "blip2-shapes" and public_name(None) is None


# -- the command: --host, --port, the URL flags --------------------------------------------------------------


def run_serve(argv, capsys):
    from blip2_core.serve import cli

    with pytest.raises(SystemExit) as stopped:
        cli.main(["--model", "unused", *argv])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and "Traceback" not in err and "usage: blip2-serve" in err
    return err


def test_bad_ports_and_hosts_are_argument_errors(capsys, monkeypatch):
    assert "99999 is not a port: ports are 1-65535" in run_serve(["--port", "99999"], capsys)
    assert "0 is not a port" in run_serve(["--port", "0"], capsys)
    assert "not a port number: 'http'" in run_serve(["--port", "http"], capsys)
    assert "cannot listen on 192.0.2.1 port" in run_serve(["--host", "192.0.2.1"], capsys)  # not this machine's
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        assert "cannot listen on 127.0.0.1 port" in run_serve(["--port", port], capsys)
        assert "in use" in run_serve(["--port", port], capsys)

    def unknown(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unknown)  # no DNS query leaves the machine
    assert "--host no-such-host: cannot resolve it" in run_serve(["--host", "no-such-host"], capsys)


def test_url_flags_reach_the_limits(monkeypatch, capsys):
    import uvicorn

    from blip2_core.inference import predictor as inference
    from blip2_core.serve import app as serve_app
    from blip2_core.serve import cli

    made = {}
    monkeypatch.setattr(inference.Predictor, "load", classmethod(lambda cls, path, **kw: path))
    monkeypatch.setattr(serve_app, "create_app", lambda predictor, **kw: made.update(kw))
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: None)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    assert cli.main(["--model", "m", "--port", port]) == 0
    assert made["limits"].fetches_urls is False
    assert cli.main(["--model", "m", "--port", port, "--allow-image-urls"]) == 0
    assert made["limits"].allow_image_urls is True
    assert cli.main(["--model", "m", "--port", port, "--image-url-hosts", "A.example, b.example."]) == 0
    assert made["limits"].image_url_hosts == ("a.example", "b.example") and made["limits"].fetches_urls
    assert "image_url is fetched for clients from the hosts a.example, b.example" in capsys.readouterr().err
    assert "must be at least --max-image-pixels" in run_serve(
        ["--port", port, "--max-image-pixels", "100", "--max-decoding-pixels", "99"], capsys
    )
    assert "contradicts" in run_serve(["--port", port, "--no-image-urls", "--allow-image-urls"], capsys)
    help_text = cli.build_parser().format_help()
    assert "--allow-image-urls" in help_text and "--image-url-hosts" in help_text
    assert "--max-decoding-pixels" in help_text and "never in forms" in help_text
