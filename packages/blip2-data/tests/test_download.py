import hashlib
import io
import threading
import zipfile

import pytest
from conftest import write_jpeg, write_json

import blip2_data.download as download
import blip2_data.prepare as prepare
from blip2_data import ChecksumError, DatasetNotAvailableError, blip2_home, download_file, load_dataset
from blip2_data.dataset_sources import RemoteFile, SplitSource

PAYLOAD = bytes(range(256)) * 400  # 100 KiB


def test_download_verifies_checksum(file_server, tmp_path):
    file_server.files["data.bin"] = PAYLOAD
    md5 = hashlib.md5(PAYLOAD).hexdigest()
    path = download_file(file_server.url("data.bin"), tmp_path / "data.bin", md5=md5, progress=False)
    assert path.read_bytes() == PAYLOAD and not (tmp_path / "data.bin.part").exists()
    download_file(file_server.url("data.bin"), tmp_path / "data.bin", md5=md5, progress=False)
    assert len(file_server.requests) == 1  # already there: no second request


def test_resume_after_a_cut_transfer(file_server, tmp_path):
    file_server.files["data.bin"] = PAYLOAD
    file_server.cut_after = 30_000
    with pytest.raises(OSError, match="stopped at 30000 of 102400 bytes; run again to resume") as info:
        download_file(file_server.url("data.bin"), tmp_path / "data.bin", progress=False)
    assert isinstance(info.value, download.IncompleteDownloadError)
    assert (info.value.received, info.value.expected) == (30_000, 102_400)
    assert (tmp_path / "data.bin.part").stat().st_size == 30_000
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    path = download_file(file_server.url("data.bin"), tmp_path / "data.bin", sha256=sha, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert file_server.requests[-1] == ("data.bin", "bytes=30000-")


def test_bad_checksum_deletes_the_partial_file(file_server, tmp_path):
    file_server.files["data.bin"] = PAYLOAD
    with pytest.raises(ChecksumError, match="sha256 [0-9a-f]{64}, expected 00ff"):
        download_file(file_server.url("data.bin"), tmp_path / "data.bin", sha256="00ff", progress=False)
    assert not (tmp_path / "data.bin").exists() and not (tmp_path / "data.bin.part").exists()
    with pytest.raises(ChecksumError, match="size 102400 bytes, expected 5"):
        download_file(file_server.url("data.bin"), tmp_path / "data.bin", size=5, progress=False)


def test_lock_lets_one_of_two_parallel_ranks_download(file_server, tmp_path):
    file_server.files["data.bin"] = PAYLOAD
    file_server.delay_s = 0.005  # ~0.1 s per transfer, so the two calls overlap
    results, errors = [], []

    def rank() -> None:
        try:
            results.append(
                download_file(file_server.url("data.bin"), tmp_path / "data.bin", progress=False).read_bytes()
            )
        except Exception as e:  # surfaced by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=rank) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors and results == [PAYLOAD, PAYLOAD]
    assert file_server.full_gets("data.bin") == 1 and len(file_server.requests) == 1  # the other rank waited


def zip_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def test_load_dataset_downloads_into_blip2_home(file_server, tmp_path, monkeypatch):
    """coco_caption val without data_files: annotation json and image zip come from the (local) server."""
    jpeg = write_jpeg(tmp_path / "src" / "x.jpg").read_bytes()
    file_server.files["val2014.zip"] = zip_of({"val2014/COCO_val2014_000000000042.jpg": jpeg})
    rows = [{"image": "val2014/COCO_val2014_000000000042.jpg", "caption": ["a cake", "a table"]}]
    file_server.files["coco_karpathy_val.json"] = write_json(tmp_path / "src" / "val.json", rows).read_bytes()
    archive = RemoteFile(file_server.url("val2014.zip"), "archives/val2014.zip", extract_to="images")
    annotation = RemoteFile(file_server.url("coco_karpathy_val.json"), "annotations/coco_karpathy_val.json")
    sources = {"coco_caption": ("coco", {"val": SplitSource([annotation], [archive])})}
    monkeypatch.setattr(prepare, "DATASET_SOURCES", sources)
    monkeypatch.setenv("BLIP2_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("BLIP2_OFFLINE", raising=False)
    (dataset,) = load_dataset("coco_caption", splits=["val"], progress=False)
    image = tmp_path / "home/datasets/coco/images/val2014/COCO_val2014_000000000042.jpg"
    assert dataset[0]["image"] == str(image) and image.read_bytes() == jpeg
    assert dataset[0]["image_id"] == 42 and not (tmp_path / "home/datasets/coco/archives/val2014.zip").exists()
    requests = len(file_server.requests)
    load_dataset("coco_caption", splits=["val"], progress=False)
    assert len(file_server.requests) == requests  # cached


def test_offline_error_lists_what_to_place_where(tmp_path, monkeypatch):
    monkeypatch.setenv("BLIP2_HOME", str(tmp_path))
    monkeypatch.setenv("BLIP2_OFFLINE", "1")
    with pytest.raises(DatasetNotAvailableError) as info:
        load_dataset("coco_vqa", splits=["val"])
    message = str(info.value)
    assert "v2_mscoco_val2014_annotations.json" in message and "images.cocodataset.org/zips/val2014.zip" in message
    assert str(tmp_path / "datasets/coco/annotations/v2_OpenEnded_mscoco_val2014_questions.json") in message
    assert "data_files=" in message


def test_unreachable_server_is_reported_as_not_available(tmp_path, monkeypatch):
    remote = RemoteFile("http://127.0.0.1:9/vg_caption.json", "annotations/vg_caption.json")
    monkeypatch.setattr(prepare, "DATASET_SOURCES", {"vg_caption": ("vg", {"train": SplitSource([remote])})})
    monkeypatch.setenv("BLIP2_HOME", str(tmp_path))
    monkeypatch.delenv("BLIP2_OFFLINE", raising=False)
    with pytest.raises(
        DatasetNotAvailableError, match=r"(?s)download http://127.0.0.1:9/vg_caption.json.*failed: URLError"
    ):
        load_dataset("vg_caption", progress=False)


@pytest.fixture
def server_sending_total_on_416(file_server):
    """file_server answering 416 with ``Content-Range: bytes */<size>``, as RFC 9110 asks of a server."""

    class Handler(file_server.httpd.RequestHandlerClass):
        def send_error(self, code, message=None, explain=None):
            if code != 416:
                return super().send_error(code, message, explain)
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(file_server.files[self.path.lstrip('/')])}")
            self.send_header("Content-Length", "0")
            self.end_headers()

    file_server.httpd.RequestHandlerClass = Handler
    return file_server


def test_416_for_a_part_file_of_the_full_size_completes_it(server_sending_total_on_416, tmp_path):
    server = server_sending_total_on_416
    server.files["data.bin"] = PAYLOAD
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD)  # cut off after the last byte, before the rename
    path = download_file(server.url("data.bin"), tmp_path / "data.bin", progress=False)
    assert path.read_bytes() == PAYLOAD
    assert server.requests == [("data.bin", f"bytes={len(PAYLOAD)}-")]


