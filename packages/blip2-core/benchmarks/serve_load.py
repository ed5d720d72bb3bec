"""Load on blip2-serve, loopback only, bounded in count and time: batched vs one by one, and a burst past the queue.

python packages/blip2-core/benchmarks/serve_load.py [--model DIR] [--requests 48] [--clients 8]

Without --model it serves the tests' tiny OPT model (built here from tests/fixtures, with a WordPiece
tokenizer). It reports throughput and p50/p95 latency of N caption requests sent one at a time, and sent by
C clients at once to a server that batches them (and, to separate batching from mere concurrency, to one that
does not: --max-batch-size 1); checks every reply against the one-by-one caption of its image (none lost,
none wrong); then sends a burst larger than a small queue and counts the 503s. Not a test: a measurement.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests
from PIL import Image

TESTS = Path(__file__).resolve().parent.parent / "tests"


def tiny_model(directory: Path) -> Path:
    """The tests' tiny OPT model with the same WordPiece tokenizer as tests/conftest.py's ``model_dir``."""
    sys.path.insert(0, str(TESTS))
    from tiny_checkpoints import copy_with_wordpiece_tokenizer

    return copy_with_wordpiece_tokenizer(TESTS / "fixtures" / "opt" / "hf", directory / "tiny-blip2", 100)


def serve(app) -> tuple[str, object]:
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server


def images(count: int) -> list[bytes]:
    out = []
    for seed in range(count):
        buffer = io.BytesIO()
        pixels = np.random.RandomState(seed).randint(0, 255, (120, 160, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(buffer, "JPEG")
        out.append(buffer.getvalue())
    return out


def caption(url: str, data: bytes) -> tuple[int, str | None, float]:
    started = time.perf_counter()
    reply = requests.post(url + "/v1/caption", files={"image": ("x.jpg", data)}, timeout=120)
    seconds = time.perf_counter() - started
    return reply.status_code, reply.json().get("caption") if reply.ok else None, seconds


def load(url: str, uploads: list[bytes], clients: int) -> tuple[list, float]:
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda data: caption(url, data), uploads))
    return results, time.perf_counter() - started


def summary(name: str, results: list, seconds: float) -> dict:
    latencies = sorted(r[2] for r in results)
    return {
        "run": name,
        "requests": len(results),
        "ok": sum(r[0] == 200 for r in results),
        "captions_per_s": round(len(results) / seconds, 2),
        "p50_ms": round(1000 * statistics.median(latencies)),
        "p95_ms": round(1000 * latencies[int(0.95 * (len(latencies) - 1))]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="model directory (default: the tests' tiny model)")
    parser.add_argument("--requests", type=int, default=48)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--max-wait-ms", type=float, default=10)
    args = parser.parse_args()
    if not 1 <= args.requests <= 512 or not 1 <= args.clients <= 64:
        parser.error("keep it bounded: 1-512 requests, 1-64 clients")

    from blip2_core.cli.command_line import start_command_line_tool
    from blip2_core.inference.predictor import Predictor
    from blip2_core.serve.app import create_app

    threads = start_command_line_tool()
    work = Path(tempfile.mkdtemp())
    predictor = Predictor.load(args.model or str(tiny_model(work)))
    uploads = images(args.requests)

    rows = []
    url, server = serve(create_app(predictor, max_batch_size=1, max_wait=0))
    caption(url, uploads[0])  # warm-up
    alone, seconds = load(url, uploads, clients=1)
    rows.append(summary("one by one (1 client, batch 1)", alone, seconds))
    expected = [text for _, text, _ in alone]
    concurrent_unbatched, seconds = load(url, uploads, clients=args.clients)
    rows.append(summary(f"{args.clients} clients, batch 1", concurrent_unbatched, seconds))
    server.should_exit = True

    url, server = serve(create_app(predictor, max_batch_size=args.max_batch_size, max_wait=args.max_wait_ms / 1000))
    caption(url, uploads[0])
    batched, seconds = load(url, uploads, clients=args.clients)
    rows.append(summary(f"{args.clients} clients, batch {args.max_batch_size}", batched, seconds))
    health = requests.get(url + "/healthz", timeout=10).json()
    server.should_exit = True
    lost = sum(status != 200 for status, _, _ in batched)
    wrong = sum(text != want for (_, text, _), want in zip(batched, expected))

    # a burst three times a small queue: refused with 503 at once, the rest answered, nothing hangs
    url, server = serve(create_app(predictor, max_batch_size=args.max_batch_size, max_wait=0.01, max_queue=4))
    burst, seconds = load(url, uploads[:24], clients=24)
    server.should_exit = True
    statuses = {code: sum(r[0] == code for r in burst) for code in sorted({r[0] for r in burst})}

    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model_name = next((line.split(":", 1)[1].strip() for line in cpu.splitlines() if "Model name" in line), "?")
    report = {
        "cpu": f"{model_name} ({platform.machine()}), paddle threads {threads}",
        "runs": rows,
        "batched_vs_one_by_one": round(rows[2]["captions_per_s"] / rows[0]["captions_per_s"], 2),
        "batched_model_calls": health["batches_run"],
        "lost": lost,
        "wrong": wrong,
        "burst_24_on_queue_4": {"statuses": statuses, "seconds": round(seconds, 2)},
    }
    print(json.dumps(report, indent=1))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
