"""Retrieval recall against a brute-force count on random similarity matrices; LAVIS's top-k re-ranking."""

from __future__ import annotations

import numpy as np
import pytest

from blip2_eval.retrieval_score import dense_scores, rerank_row, retrieval_metrics


def brute_force(scores_i2t, scores_t2i, image_to_texts, text_to_image):
    """Count, for each query, the candidates placed before its best ground truth: a higher score, or an equal
    score at a lower index (the documented tie rule; LAVIS's -100 fill makes ties when k_test < 10)."""

    def placed_before(row_scores, target):
        target_score = row_scores[target]
        return sum(1 for c, s in enumerate(row_scores) if s > target_score or (s == target_score and c < target))

    def hit(row_scores, targets, k):
        return min(placed_before(row_scores, t) for t in targets) < k

    out = {}
    for k in (1, 5, 10):
        out[f"txt_r{k}"] = 100 * sum(hit(s, t, k) for s, t in zip(scores_i2t, image_to_texts)) / len(scores_i2t)
        out[f"img_r{k}"] = 100 * sum(hit(s, [t], k) for s, t in zip(scores_t2i, text_to_image)) / len(scores_t2i)
    return out


@pytest.mark.parametrize("seed", range(5))
def test_recall_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    images, per_image = 40, 5
    texts = images * per_image
    text_to_image = rng.permutation(np.repeat(np.arange(images), per_image))
    image_to_texts = [np.flatnonzero(text_to_image == i).tolist() for i in range(images)]
    # a signal so that recalls are neither 0 nor 100
    signal = (text_to_image[None, :] == np.arange(images)[:, None]) * rng.uniform(0, 3)
    scores_i2t = rng.normal(size=(images, texts)) + signal
    scores_t2i = rng.normal(size=(texts, images)) + signal.T
    ours = retrieval_metrics(scores_i2t, scores_t2i, image_to_texts, text_to_image)
    expected = brute_force(scores_i2t, scores_t2i, image_to_texts, text_to_image)
    for key, value in expected.items():
        assert ours[key] == pytest.approx(value), key
    assert ours["txt_r_mean"] == pytest.approx((expected["txt_r1"] + expected["txt_r5"] + expected["txt_r10"]) / 3)
    assert ours["r_mean"] == pytest.approx((ours["txt_r_mean"] + ours["img_r_mean"]) / 2)


def test_ties_are_broken_by_index():
    scores = np.array([[0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]])  # the target (column 6) ties with five before it
    metrics = retrieval_metrics(scores, scores, [[6]], [6])
    assert metrics["txt_r5"] == 0.0 and metrics["txt_r10"] == 100.0
    assert brute_force(scores, scores, [[6]], [6])["txt_r5"] == 0.0


def test_perfect_and_reversed_scores():
    eye = np.eye(12)
    perfect = retrieval_metrics(eye, eye, [[i] for i in range(12)], list(range(12)))
    assert perfect["txt_r1"] == perfect["img_r1"] == perfect["r_mean"] == 100.0
    worst = retrieval_metrics(-eye, -eye, [[i] for i in range(12)], list(range(12)))
    assert worst["txt_r10"] == worst["img_r10"] == 0.0


def test_rerank_row_combines_itm_and_itc_on_the_top_k_only():
    itc = np.array([0.2, 0.8, 0.1, 0.7], dtype=np.float32)
    asked = []

    def itm(columns):
        asked.append(list(columns))
        return np.full(len(columns), 10.0)

    columns, combined = rerank_row(itc, 2, itm)
    assert asked == [[1, 3]] and columns.tolist() == [1, 3]
    np.testing.assert_allclose(combined, [10.8, 10.7], rtol=1e-6)
    matrix = dense_scores(columns[None], combined[None], 4)
    np.testing.assert_allclose(matrix, [[-100, 10.8, -100, 10.7]], rtol=1e-6)
