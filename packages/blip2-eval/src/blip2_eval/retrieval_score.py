"""Recall@K of image-text retrieval from score matrices (numpy only).

Image -> text: an image's rank is the best rank among its ground-truth captions. Text -> image: a caption's
rank is the rank of its image. Ranks are taken in a stable descending sort, so a tie is broken by index
(LAVIS's ``argsort()[::-1]`` breaks ties the other way; only ties across the top-K boundary can differ, and
LAVIS's -100 fill for pairs outside the re-ranked top k_test never reaches R@10 while k_test >= 10).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RECALL_AT = (1, 5, 10)


def ranks_of_targets(scores: np.ndarray, targets: Sequence[Sequence[int]]) -> np.ndarray:
    """For each row, the 0-based position of its best-placed target in the row's descending order."""
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[0] != len(targets):
        raise ValueError(f"scores {scores.shape} do not match {len(targets)} rows of targets")
    order = np.argsort(-scores, axis=1, kind="stable")
    position = np.empty_like(order)
    rows = np.arange(scores.shape[0])[:, None]
    position[rows, order] = np.arange(scores.shape[1])[None, :]
    ranks = np.empty(scores.shape[0], dtype=np.int64)
    for row, row_targets in enumerate(targets):
        if len(row_targets) == 0:
            raise ValueError(f"row {row} has no ground-truth match")
        ranks[row] = position[row, list(row_targets)].min()
    return ranks


def recall_at(ranks: np.ndarray, k: int) -> float:
    return float(100.0 * np.mean(ranks < k))


def retrieval_metrics(
    scores_i2t: np.ndarray,
    scores_t2i: np.ndarray,
    image_to_texts: Sequence[Sequence[int]],
    text_to_image: Sequence[int],
) -> dict[str, float]:
    """LAVIS's keys: txt_r1/5/10 (image -> text), img_r1/5/10 (text -> image), their means and r_mean."""
    text_ranks = ranks_of_targets(scores_i2t, image_to_texts)
    image_ranks = ranks_of_targets(scores_t2i, [[image] for image in text_to_image])
    metrics = {f"txt_r{k}": recall_at(text_ranks, k) for k in RECALL_AT}
    metrics.update({f"img_r{k}": recall_at(image_ranks, k) for k in RECALL_AT})
    metrics["txt_r_mean"] = sum(metrics[f"txt_r{k}"] for k in RECALL_AT) / len(RECALL_AT)
    metrics["img_r_mean"] = sum(metrics[f"img_r{k}"] for k in RECALL_AT) / len(RECALL_AT)
    metrics["r_mean"] = (metrics["txt_r_mean"] + metrics["img_r_mean"]) / 2
    return metrics


def rerank_row(itc_row: np.ndarray, k: int, itm_for_columns) -> tuple[np.ndarray, np.ndarray]:
    """LAVIS's score for one row: its top-``k`` columns by ITC get ITM + ITC (the rest will be -100).

    ``itm_for_columns(columns) -> scores`` runs the (costly) matching head on the chosen pairs only.
    Returns (columns, combined scores).
    """
    itc_row = np.asarray(itc_row, dtype=np.float32)
    columns = np.argsort(-itc_row, kind="stable")[: min(k, len(itc_row))]
    return columns, np.asarray(itm_for_columns(columns), dtype=np.float32) + itc_row[columns]


def dense_scores(columns: np.ndarray, scores: np.ndarray, width: int, fill: float = -100.0) -> np.ndarray:
    """[rows, width] matrix with each row's top-k ``scores`` at ``columns`` and ``fill`` elsewhere (LAVIS: -100)."""
    matrix = np.full((len(columns), width), fill, dtype=np.float32)
    np.put_along_axis(matrix, np.asarray(columns, dtype=np.int64), np.asarray(scores, dtype=np.float32), axis=1)
    return matrix
