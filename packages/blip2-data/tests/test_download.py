import hashlib
import io
import threading
import zipfile

import pytest
from conftest import write_jpeg, write_json

import blip2_data.download as download
from blip2_data import ChecksumError, DatasetNotAvailableError, download_file, load_dataset

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
    with pytest.raises(OSError, match="stopped at 30000 of 102400 bytes; run again to resume"):
        download_file(file_server.url("data.bin"), tmp_path / "data.bin", progress=False)
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
    archive = download.RemoteFile(file_server.url("val2014.zip"), "archives/val2014.zip", extract_to="images")
    annotation = download.RemoteFile(file_server.url("coco_karpathy_val.json"), "annotations/coco_karpathy_val.json")
    sources = {"coco_caption": ("coco", {"val": download.SplitSource([annotation], [archive])})}
    monkeypatch.setattr(download, "DATASET_SOURCES", sources)
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
    remote = download.RemoteFile("http://127.0.0.1:9/vg_caption.json", "annotations/vg_caption.json")
    monkeypatch.setattr(download, "DATASET_SOURCES", {"vg_caption": ("vg", {"train": download.SplitSource([remote])})})
    monkeypatch.setenv("BLIP2_HOME", str(tmp_path))
    monkeypatch.delenv("BLIP2_OFFLINE", raising=False)
    with pytest.raises(
        DatasetNotAvailableError, match=r"(?s)download http://127.0.0.1:9/vg_caption.json.*failed: URLError"
    ):
        load_dataset("vg_caption", progress=False)
