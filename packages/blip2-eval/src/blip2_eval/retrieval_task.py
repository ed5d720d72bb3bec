"""``blip2-eval retrieval``: LAVIS's two-stage image-text retrieval with a stage-1 (Q-Former) model.

1. Features, each rank its share of images and of texts, saved per shard (``features/``): the image encoder's
   output and the queries' ITC features for images, the [CLS] ITC feature and token ids for texts.
2. ITC similarity of every image with every text (best query, cosine, no temperature).
3. Each rank re-ranks its share of rows: the top ``k_test`` columns of a row by ITC get ITM (the raw
   "match" logit averaged over queries) + ITC, all other pairs -100 (LAVIS's combination). Rows are written
   to the shard store as they are done, so a killed run resumes.
4. Rank 0 gathers the rows, writes them (``retrieval_topk.npz``) and computes R@1/5/10 both ways.

Memory: every rank holds all images' encoder outputs (images x tokens x width floats), as LAVIS does.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from .distributed import Process, current_process
from .eval_data import EvalDataset
from .output_files import METRICS_FILE, SHARDS_DIR, pin_settings, write_json
from .report import format_table
from .retrieval_score import rerank_row
from .shard_store import ShardStore

TOPK_FILE = "retrieval_topk.npz"
FEATURES_DIR = "features"


def texts_of(dataset: Any) -> tuple[list[str], list[int], list[list[int]]]:
    """All captions (LAVIS-cleaned), each text's image and each image's texts."""
    from blip2_data import pre_caption

    texts, text_to_image, image_to_texts = [], [], []
    for image, sample in enumerate(dataset.samples):
        image_to_texts.append([])
        for caption in sample["captions"]:
            image_to_texts[-1].append(len(texts))
            text_to_image.append(image)
            texts.append(pre_caption(caption))
    return texts, text_to_image, image_to_texts


def tokenize_texts(tokenizer: Any, texts: list[str], max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded to the longest text, truncated at ``max_length`` tokens (LAVIS: 35)."""
    from blip2_data import pad_sequences

    rows = []
    for ids in tokenizer(texts)["input_ids"]:
        ids = list(ids)
        if len(ids) > max_length:
            ids = ids[: max_length - 1] + ids[-1:]  # keep the closing [SEP]
        rows.append(ids)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids, mask = pad_sequences(rows, pad, "right")
    return np.asarray(ids, dtype=np.int64), np.asarray(mask, dtype=np.int64)


def shard_file(folder: Path, kind: str, process: Process) -> Path:
    return folder / f"{kind}-rank{process.rank}-of-{process.world_size}.npz"


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    temporary = path.with_name(path.name + ".tmp.npz")
    np.savez(temporary, **arrays)
    temporary.replace(path)


def image_features(model: Any, dataset: Any, processor: Any, process: Process, args: Any, folder: Path) -> Path:
    """This rank's images: encoder outputs (for ITM) and normalised query features (for ITC), saved once."""
    import paddle
    from tqdm import tqdm

    from .batches import image_batches

    path = shard_file(folder, "images", process)
    if path.exists():
        return path
    mine = [i for i in range(len(dataset.samples)) if process.owns(i)]
    embeds, feats = [], []
    with tqdm(total=len(mine), unit="img", desc=f"retrieval images rank {process.rank}") as bar:
        for batch in image_batches(dataset, mine, processor, args.batch_size, args.num_workers):
            with paddle.no_grad():
                encoded = model.encode_image(paddle.to_tensor(batch["pixel_values"]))
                # the ViT runs once: its output feeds both the ITC features here and ITM later
                _, projected = model.image_features(model.qformer.ln_vision(encoded))
            embeds.append(encoded.numpy())
            feats.append(projected.numpy())
            bar.update(len(batch["pixel_values"]))
    save_npz(path, index=np.asarray(mine, dtype=np.int64), embeds=np.concatenate(embeds), feats=np.concatenate(feats))
    return path


def text_features(model: Any, ids: np.ndarray, mask: np.ndarray, process: Process, args: Any, folder: Path) -> Path:
    """This rank's texts: the normalised ITC feature of [CLS], saved once."""
    import paddle

    path = shard_file(folder, "texts", process)
    if path.exists():
        return path
    mine = np.asarray([i for i in range(len(ids)) if process.owns(i)], dtype=np.int64)
    feats = []
    for start in range(0, len(mine), args.batch_size * 4):
        rows = mine[start : start + args.batch_size * 4]
        out = model.extract_features(
            input_ids=paddle.to_tensor(ids[rows]), attention_mask=paddle.to_tensor(mask[rows]), mode="text"
        )
        feats.append(out.text_embeds_proj[:, 0].numpy())
    save_npz(path, index=mine, feats=np.concatenate(feats) if feats else np.zeros((0, 0), np.float32))
    return path