@pytest.mark.parametrize("total_on_416", [True, False])
def test_416_for_a_part_file_of_another_size_starts_over(file_server, tmp_path, total_on_416, request):
    # The file on the server changed (here: shrank) since the part file was started: the part file is not the
    # file, whether or not the server says its size; downloading it afresh is the only right answer.
    server = request.getfixturevalue("server_sending_total_on_416") if total_on_416 else file_server
    server.files["data.bin"] = PAYLOAD
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD + b"stale tail")
    path = download_file(server.url("data.bin"), tmp_path / "data.bin", progress=False)
    assert path.read_bytes() == PAYLOAD
    assert server.requests == [("data.bin", f"bytes={len(PAYLOAD) + 10}-"), ("data.bin", None)]


def test_empty_blip2_home_means_unset(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("BLIP2_HOME", "")
    assert blip2_home() == tmp_path / ".cache" / "blip2"
    monkeypatch.setenv("BLIP2_HOME", str(tmp_path / "elsewhere"))
    assert blip2_home() == tmp_path / "elsewhere"


@pytest.fixture
def online(monkeypatch):
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "BLIP2_OFFLINE"):
        monkeypatch.delenv(variable, raising=False)


@pytest.mark.parametrize(
    ("value", "offline"),
    [("1", True), ("true", True), ("YES", True), (" on ", True), ("0", False), ("", False), ("off", False)],
)
@pytest.mark.parametrize("variable", ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "BLIP2_OFFLINE"])
def test_is_offline_reads_every_variable(online, monkeypatch, variable, value, offline):
    monkeypatch.setenv(variable, value)
    assert download.is_offline() is offline


def serve_coco_val(file_server, tmp_path, monkeypatch) -> None:
    """coco_caption's val split pointed at file_server; BLIP2_HOME under tmp_path."""
    jpeg = write_jpeg(tmp_path / "src" / "x.jpg").read_bytes()
    file_server.files["val2014.zip"] = zip_of({"val2014/COCO_val2014_000000000042.jpg": jpeg})
    file_server.files["coco_karpathy_val.json"] = b"[]"
    archive = RemoteFile(file_server.url("val2014.zip"), "archives/val2014.zip", extract_to="images")
    annotation = RemoteFile(file_server.url("coco_karpathy_val.json"), "annotations/coco_karpathy_val.json")
    sources = {"coco_caption": ("coco", {"val": SplitSource([annotation], [archive])})}
    monkeypatch.setattr(prepare, "DATASET_SOURCES", sources)
    monkeypatch.setenv("BLIP2_HOME", str(tmp_path / "home"))


@pytest.mark.parametrize(("variable", "value"), [("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "true")])
def test_hf_offline_variables_stop_dataset_downloads(file_server, tmp_path, monkeypatch, online, variable, value):
    # One offline rule for models and datasets: HF_HUB_OFFLINE=1 alone must keep prepare_dataset off the network.
    serve_coco_val(file_server, tmp_path, monkeypatch)
    monkeypatch.setenv(variable, value)
    with pytest.raises(DatasetNotAvailableError, match="coco_karpathy_val.json"):
        prepare.prepare_dataset("coco_caption", ["val"], progress=False)
    assert file_server.requests == []
    # The same server is reachable once the variable is off: the error above came from the offline rule.
    monkeypatch.setenv(variable, "0")
    prepare.prepare_dataset("coco_caption", ["val"], progress=False)
    assert sorted(name for name, _ in file_server.requests) == ["coco_karpathy_val.json", "val2014.zip"]


def test_a_missing_file_is_reported_as_not_worth_retrying(file_server, tmp_path, monkeypatch, online):
    serve_coco_val(file_server, tmp_path, monkeypatch)
    del file_server.files["val2014.zip"]
    with pytest.raises(DatasetNotAvailableError) as info:
        prepare.prepare_dataset("coco_caption", ["val"], progress=False)
    message = str(info.value)
    assert "val2014.zip" in message and "failed: HTTPError: HTTP Error 404" in message
    assert "running again will not help" in message
    assert "coco_karpathy_val.json" not in message  # fetched: only the missing file is listed
