"""The VQA scorer: hand-worked cases for each normalisation rule, the official algorithm on generated answer
sets, and the files / CLI with their errors."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import official_vqa_reference as official
import pytest

from blip2_eval.cli import main
from blip2_eval.json_files import EvalInputError
from blip2_eval.vqa_accuracy import VqaReference, exact_match_accuracy, question_accuracy, vqa_accuracy
from blip2_eval.vqa_normalize import normalize_answer, normalize_punctuation
from blip2_eval.vqa_score import score_vqa_files


@pytest.mark.parametrize(
    "raw, expected",
    [
        # whitespace: newlines and tabs become spaces, ends stripped, runs collapse when words are re-joined
        ("  yes\n", "yes"),
        ("red\tand  white", "red and white"),
        # case
        ("Yes", "yes"),
        # number words zero..ten (and "none") to digits; larger ones stay words
        ("Two", "2"),
        ("none", "0"),
        ("ten", "10"),
        ("eleven", "eleven"),
        # articles dropped as words only
        ("a dog", "dog"),
        ("the an apple", "apple"),
        ("theater", "theater"),
        # contractions restored, without apostrophes only
        ("dont know", "don't know"),
        ("isnt", "isn't"),
        ("Ive", "ive"),  # the official table's capitalised keys never match after lower-casing
        # punctuation touching a space is deleted ...
        ("hot dog, bun", "hot dog bun"),
        ("yes !", "yes"),
        # ... inside a word it becomes a space
        ("man-made", "man made"),
        ("black/white", "black white"),
        # a digit,digit group anywhere deletes every mark
        ("1,000", "1000"),
        ("1,000 man-made", "1000 manmade"),
        # periods: deleted unless a digit follows
        ("yes.", "yes"),
        ("3.5", "3.5"),
        ("u.s.a.", "usa"),
        ("mr.smith", "mrsmith"),
        # the apostrophe is not in the official list
        ("dog's", "dog's"),
    ],
)
def test_each_normalisation_rule(raw, expected):
    assert normalize_answer(raw) == expected


def test_period_removal_stops_after_32_as_the_official_count_argument_does():
    text = "." * 40
    assert normalize_punctuation(text) == "." * 8
    assert official.process_punctuation(text) == "." * 8


def test_leave_one_out_accuracy_by_hand():
    # 10 humans: 3 say "2", 7 say "3". Prediction "two" -> "2".
    answers = ["2"] * 3 + ["3"] * 7
    # leaving out one of the three "2": 2 matches -> 2/3; leaving out a "3": 3 matches -> 1.
    assert question_accuracy("two", answers) == pytest.approx((3 * 2 / 3 + 7 * 1) / 10)
    # one human agrees: 1/3 for the nine subsets that keep it, 0 for the one that drops it
    assert question_accuracy("cat", ["cat"] + ["dog"] * 9) == pytest.approx(9 * (1 / 3) / 10)
    assert question_accuracy("horse", ["cat"] * 10) == 0
    assert question_accuracy("Cat.", ["cat"] * 10) == 1


def test_human_answers_are_only_punctuation_normalised_and_only_when_humans_disagree():
    # all ten identical: used as written, so "the cat" can never match (predictions lose their article)
    assert question_accuracy("the cat", ["the cat"] * 10) == 0
    # disagreeing humans get the punctuation rule but keep case and articles
    assert question_accuracy("man made", ["man-made"] * 9 + ["other"]) == 1
    assert question_accuracy("cat", ["Cat"] * 9 + ["dog"]) == 0


def generated_case(rng: random.Random, question_id: int) -> tuple[dict, str]:
    """Official-format annotation with 10 answers drawn from a small pool plus a prediction in some spelling."""
    pool = ["2", "two", "yes", "no", "man-made", "red, white", "1,000", "the dog", "dog", "u.s.", "dont",
            "3.5", "Yes", "hot dog!", "a cat", "none", "0", "black/white", "ten", "10"]  # fmt: skip
    chosen = rng.sample(pool, rng.randint(1, 4))
    answers = [rng.choice(chosen) for _ in range(10)]
    prediction = rng.choice(chosen + pool)
    prediction = rng.choice([prediction, prediction.upper(), f" {prediction}.\n", f"the {prediction}"])
    annotation = {
        "question_id": question_id,
        "image_id": question_id // 3,
        "question_type": rng.choice(["how many", "is the", "what color is the"]),
        "answer_type": rng.choice(["number", "yes/no", "other"]),
        "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(answers)],
    }
    return annotation, prediction


def test_equals_the_official_algorithm_on_generated_answer_sets():
    rng = random.Random(0)
    cases = [generated_case(rng, q) for q in range(600)]
    annotations = [a for a, _ in cases]
    predictions = {a["question_id"]: p for a, p in cases}
    expected = official.evaluate(annotations, predictions)
    references = {
        a["question_id"]: VqaReference([x["answer"] for x in a["answers"]], a["answer_type"], a["question_type"])
        for a in annotations
    }
    ours = vqa_accuracy(predictions, references)
    assert ours["overall"] == expected["overall"]
    assert ours["perAnswerType"] == expected["perAnswerType"]
    assert ours["perQuestionType"] == expected["perQuestionType"]
    # not a degenerate sample: some right, some wrong, some partial
    scores = {question_accuracy(predictions[q], r.answers) for q, r in references.items()}
    assert 0 in scores and 1 in scores and len(scores) > 3
    for annotation, prediction in cases:  # and question by question
        single = official.evaluate([annotation], {annotation["question_id"]: prediction})["overall"]
        answers = [x["answer"] for x in annotation["answers"]]
        assert round(100 * question_accuracy(prediction, answers), 2) == single


def test_gqa_exact_match_after_normalisation():
    metrics = exact_match_accuracy(
        {1: "Yes.", 2: "the table", 3: "two", 4: "chair"}, {1: "yes", 2: "table", 3: "2", 4: "table"}
    )
    assert metrics == {"overall": 75.0, "num_questions": 4}


# -- files and CLI ---------------------------------------------------------------------------------


@pytest.fixture
def official_files(tmp_path):
    rng = random.Random(1)
    cases = [generated_case(rng, q) for q in range(1, 41)]
    annotations = tmp_path / "v2_mscoco_val2014_annotations.json"
    annotations.write_text(json.dumps({"annotations": [a for a, _ in cases]}))
    questions = tmp_path / "v2_OpenEnded_mscoco_val2014_questions.json"
    questions.write_text(
        json.dumps(
            {"questions": [{"question_id": a["question_id"], "image_id": 1, "question": "q?"} for a, _ in cases]}
        )
    )
    results = tmp_path / "results.json"
    results.write_text(json.dumps([{"question_id": a["question_id"], "answer": p} for a, p in cases]))
    expected = official.evaluate([a for a, _ in cases], {a["question_id"]: p for a, p in cases})
    return results, questions, annotations, expected


def test_files_score_as_the_official_algorithm(official_files):
    results, questions, annotations, expected = official_files
    metrics = score_vqa_files(results, annotations, questions)
    assert metrics["overall"] == expected["overall"] and metrics["perAnswerType"] == expected["perAnswerType"]
    assert metrics["metric"] == "vqa_accuracy" and metrics["num_questions"] == 40


def test_missing_and_unknown_question_ids_are_listed(official_files, tmp_path):
    results, questions, annotations, _ = official_files
    rows = json.loads(results.read_text())
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps(rows[3:] + [{"question_id": 999, "answer": "x"}]))
    with pytest.raises(EvalInputError) as error:
        score_vqa_files(partial, annotations, questions)
    message = str(error.value)
    assert "partial.json" in message and "3 question(s) have no answer: [1, 2, 3]" in message and "[999]" in message


@pytest.mark.parametrize(
    "content, expected",
    [
        ("[{", "not valid JSON at line 1"),
        ('{"question_id": 1}', "expected a JSON list"),
        ('[{"question_id": 1, "answer": "a"}, {"question_id": "x", "answer": "b"}]', "row 1: key 'question_id'"),
        ('[{"question_id": 1, "answer": 3}]', "row 0: key 'answer' should be str"),
        ('[{"question_id": 1, "answer": "a"}, {"question_id": 1, "answer": "b"}]', "already answered in row 0"),
    ],
)
def test_malformed_results_name_the_file_and_row(official_files, tmp_path, content, expected):
    _, questions, annotations, _ = official_files
    bad = tmp_path / "bad_results.json"
    bad.write_text(content)
    with pytest.raises(EvalInputError, match="bad_results.json") as error:
        score_vqa_files(bad, annotations, questions)
    assert expected in str(error.value)


def test_questions_and_annotations_must_agree(official_files, tmp_path):
    results, questions, annotations, _ = official_files
    data = json.loads(questions.read_text())
    data["questions"].append({"question_id": 777, "image_id": 1, "question": "q?"})
    other = tmp_path / "other_questions.json"
    other.write_text(json.dumps(data))
    with pytest.raises(EvalInputError, match=r"only in questions \[777\]"):
        score_vqa_files(results, annotations, other)


def test_lavis_rows_lists_and_gqa_single_answers(tmp_path):
    results = tmp_path / "r.json"
    results.write_text(json.dumps([{"question_id": 1, "answer": "dog"}, {"question_id": 2, "answer": "Two"}]))
    lists = tmp_path / "okvqa_val_eval.json"
    lists.write_text(
        json.dumps([{"question_id": 1, "answer": ["dog"] * 10}, {"question_id": "2", "answer": ["2"] * 2 + ["3"] * 8}])
    )
    metrics = score_vqa_files(results, lists)
    assert metrics["metric"] == "vqa_accuracy"
    assert metrics["overall"] == round(100 * (1 + 2 * (1 / 3) / 10 * 1 + 8 * (2 / 3) / 10) / 2, 2)
    gqa = tmp_path / "testdev_balanced_questions.json"
    gqa.write_text(json.dumps([{"question_id": 1, "answer": "dog"}, {"question_id": 2, "answer": "3"}]))
    assert score_vqa_files(results, gqa) == {"overall": 50.0, "num_questions": 2, "metric": "exact_match"}


def test_cli_json_prints_only_the_metrics(official_files, capsys):
    results, questions, annotations, expected = official_files
    code = main(
        [
            "vqa-score",
            "--results",
            str(results),
            "--questions",
            str(questions),
            "--annotations",
            str(annotations),
            "--json",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert json.loads(out)["overall"] == expected["overall"]


def test_cli_error_is_one_line_and_exit_1(official_files, tmp_path, capsys):
    _, questions, annotations, _ = official_files
    missing = tmp_path / "nope.json"
    assert main(["vqa-score", "--results", str(missing), "--annotations", str(annotations)]) == 1
    assert "results file not found" in capsys.readouterr().err


def test_scorer_runs_without_paddle(official_files):
    """The scorer imports neither paddle nor a model: run it where importing paddle fails (blip2-core's decoding
    settings, which the command line's parser reads, are plain data)."""
    results, questions, annotations, expected = official_files
    code = (
        "import sys; sys.modules['paddle'] = None; sys.modules['blip2_data'] = None\n"
        "sys.modules['blip2_core.model.modeling'] = None; sys.modules['blip2_core.loading'] = None\n"
        "from blip2_eval.cli import main\n"
        f"sys.exit(main(['vqa-score', '--results', {str(results)!r}, '--annotations', {str(annotations)!r}, '--json']))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["overall"] == expected["overall"]
