"""caption-score equals pycocoevalcap's own COCOEvalCap on the same files; its input errors."""

from __future__ import annotations

import json

import pytest

from blip2_eval.caption_score import score_caption_files, spice_unavailable_reason
from blip2_eval.cli import main
from blip2_eval.json_files import EvalInputError

REFERENCES = {
    11: ["A man riding a wave on top of a surfboard.", "a surfer rides a large wave in the ocean", "Man surfing."],
    25: ["Two dogs play with a red frisbee on the grass.", "dogs playing in a park", "two brown dogs running"],
    7: ["A plate of food with broccoli and rice.", "a white plate topped with rice and vegetables"],
    40: ["A red double decker bus on a city street.", "a bus driving down the road", "red bus in london"],
}
CANDIDATES = {
    11: "a man riding a wave on a surfboard",
    25: "two dogs playing with a frisbee",
    7: "a plate of rice and broccoli",
    40: "a red bus parked on the street",
}


@pytest.fixture
def caption_files(tmp_path):
    annotations = tmp_path / "coco_karpathy_test_gt.json"
    annotations.write_text(
        json.dumps(
            {
                "images": [{"id": i} for i in REFERENCES],
                "annotations": [
                    {"image_id": i, "caption": c, "id": 100 * i + k}
                    for i, refs in REFERENCES.items()
                    for k, c in enumerate(refs)
                ],
            }
        )
    )
    results = tmp_path / "results.json"
    results.write_text(json.dumps([{"image_id": i, "caption": c} for i, c in CANDIDATES.items()]))
    return results, annotations


def coco_eval_cap(results, annotations, monkeypatch):
    """pycocoevalcap's own evaluation; its SPICE step replaced where CoreNLP is absent (it would download)."""
    import pycocoevalcap.eval as coco_eval
    from pycocotools.coco import COCO

    class NoSpice:
        def compute_score(self, gts, res):
            return 0.0, [0.0] * len(res)

        def method(self):
            return "SPICE"

    if spice_unavailable_reason() is not None:
        monkeypatch.setattr(coco_eval, "Spice", NoSpice)
    coco = COCO(str(annotations))
    evaluator = coco_eval.COCOEvalCap(coco, coco.loadRes(str(results)))
    evaluator.evaluate()
    return evaluator.eval


def test_cli_json_equals_coco_eval_cap(caption_files, monkeypatch, capfd):
    results, annotations = caption_files
    assert main(["caption-score", "--results", str(results), "--annotations", str(annotations), "--json"]) == 0
    ours = json.loads(capfd.readouterr().out)  # stdout holds the metrics only (Bleu's progress went to stderr)
    reference = coco_eval_cap(results, annotations, monkeypatch)
    for name in ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr"):
        assert ours[name] == reference[name], name
    assert 0 < ours["CIDEr"] and 0 < ours["Bleu_4"] < ours["Bleu_1"] < 1  # a real, non-trivial score
    assert ours["num_images"] == 4
    if spice_unavailable_reason() is not None:
        assert "SPICE" not in ours and "CoreNLP" in ours["skipped"]["SPICE"]


def test_missing_and_unknown_images_are_listed(caption_files, tmp_path):
    _, annotations = caption_files
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps([{"image_id": 11, "caption": "a surfer"}, {"image_id": 99, "caption": "x"}]))
    with pytest.raises(EvalInputError) as error:
        score_caption_files(partial, annotations)
    message = str(error.value)
    assert "partial.json" in message and "[25, 7, 40]" in message and "[99]" in message


@pytest.mark.parametrize(
    "content, expected",
    [
        ("not json", "not valid JSON"),
        ('[{"image_id": 11}]', "row 0: missing key 'caption'"),
        ('[{"image_id": 11, "caption": "a"}, {"image_id": 11, "caption": "b"}]', "row 1: image_id 11 has a caption"),
    ],
)
def test_malformed_results_name_the_file_and_row(caption_files, tmp_path, content, expected):
    _, annotations = caption_files
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    with pytest.raises(EvalInputError, match="bad.json") as error:
        score_caption_files(bad, annotations)
    assert expected in str(error.value)


def test_ground_truth_must_be_coco_format(caption_files, tmp_path):
    results, _ = caption_files
    wrong = tmp_path / "karpathy_rows.json"
    wrong.write_text(json.dumps([{"image": "a.jpg", "caption": ["x"]}]))
    with pytest.raises(EvalInputError, match="karpathy_rows.json: expected COCO caption format"):
        score_caption_files(results, wrong)
