"""A retrained model replaces the shipped one only when the model card's figures improve: none falls, one rises."""

import json

import pytest

from blip2_shapes.recipe.improvement import HEADLINE_FIGURES, compare, improves, replace_if_better


def scores(**figures: float) -> dict:
    """A scores.json record with every headline figure at 50 except those given (by the figure's last key)."""
    metrics: dict = {}
    for _, path in HEADLINE_FIGURES:
        node = metrics
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = figures.get(path[-1].replace(" ", "_"), 50.0)
    return {"metrics": metrics}


def write_model(folder, record: dict, weights: bytes):
    folder.mkdir(parents=True)
    (folder / "scores.json").write_text(json.dumps(record))
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "README.md").write_text(f"card for {weights!r}")
    return folder


def test_one_figure_rising_with_none_falling_improves():
    assert improves(compare(scores(), scores(txt_r5=80.0)))
    assert not improves(compare(scores(), scores()))  # nothing rose: keep the shipped files
    assert not improves(compare(scores(), scores(txt_r5=80.0, overall=49.9)))  # VQA fell
    # a figure the new run did not measure counts as fallen, not as unchanged
    new = scores(txt_r5=80.0)
    del new["metrics"]["retrieval"]["img_r5"]
    changes = compare(scores(), new)
    assert not improves(changes) and [c.label for c in changes if c.fell] == ["retrieval text->image R@5"]


def test_replacing_moves_weights_and_card_together_and_only_when_better(tmp_path):
    shipped = write_model(tmp_path / "model", scores(), b"old")
    worse = write_model(tmp_path / "worse", scores(txt_r5=90.0, is_there=40.0), b"worse")
    replaced, table = replace_if_better(worse, shipped)
    assert not replaced and "VQA is there %" in table and "fell" in table
    assert (shipped / "model.safetensors").read_bytes() == b"old"

    better = write_model(tmp_path / "better", scores(what_color=95.0), b"new")
    replaced, table = replace_if_better(better, shipped)
    assert replaced and "rose" in table
    assert (shipped / "model.safetensors").read_bytes() == b"new"
    assert (shipped / "README.md").read_text() == "card for b'new'"
    assert json.loads((shipped / "scores.json").read_text()) == scores(what_color=95.0)

    replaced, _ = replace_if_better(worse, shipped, anyway=True)
    assert replaced and (shipped / "model.safetensors").read_bytes() == b"worse"


def test_a_model_without_figures_is_refused_by_name(tmp_path):
    shipped = write_model(tmp_path / "model", scores(), b"old")
    unmeasured = write_model(tmp_path / "unmeasured", {"profile": "full"}, b"new")
    with pytest.raises(ValueError, match=r"unmeasured/scores\.json: no figures"):
        replace_if_better(unmeasured, shipped)
