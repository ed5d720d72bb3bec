"""OK-VQA (with its lemmatiser), GQA, NoCaps and Flickr30K through the commands; the lemmatiser's rule."""

from __future__ import annotations

import json
from types import SimpleNamespace

from conftest import write_jpeg

from blip2_eval.cli import main
from blip2_eval.lemmatize import Lemmatizer, lemmatize_with
from blip2_eval.vqa_score import score_vqa_files


def fake_spacy(tags):
    """A stand-in for spaCy's pipeline: word -> (part of speech, lemma)."""
    return lambda text: [
        SimpleNamespace(text=w, pos_=tags.get(w, ("X", w))[0], lemma_=tags.get(w, ("X", w))[1]) for w in text.split()
    ]


def test_nouns_and_verbs_are_lemmatised_other_words_kept():
    nlp = fake_spacy({"dogs": ("NOUN", "dog"), "running": ("VERB", "run"), "better": ("ADJ", "good")})
    assert lemmatize_with(nlp, "dogs running better") == "dog run better"
    lemmatizer = Lemmatizer(nlp, "fake")
    assert lemmatizer.active and lemmatizer(["dogs", "better"]) == ["dog", "better"]


def test_without_spacys_model_answers_are_kept_and_the_metrics_say_so(opt_model, tmp_path):
    root = tmp_path / "okvqa"
    write_jpeg(root / "images" / "val2014" / "COCO_val2014_000000000042.jpg", seed=42)
    (root / "OpenEnded_mscoco_val2014_questions.json").write_text(json.dumps(
        {"questions": [{"image_id": 42, "question": "What sport is this?", "question_id": 420}]}))  # fmt: skip
    (root / "mscoco_val2014_annotations.json").write_text(json.dumps({"annotations": [
        {"question_id": 420, "question_type": "what", "answer_type": "other",
         "answers": [{"answer": "surfing", "answer_id": i} for i in range(10)]}]}))  # fmt: skip
    lemmatizer = Lemmatizer()
    out = tmp_path / "out"
    args = ["vqa", "--model", str(opt_model), "--dataset", "ok_vqa", "--output_dir", str(out), "--data_files",
            str(root / "images"), str(root / "OpenEnded_mscoco_val2014_questions.json"),
            str(root / "mscoco_val2014_annotations.json")]  # fmt: skip
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    settings = json.loads((out / "settings.json").read_text())
    assert metrics["lemmatizer"] == settings["lemmatizer"] == lemmatizer.description
    if not lemmatizer.active:
        assert metrics["lemmatizer"].startswith("none: spaCy en_core_web_sm not available")
    again = score_vqa_files(out / "results.json", root / "mscoco_val2014_annotations.json")
    assert metrics["overall"] == again["overall"] and metrics["metric"] == "vqa_accuracy"


def test_gqa_exact_match(opt_model, tmp_path):
    root = tmp_path / "gqa"
    rows = []
    for i in range(3):
        write_jpeg(root / "images" / f"n{100 + i}.jpg", seed=i)
        rows.append({"image": f"n{100 + i}.jpg", "question": "Is it red?", "question_id": str(7 + i), "answer": "yes"})
    (root / "testdev_balanced_questions.json").write_text(json.dumps(rows))
    out = tmp_path / "out"
    args = ["vqa", "--model", str(opt_model), "--dataset", "gqa", "--output_dir", str(out), "--data_files",
            str(root / "images"), str(root / "testdev_balanced_questions.json")]  # fmt: skip
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert [r["question_id"] for r in results] == [7, 8, 9]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["metric"] == "exact_match" and metrics["num_questions"] == 3
    expected = 100 * sum(r["answer"].strip().lower() == "yes" for r in results) / 3
    assert metrics["overall"] == round(expected, 2)


def test_nocaps_caption_with_its_own_defaults_and_per_domain_scores(opt_model, tmp_path, monkeypatch):
    root = tmp_path / "nocaps"
    images = [{"id": 0, "file_name": "0013ea2087020901.jpg", "domain": "in-domain"},
              {"id": 1, "file_name": "00223d6b27aab0e8.jpg", "domain": "out-domain"},
              {"id": 2, "file_name": "0a1b2c3d4e5f6071.jpg", "domain": "in-domain"}]  # fmt: skip
    for n, image in enumerate(images):
        write_jpeg(root / "images" / image["file_name"], seed=5 + n)
    annotations = [{"image_id": i, "caption": f"a man on a red dog {i}", "id": i} for i in (0, 1, 2)]
    (root / "nocaps_val_4500_captions.json").write_text(json.dumps({"images": images, "annotations": annotations}))
    # pycocoevalcap itself is tested against COCOEvalCap elsewhere; here: which images each domain is scored on
    import blip2_eval.caption_score as caption_score

    scored = []

    def record(captions, references, **_):
        scored.append((sorted(captions), sorted(references)))
        return {"num_images": len(references)}

    monkeypatch.setattr(caption_score, "score_captions", record)
    out = tmp_path / "out"
    args = ["caption", "--model", str(opt_model), "--dataset", "nocaps", "--output_dir", str(out),
            "--max_new_tokens", "12", "--data_files", str(root / "images"), str(root / "nocaps_val_4500_captions.json")]  # fmt: skip
    assert main(args) == 0
    settings = json.loads((out / "settings.json").read_text())
    assert (settings["generation"]["max_new_tokens"], settings["generation"]["min_new_tokens"]) == (12, 10)
    assert [r["image_id"] for r in json.loads((out / "results.json").read_text())] == [0, 1, 2]
    assert scored == [([0, 1, 2], [0, 1, 2]), ([0, 2], [0, 2]), ([1], [1])]  # overall, in-domain, out-domain
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["per_domain"] == {"in-domain": {"num_images": 2}, "out-domain": {"num_images": 1}}


def test_nocaps_defaults():
    from blip2_eval.settings import default_settings

    nocaps = default_settings("caption", "nocaps").for_model("caption", "t5", (1,))
    assert (nocaps.max_new_tokens, nocaps.min_new_tokens, nocaps.length_penalty) == (80, 10, 1.0)


def test_flickr30k_retrieval(stage1_model, tmp_path):
    root = tmp_path / "flickr"
    rows = []
    for i in range(3):
        write_jpeg(root / "images" / "flickr30k-images" / f"{500 + i}.jpg", seed=i)
        rows.append({"image": f"flickr30k-images/{500 + i}.jpg", "caption": [f"a dog {i}", f"the red cat {i}"]})
    (root / "flickr30k_test.json").write_text(json.dumps(rows))
    out = tmp_path / "out"
    args = ["retrieval", "--model", str(stage1_model), "--dataset", "flickr30k", "--output_dir", str(out),
            "--data_files", str(root / "images"), str(root / "flickr30k_test.json")]  # fmt: skip
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["num_images"], metrics["num_texts"]) == (3, 6) and metrics["txt_r10"] == 100.0