def wait_for_files(paths: list[Path], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        if time.monotonic() > deadline:
            missing = [str(p) for p in paths if not p.exists()]
            raise TimeoutError(f"after {timeout:.0f} s the other ranks' features are still missing: {missing}")
        time.sleep(1.0)


def gather_features(folder: Path, kind: str, world: int, count: int, keys: tuple[str, ...], timeout: float) -> dict:
    """All ranks' shards of ``kind`` put back in item order."""
    paths = [shard_file(folder, kind, Process(rank, world)) for rank in range(world)]
    wait_for_files(paths, timeout)
    parts = [np.load(p) for p in paths]
    gathered = {}
    for key in keys:
        first = next(part[key] for part in parts if len(part["index"]))
        whole = np.zeros((count, *first.shape[1:]), dtype=first.dtype)
        for part in parts:
            if len(part["index"]):
                whole[part["index"]] = part[key]
        gathered[key] = whole
    return gathered


def itc_matrix(model: Any, image_feats: np.ndarray, text_feats: np.ndarray, chunk: int = 256) -> np.ndarray:
    """[images, texts]: the best query's cosine similarity (LAVIS: no temperature)."""
    import paddle

    texts = paddle.to_tensor(text_feats)
    rows = []
    for start in range(0, len(image_feats), chunk):
        rows.append(model.itc_similarity(paddle.to_tensor(image_feats[start : start + chunk]), texts).numpy())
    return np.concatenate(rows)


def itm_logits(model: Any, image_embeds: np.ndarray, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The raw "match" logit of ITM averaged over queries, one per (image, text) pair (LAVIS: no softmax)."""
    import paddle

    with paddle.no_grad():
        logits = model.itm_logits(paddle.to_tensor(image_embeds), paddle.to_tensor(ids), paddle.to_tensor(mask))
    return logits[:, 1].numpy()


def rerank_rows(
    model: Any,
    itc: np.ndarray,
    embeds: np.ndarray,
    ids: np.ndarray,
    mask: np.ndarray,
    k: int,
    process: Process,
    store: ShardStore,
) -> None:
    """This rank's rows of both directions not done yet, each written as soon as it is scored."""
    from tqdm import tqdm

    images, texts = itc.shape
    done = store.done_keys()
    rows = [("i2t", i) for i in range(images)] + [("t2i", t) for t in range(texts)]
    mine = [(d, r) for n, (d, r) in enumerate(rows) if process.owns(n) and f"{d}:{r}" not in done]

    def one_image_many_texts(row: int):
        return lambda top: itm_logits(model, np.repeat(embeds[row : row + 1], len(top), 0), ids[top], mask[top])

    def many_images_one_text(row: int):
        return lambda top: itm_logits(
            model, embeds[top], np.repeat(ids[row : row + 1], len(top), 0), np.repeat(mask[row : row + 1], len(top), 0)
        )

    with store.writer(process.rank) as writer:
        for direction, row in tqdm(mine, unit="row", desc=f"retrieval ITM rank {process.rank}"):
            if direction == "i2t":
                columns, combined = rerank_row(itc[row], k, one_image_many_texts(row))
            else:
                columns, combined = rerank_row(itc[:, row], k, many_images_one_text(row))
            writer.write([{"row": f"{direction}:{row}", "columns": columns.tolist(), "scores": combined.tolist()}])


def top_k_arrays(records: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.asarray([r["columns"] for r in records], dtype=np.int64),
        np.asarray([r["scores"] for r in records], dtype=np.float32),
    )


def run_retrieval(args: argparse.Namespace, spec: EvalDataset, dataset: Any, files: list[str]) -> int:
    from .model_io import bundle_for_run
    from .retrieval_score import dense_scores, retrieval_metrics

    process = current_process()
    if args.limit:
        dataset.samples, dataset.origins = dataset.samples[: args.limit], dataset.origins[: args.limit]
    bundle = bundle_for_run(args, stage1=True)
    model, tokenizer, processor = bundle.model, bundle.tokenizer, bundle.image_processor
    output_dir = Path(args.output_dir)
    pin_settings(
        output_dir,
        {
            "task": "retrieval",
            "dataset": args.dataset,
            "split": args.split or spec.split,
            "annotation_files": [str(Path(f).resolve()) for f in files],
            "model": args.model,
            "image_size": processor.config.image_size,
            "k_test": args.k_test,
            "max_text_length": args.max_text_length,
            "limit": args.limit,
            "score": "ITM match logit (mean over queries) + ITC cosine for each row's top k_test by ITC, else -100",
        },
    )
    texts, text_to_image, image_to_texts = texts_of(dataset)
    ids, mask = tokenize_texts(tokenizer, texts, args.max_text_length)
    folder = output_dir / FEATURES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    image_features(model, dataset, processor, process, args, folder)
    text_features(model, ids, mask, process, args, folder)
    world, timeout = process.world_size, args.gather_timeout
    images = gather_features(folder, "images", world, len(dataset.samples), ("embeds", "feats"), timeout)
    text_feats = gather_features(folder, "texts", world, len(texts), ("feats",), timeout)["feats"]
    itc = itc_matrix(model, images["feats"], text_feats)
    store = ShardStore(output_dir / SHARDS_DIR, "row")
    rerank_rows(model, itc, images["embeds"], ids, mask, args.k_test, process, store)
    if not process.is_main:
        return 0
    keys = [f"i2t:{i}" for i in range(len(dataset.samples))] + [f"t2i:{t}" for t in range(len(texts))]
    records = store.gather(keys, timeout)
    i2t_columns, i2t_scores = top_k_arrays(records[: len(dataset.samples)])
    t2i_columns, t2i_scores = top_k_arrays(records[len(dataset.samples) :])
    np.savez(
        output_dir / TOPK_FILE,
        i2t_columns=i2t_columns, i2t_scores=i2t_scores, t2i_columns=t2i_columns, t2i_scores=t2i_scores,
        image_ids=np.asarray([s["image_id"] for s in dataset.samples]), text_to_image=np.asarray(text_to_image),
    )  # fmt: skip
    i2t = dense_scores(i2t_columns, i2t_scores, len(texts))
    t2i = dense_scores(t2i_columns, t2i_scores, len(dataset.samples))
    metrics = retrieval_metrics(i2t, t2i, image_to_texts, text_to_image)
    metrics.update(num_images=len(dataset.samples), num_texts=len(texts))
    metrics["run"] = {"rank0_seconds": round(time.perf_counter() - start, 2), "world_size": world}
    write_json(output_dir / METRICS_FILE, metrics)
    print(format_table(metrics))
    return 0
