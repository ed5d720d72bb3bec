"""Small COCO-, VG- and VQAv2-format trees with real JPEG files, real tokenizers, and a local HTTP server."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_jpeg(path: Path, width: int = 64, height: int = 48, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)
    return path


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def coco_name(split: str, image_id: int) -> str:
    return f"{split}/COCO_{split}_{image_id:012d}.jpg"


@pytest.fixture
def coco_tree(tmp_path: Path) -> Path:
    """images/{train2014,val2014}, annotations/coco_karpathy_{train,val,test}.json in LAVIS's format."""
    root = tmp_path / "coco"
    train_ids, val_ids = [9, 25, 30], [522418, 184613]
    for i in train_ids:
        write_jpeg(root / "images" / coco_name("train2014", i), seed=i)
    for i in val_ids:
        write_jpeg(root / "images" / coco_name("val2014", i), seed=i)
    train = [
        {
            "caption": "A woman wearing a net on her head cutting a cake. ",
            "image": coco_name("val2014", 522418),
            "image_id": "coco_522418",
        },
        {
            "caption": "A woman cutting a large white sheet cake.",
            "image": coco_name("val2014", 522418),
            "image_id": "coco_522418",
        },
    ] + [
        {"caption": f"Picture number {i}!", "image": coco_name("train2014", i), "image_id": f"coco_{i}"}
        for i in train_ids
    ]
    write_json(root / "annotations" / "coco_karpathy_train.json", train)
    val = [{"image": coco_name("val2014", i), "caption": [f"caption {k} of {i}" for k in range(5)]} for i in val_ids]
    write_json(root / "annotations" / "coco_karpathy_val.json", val)
    write_json(root / "annotations" / "coco_karpathy_test.json", val[:1])
    return root


@pytest.fixture
def vg_tree(tmp_path: Path) -> Path:
    root = tmp_path / "vg"
    for i in (1, 2):
        write_jpeg(root / "images" / f"VG_100K/{i}.jpg", seed=100 + i)
    rows = [
        {"image": "VG_100K/1.jpg", "caption": "trees line the sidewalk", "image_id": "vg_1"},
        {"image": "VG_100K/1.jpg", "caption": "a red car parked", "image_id": "vg_1"},
        {"image": "VG_100K/2.jpg", "caption": "a cat on a sofa", "image_id": "vg_2"},
    ]
    write_json(root / "annotations" / "vg_caption.json", rows)
    return root


@pytest.fixture
def vqa_tree(tmp_path: Path) -> Path:
    """LAVIS vqa_train.json rows, and the official VQAv2 val questions + annotations files."""
    root = tmp_path / "vqa"
    for i in (9, 25):
        write_jpeg(root / "images" / coco_name("train2014", i), seed=i)
    for i in (42, 73):
        write_jpeg(root / "images" / coco_name("val2014", i), seed=i)
    train = [
        {
            "question_id": 9001,
            "question": "What color is the cat?",
            "answer": ["black"] * 7 + ["gray"] * 3,
            "image": coco_name("train2014", 9),
            "dataset": "vqa",
        },
        {
            "question_id": 25001,
            "question": "How many dogs?",
            "answer": ["2"] * 10,
            "image": coco_name("train2014", 25),
            "dataset": "vqa",
        },
        {
            "question_id": 25002,
            "question": "Is it sunny?",
            "answer": ["yes"] * 6 + ["no"] * 4,
            "image": coco_name("train2014", 25),
            "dataset": "vqa",
        },
    ]
    write_json(root / "annotations" / "vqa_train.json", train)
    questions = {
        "data_subtype": "val2014",
        "questions": [
            {"image_id": 42, "question": "What is on the table?", "question_id": 42000},
            {"image_id": 73, "question": "Is this a kitchen?", "question_id": 73001},
        ],
    }
    annotations = {
        "annotations": [
            {
                "question_id": 42000,
                "image_id": 42,
                "answers": [{"answer": "cake", "answer_confidence": "yes", "answer_id": k} for k in range(10)],
                "multiple_choice_answer": "cake",
            },
            {
                "question_id": 73001,
                "image_id": 73,
                "answers": [{"answer": "yes", "answer_confidence": "yes", "answer_id": k} for k in range(10)],
                "multiple_choice_answer": "yes",
            },
        ]
    }
    write_json(root / "annotations" / "v2_OpenEnded_mscoco_val2014_questions.json", questions)
    write_json(root / "annotations" / "v2_mscoco_val2014_annotations.json", annotations)
    return root


BERT_WORDS = "a woman wearing net on her head cutting cake picture number what color is the cat photo of dog".split()


@pytest.fixture(scope="session")
def bert_tokenizer(tmp_path_factory):
    """A real BERT WordPiece tokenizer (HF transformers) from a vocab.txt written here."""
    from transformers import BertTokenizerFast

    vocab = tmp_path_factory.mktemp("bert") / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *BERT_WORDS, *"0123456789"]) + "\n")
    return BertTokenizerFast(vocab_file=str(vocab))


@pytest.fixture(scope="session")
def bpe_tokenizer(tmp_path_factory):
    """A real byte-level BPE tokenizer like OPT's (</s> as BOS, <pad> id 1), trained here and loaded from its file."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [
        "a photo of a dog",
        "a photo of a cat on a sofa",
        "Question: what color is the cat? Answer: black",
        "yes no 2\n",
    ]
    trainer = trainers.BpeTrainer(special_tokens=["<s>", "<pad>", "</s>", "<unk>"], vocab_size=300, show_progress=False)
    tok.train_from_iterator(corpus * 20, trainer)
    tok.post_processor = processors.TemplateProcessing(single="</s> $A", special_tokens=[("</s>", 2)])
    file = tmp_path_factory.mktemp("bpe") / "tokenizer.json"
    tok.save(str(file))
    return PreTrainedTokenizerFast(
        tokenizer_file=str(file), bos_token="</s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


class FileServer:
    """Serves ``files`` (name → bytes) on 127.0.0.1 with Range support; records requests; can cut transfers short."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.cut_after: int | None = None  # stop sending after this many bytes of the next response
        self.delay_s = 0.0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:
                name = self.path.lstrip("/")
                server.requests.append((name, self.headers.get("Range")))
                if name not in server.files:
                    self.send_error(404)
                    return
                data = server.files[name]
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if match:
                    start = int(match.group(1))
                    if start >= len(data):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if server.cut_after is not None:
                    body, server.cut_after = body[: server.cut_after], None
                for i in range(0, len(body), 4096):
                    self.wfile.write(body[i : i + 4096])
                    if server.delay_s:
                        threading.Event().wait(server.delay_s)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        # Bounded: the server shuts itself down after 60 s even if a test forgets to.
        self.watchdog = threading.Timer(60, self.httpd.shutdown)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def full_gets(self, name: str) -> int:
        return sum(1 for path, range_header in self.requests if path == name and range_header is None)


@pytest.fixture
def file_server():
    server = FileServer()
    server.thread.start()
    server.watchdog.start()
    try:
        yield server
    finally:
        server.watchdog.cancel()
        server.httpd.shutdown()
        server.httpd.server_close()
