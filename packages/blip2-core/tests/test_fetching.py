"""fetch_url against a local http.server (127.0.0.1 only, started and stopped here)."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from blip2_core.loading.fetching import fetch_url, url_cache_path
from blip2_core.loading.hub import ModelNotAvailableError
from blip2_core.loading.model_names import EVA_VIT_G_URL

PAYLOAD = bytes(range(256)) * 1200  # 300 KiB


class _Server:
    """A local HTTP server of PAYLOAD with Range support; can cut the first transfer short."""

    def __init__(self, cut_first_at: int | None = None, delay: float = 0.0):
        self.requests: list[dict] = []
        self.cut_first_at = cut_first_at
        self.delay = delay
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                server.requests.append({"path": self.path, "range": self.headers.get("Range")})
                if self.path != "/models/BLIP2/blip2_pretrained.pth":
                    self.send_error(404)
                    return
                time.sleep(server.delay)
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].removeprefix("bytes=").rstrip("-"))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
                else:
                    self.send_response(200)
                body = PAYLOAD[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_first_at is not None and len(server.requests) == 1:
                    self.wfile.write(body[: server.cut_first_at])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/models/BLIP2/blip2_pretrained.pth"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(autouse=True)
def online(monkeypatch, tmp_path):
    for variable in ("BLIP2_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


def test_fetch_downloads_once_into_the_cache(tmp_path):
    with _Server() as server:
        path = fetch_url(server.url, tmp_path)
        assert path == tmp_path / "checkpoints" / "blip2_pretrained.pth"
        assert path.read_bytes() == PAYLOAD
        assert fetch_url(server.url, tmp_path) == path
    assert len(server.requests) == 1
    assert not path.with_name(path.name + ".part").exists()


def test_interrupted_download_resumes_with_a_range_request(tmp_path):
    with _Server(cut_first_at=100_000) as server:
        with pytest.raises(ModelNotAvailableError, match="stopped at 100000 of 307200 bytes; run again to resume"):
            fetch_url(server.url, tmp_path, timeout=10)
        part = tmp_path / "checkpoints" / "blip2_pretrained.pth.part"
        kept = part.stat().st_size
        assert 0 < kept < len(PAYLOAD)
        assert not (tmp_path / "checkpoints" / "blip2_pretrained.pth").exists()
        path = fetch_url(server.url, tmp_path, timeout=10)
    assert server.requests[1]["range"] == f"bytes={kept}-"
    assert path.read_bytes() == PAYLOAD


def test_parallel_fetches_download_once(tmp_path):
    results, errors = [], []

    def fetch():
        try:
            results.append(fetch_url(server.url, tmp_path, timeout=10))
        except Exception as e:  # surfaced below
            errors.append(e)

    with _Server(delay=0.3) as server:
        threads = [threading.Thread(target=fetch) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=20)
    assert not errors and len(results) == 3 and len(set(results)) == 1
    assert len(server.requests) == 1
    assert results[0].read_bytes() == PAYLOAD


def test_offline_error_says_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("BLIP2_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError) as info:
        fetch_url(EVA_VIT_G_URL, tmp_path)  # never contacted: offline is checked first
    message = str(info.value)
    assert EVA_VIT_G_URL in message and str(tmp_path / "checkpoints" / "eva_vit_g.pth") in message


def test_unreachable_and_missing_urls(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    with pytest.raises(ModelNotAvailableError, match="download failed"):
        fetch_url(f"http://127.0.0.1:{closed}/x/blip2_pretrained.pth", tmp_path, timeout=5)
    with _Server() as server:
        with pytest.raises(ModelNotAvailableError, match="HTTP 404"):
            fetch_url(server.url.replace("blip2_pretrained", "nothing"), tmp_path)


def test_blip2_home_and_torch_hub_copy(tmp_path, monkeypatch):
    monkeypatch.setenv("BLIP2_HOME", str(tmp_path / "home"))
    assert url_cache_path(EVA_VIT_G_URL) == tmp_path / "home" / "checkpoints" / "eva_vit_g.pth"
    # A copy LAVIS already downloaded into torch hub's cache is used as is, offline too.
    monkeypatch.setenv("BLIP2_OFFLINE", "1")
    lavis_copy = tmp_path / "torch" / "hub" / "checkpoints" / "eva_vit_g.pth"
    lavis_copy.parent.mkdir(parents=True)
    lavis_copy.write_bytes(b"weights")
    assert fetch_url(EVA_VIT_G_URL) == lavis_copy


@pytest.mark.parametrize(("variable", "value"), [("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "yes")])
def test_hf_offline_variables_stop_release_downloads(tmp_path, monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with _Server() as server:
        with pytest.raises(ModelNotAvailableError, match="offline"):
            fetch_url(server.url, tmp_path)
    assert server.requests == []


def test_empty_blip2_home_means_the_default_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("BLIP2_HOME", "")
    assert url_cache_path(EVA_VIT_G_URL) == tmp_path / ".cache" / "blip2" / "checkpoints" / "eva_vit_g.pth"
