"""The model-name table, and fetch_url against a local http.server (127.0.0.1 only, started and stopped here)."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from blip2_core.hub import ModelNotAvailableError
from blip2_core.model_names import (
    EVA_VIT_G_URL,
    KINDS,
    LAYOUTS,
    all_entries,
    fetch_url,
    format_table,
    lookup,
    url_cache_path,
)

LAVIS = "https://storage.googleapis.com/sfr-vision-language-research/LAVIS/models/BLIP2"

PADDLEMIX_NAMES = [
    "paddlemix/blip2-stage1",
    "paddlemix/blip2-stage2",
    "paddlemix/blip2-pretrained-opt2.7b",
    "paddlemix/blip2-pretrained-opt6.7b",
    "paddlemix/blip2_pretrained_flant5xl",
    "paddlemix/blip2_pretrained_flant5xxl",
    "paddlemix/blip2-caption-opt2.7b",
    "paddlemix/blip2-caption-opt6.7b",
    "paddlemix/blip2_caption_flant5xl",
]
LAVIS_NAMES = [
    "blip2/pretrain",
    "blip2/pretrain_vitL",
    "blip2/coco",
    "blip2_opt/pretrain_opt2.7b",
    "blip2_opt/pretrain_opt6.7b",
    "blip2_opt/caption_coco_opt2.7b",
    "blip2_opt/caption_coco_opt6.7b",
    "blip2_t5/pretrain_flant5xl",
    "blip2_t5/pretrain_flant5xxl",
    "blip2_t5/caption_coco_flant5xl",
    "blip2_feature_extractor/pretrain",
    "blip2_image_text_matching/pretrain",
]

# name -> (kind, llm, image size, source, layout): written out by hand from LAVIS's configs and the HF repos.
EXPECTED = {
    "paddlemix/blip2-stage1": ("stage1", None, 224, f"{LAVIS}/blip2_pretrained.pth", "lavis"),
    "paddlemix/blip2-stage2": ("stage1", None, 224, f"{LAVIS}/blip2_pretrained.pth", "lavis"),
    "blip2/pretrain": ("stage1", None, 224, f"{LAVIS}/blip2_pretrained.pth", "lavis"),
    "blip2/pretrain_vitL": ("stage1", None, 224, f"{LAVIS}/blip2_pretrained_vitL.pth", "lavis"),
    "blip2/coco": ("stage1", None, 364, f"{LAVIS}/blip2_finetune_coco.pth", "lavis"),
    "blip2_feature_extractor/pretrain": ("stage1", None, 224, f"{LAVIS}/blip2_pretrained.pth", "lavis"),
    "blip2_image_text_matching/pretrain": ("stage1", None, 224, f"{LAVIS}/blip2_pretrained.pth", "lavis"),
    "paddlemix/blip2-pretrained-opt2.7b": ("stage2-pretrained", "opt-2.7b", 224, "Salesforce/blip2-opt-2.7b", "hf"),
    "blip2_opt/pretrain_opt2.7b": ("stage2-pretrained", "opt-2.7b", 224, "Salesforce/blip2-opt-2.7b", "hf"),
    "paddlemix/blip2-pretrained-opt6.7b": ("stage2-pretrained", "opt-6.7b", 224, "Salesforce/blip2-opt-6.7b", "hf"),
    "blip2_opt/pretrain_opt6.7b": ("stage2-pretrained", "opt-6.7b", 224, "Salesforce/blip2-opt-6.7b", "hf"),
    "paddlemix/blip2_pretrained_flant5xl": (
        "stage2-pretrained",
        "flan-t5-xl",
        224,
        "Salesforce/blip2-flan-t5-xl",
        "hf",
    ),
    "blip2_t5/pretrain_flant5xl": ("stage2-pretrained", "flan-t5-xl", 224, "Salesforce/blip2-flan-t5-xl", "hf"),
    "paddlemix/blip2_pretrained_flant5xxl": (
        "stage2-pretrained",
        "flan-t5-xxl",
        224,
        "Salesforce/blip2-flan-t5-xxl",
        "hf",
    ),
    "blip2_t5/pretrain_flant5xxl": ("stage2-pretrained", "flan-t5-xxl", 224, "Salesforce/blip2-flan-t5-xxl", "hf"),
    "paddlemix/blip2-caption-opt2.7b": ("stage2-caption", "opt-2.7b", 364, "Salesforce/blip2-opt-2.7b-coco", "hf"),
    "blip2_opt/caption_coco_opt2.7b": ("stage2-caption", "opt-2.7b", 364, "Salesforce/blip2-opt-2.7b-coco", "hf"),
    "paddlemix/blip2-caption-opt6.7b": ("stage2-caption", "opt-6.7b", 364, "Salesforce/blip2-opt-6.7b-coco", "hf"),
    "blip2_opt/caption_coco_opt6.7b": ("stage2-caption", "opt-6.7b", 364, "Salesforce/blip2-opt-6.7b-coco", "hf"),
    "paddlemix/blip2_caption_flant5xl": ("stage2-caption", "flan-t5-xl", 364, "Salesforce/blip2-flan-t5-xl-coco", "hf"),
    "blip2_t5/caption_coco_flant5xl": ("stage2-caption", "flan-t5-xl", 364, "Salesforce/blip2-flan-t5-xl-coco", "hf"),
    "Salesforce/blip2-itm-vit-g": ("stage1", None, 224, "Salesforce/blip2-itm-vit-g", "hf"),
    "Salesforce/blip2-itm-vit-g-coco": ("stage1", None, 364, "Salesforce/blip2-itm-vit-g-coco", "hf"),
    "eva_vit_g": ("vision-encoder", None, 224, f"{LAVIS}/eva_vit_g.pth", "lavis"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_entry_fields(name):
    entry = lookup(name)
    assert entry is not None
    assert (entry.kind, entry.llm, entry.image_size, entry.source, entry.layout) == EXPECTED[name]
    assert entry.description


def test_every_known_name_is_listed_once():
    names = [e.name for e in all_entries()]
    assert len(names) == len(set(names))
    for name in PADDLEMIX_NAMES + LAVIS_NAMES:
        assert name in names, name
    for entry in all_entries():
        assert entry.kind in KINDS and entry.layout in LAYOUTS
        assert entry.is_url == entry.source.startswith("https://")
        for source, layout in entry.also_at:
            assert layout in LAYOUTS and source != entry.source


def test_descriptions_explain_paddlemix_starting_points():
    stage2 = lookup("paddlemix/blip2-stage2")
    assert "stage-1 Q-Former" in stage2.description and "LLM" in stage2.description
    assert lookup("paddlemix/blip2-stage1").source == lookup("blip2/pretrain").source


def test_stage2_entries_record_their_llm_and_lavis_alternative():
    entry = lookup("blip2_opt/caption_coco_opt2.7b")
    assert entry.llm_repo == "facebook/opt-2.7b"
    assert (f"{LAVIS}/blip2_caption_opt2.7b.pth", "lavis") in entry.also_at
    assert lookup("blip2_t5/pretrain_flant5xxl").llm_repo == "google/flan-t5-xxl"
    # LAVIS pretrain checkpoints do not hold the frozen ViT: the entry says where it comes from.
    assert lookup("blip2/pretrain").requires == ("eva_vit_g",)
    assert lookup("blip2/coco").requires == ()


def test_lookup_aliases_case_and_unknown():
    assert lookup("paddlemix/blip2-stage2/eva_vit_g").name == "eva_vit_g"
    assert lookup("paddlemix/blip2_caption_flant5xl.7b").name == "paddlemix/blip2_caption_flant5xl"
    assert lookup("SALESFORCE/BLIP2-OPT-2.7B").name == "Salesforce/blip2-opt-2.7b"
    assert lookup("/data/my-blip2") is None
    assert lookup("facebook/opt-2.7b") is None


def test_format_table_is_aligned():
    text = format_table()
    lines = text.splitlines()
    assert lines[0].split() == ["NAME", "KIND", "LLM", "IMAGE", "LAYOUT", "SOURCE"]
    assert len(lines) == len(all_entries()) + 1
    source_column = lines[0].index("SOURCE")
    layout_column = lines[0].index("LAYOUT")
    for line, entry in zip(lines[1:], all_entries()):
        assert line.startswith(entry.name + " ")
        assert line[source_column:] == entry.source
        assert line[layout_column:].split()[0] == entry.layout
    described = format_table(descriptions=True).splitlines()
    assert described[2] == "    " + all_entries()[0].description


# ---------------------------------------------------------------------------------------------------- fetch_url

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
        with pytest.raises(ModelNotAvailableError, match="run again to resume"):
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
