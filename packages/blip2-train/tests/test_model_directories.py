"""Every directory blip2-train writes loads everywhere, from another working directory, offline.

The matrix: {stage-1, stage-2 (from stage 1, its LLM named by a relative path), stage 2 from the embedded
default model, finetune-caption / finetune-vqa / finetune-retrieval, a checkpoint-N, a blip2-merge output} x
{from_pretrained, blip2-predict, blip2-eval, blip2-serve, the next stage's --model_name_or_path}. Each cell
loads the weights that were trained (compared with the saved tensors) or fails with a clear message.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import paddle
import pytest
import tiny
from safetensors.numpy import load_file

from blip2_core import Blip2ForConditionalGeneration, Blip2Qformer
from blip2_core.loading.default_model import default_model_path

SHORT = ["--per_device_train_batch_size", "4", "--max_steps", "2", "--save_steps", "2", "--warmup_steps", "1",
         "--learning_rate", "1e-3", "--seed", "3"]  # fmt: skip
STAGE1_KINDS = {"stage1", "stage1-checkpoint", "retrieval"}


@pytest.fixture(scope="module")
def runs(assets, tmp_path_factory):
    """Each training command run once, in a working directory of its own (``work``), as a user would."""
    work = tmp_path_factory.mktemp("work")
    shutil.copytree(assets["llm"], work / "opt")  # named relatively below, as the blip2-train README does
    data = tiny.write_captions(work / "data")
    vqa = tiny.write_vqa(work / "vqa")
    common = [*tiny.COMMON, *SHORT]

    def train(stage, output, *extra):
        tiny.train([stage, "--data_files", data, "--output_dir", output, *common, *extra], work)
        return work / output

    out = {
        "stage1": train(
            "stage1", "s1", "--vision_model_name_or_path", str(assets["vision"]), "--qformer_init", str(assets["bert"])
        )
    }
    out["stage2"] = train("stage2", "s2", "--model_name_or_path", "s1", "--text_model_name_or_path", "opt")
    out["checkpoint"] = out["stage2"] / "checkpoint-2"
    out["stage1-checkpoint"] = out["stage1"] / "checkpoint-2"
    out["caption"] = train("finetune-caption", "fc", "--model_name_or_path", "s2", "--image_size", str(tiny.IMAGE_SIZE))
    tiny.train(
        ["finetune-vqa", "--data_files", vqa, "--output_dir", "fv", "--model_name_or_path", "s1",
         "--text_model_name_or_path", "opt", *common],
        work,
    )  # fmt: skip
    out["vqa"] = work / "fv"
    out["retrieval"] = train("finetune-retrieval", "fr", "--model_name_or_path", "s1")
    if default_model_path() is not None:
        out["default"] = train("stage2", "sd", "--model_name_or_path", "blip2-shapes", "--image_size", "64")
    merged = subprocess.run(
        [sys.executable, "-m", "blip2_core.cli.merge", "--vision", "s1", "--bridge", "s2", "--llm", "opt", "--save",
         "merged"],
        cwd=work, env=tiny.environment(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert merged.returncode == 0, merged.stderr[-3000:]
    out["merged"] = work / "merged"
    return out


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """Another working directory than the one the models were written in."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def model_class(kind):
    return Blip2Qformer if kind in STAGE1_KINDS else Blip2ForConditionalGeneration


def assert_holds_saved_tensors(model, directory):
    state = model.state_dict()
    saved = load_file(str(directory / "model.safetensors"))
    assert saved, directory
    for name, value in saved.items():
        np.testing.assert_array_equal(state[name].numpy(), value, err_msg=f"{directory}: {name}")


KINDS = ["stage1", "stage2", "checkpoint", "stage1-checkpoint", "caption", "vqa", "retrieval", "default", "merged"]


@pytest.mark.parametrize("kind", KINDS)
def test_from_pretrained_loads_what_was_trained(runs, kind, elsewhere):
    if kind not in runs:
        pytest.skip("this installation carries no default model")
    directory = runs[kind]
    model = model_class(kind).from_pretrained(directory)
    assert not model.load_report.missing
    assert_holds_saved_tensors(model, directory)
    if kind in ("stage2", "caption", "vqa", "default", "merged"):  # nothing of the model was lost on the way
        assert model.config.text_name_or_path is None or os.path.isabs(model.config.text_name_or_path)
    if kind == "default":  # the embedded LLM stayed embedded, and trained weights were written
        assert any(k.startswith("language_model.") for k in load_file(str(directory / "model.safetensors")))
        assert model.config.text_name_or_path is None


def test_a_checkpoint_loads_over_the_models_it_started_from(runs, elsewhere):
    checkpoint, final = runs["checkpoint"], runs["stage2"]
    record = json.loads((checkpoint / "blip2_checkpoint.json").read_text())
    assert record["weights_from"] == [str(runs["stage1"])]  # absolute: it loads from anywhere
    model = Blip2ForConditionalGeneration.from_pretrained(checkpoint)
    # the frozen ViT is not in the checkpoint: it comes from the stage-1 model; the rest is the step-2 weights,
    # which are also what the final model holds (the run ended at step 2)
    saved = load_file(str(checkpoint / "model.safetensors"))
    assert not any(k.startswith(("vision_model.", "language_model.")) for k in saved)
    reference = Blip2ForConditionalGeneration.from_pretrained(final)
    for name, value in reference.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[name].numpy(), value.numpy(), err_msg=name)


def test_a_model_with_missing_weights_is_refused_unless_allowed(runs, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(runs["checkpoint"], partial)
    (partial / "blip2_checkpoint.json").unlink()  # a checkpoint cut off from the models it goes over
    with pytest.raises(ValueError, match=r"lacks \d+ weights of the model .*allow_missing_weights=True"):
        Blip2ForConditionalGeneration.from_pretrained(partial)
    model = Blip2ForConditionalGeneration.from_pretrained(partial, allow_missing_weights=True)
    assert any(k.startswith("vision_model.") for k in model.load_report.missing)


def test_an_llm_named_by_a_relative_path_is_stored_absolute_and_a_moved_one_is_named(runs, tmp_path):
    config = json.loads((runs["stage2"] / "config.json").read_text())
    assert config["text_name_or_path"] == str((runs["stage2"].parent / "opt").resolve())
    moved = tmp_path / "moved"
    shutil.copytree(runs["stage2"], moved)
    config["text_name_or_path"] = str(tmp_path / "gone-opt")
    (moved / "config.json").write_text(json.dumps(config))
    with pytest.raises(FileNotFoundError, match=r"the LLM at .*gone-opt is gone .*text_name_or_path="):
        Blip2ForConditionalGeneration.from_pretrained(moved)


def run_tool(module, args, cwd):
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env=tiny.environment(), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


def an_image(directory):
    from PIL import Image

    path = directory / "picture.jpg"
    Image.fromarray(np.random.RandomState(9).randint(0, 255, (50, 70, 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize("kind", ["stage2", "checkpoint", "caption", "vqa", "default", "merged"])
def test_blip2_predict_runs_every_stage2_directory(runs, kind, tmp_path):
    if kind not in runs:
        pytest.skip("this installation carries no default model")
    image = an_image(tmp_path)
    ask = ["--question", "what is it?"] if kind == "vqa" else []
    proc = run_tool(
        "blip2_core.cli.predict",
        ["--model", str(runs[kind]), "--image", str(image), "--num-beams", "1", "--max-new-tokens", "3", *ask],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = proc.stdout.strip().splitlines()[-1]
    assert line.startswith(f"{image}\t"), proc.stdout
    # the same text as the model loaded here produces: the CLI ran the trained weights
    from blip2_core.inference.predictor import GenerationSettings, Predictor

    predictor = Predictor.load(str(runs[kind]))
    pixels = [predictor.pixels(__import__("PIL.Image").Image.open(image).convert("RGB"))]
    settings = GenerationSettings(num_beams=1, max_new_tokens=3)
    expected = predictor.answer(pixels, ["what is it?"], settings) if ask else predictor.caption(pixels, "", settings)
    assert line.split("\t", 1)[1] == expected[0]


@pytest.fixture(scope="module")
def karpathy_test(tmp_path_factory):
    """Three images and their captions in the Karpathy test split's format (what blip2-eval reads)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("eval-data")
    (root / "images").mkdir()
    rows = []
    for i in range(3):
        image = np.random.RandomState(20 + i).randint(0, 255, (40, 60, 3), dtype=np.uint8)
        Image.fromarray(image).save(root / "images" / f"img{i}.jpg")
        rows.append({"image": f"img{i}.jpg", "caption": [f"a {tiny.WORDS[i + 1]} on the sofa"], "image_id": f"c{i}"})
    (root / "coco_karpathy_test.json").write_text(json.dumps(rows))
    return root


def eval_args(task, model, data, output):
    files = ["--data_files", str(data / "images"), str(data / "coco_karpathy_test.json")]
    if task == "caption":
        return ["caption", "--model", str(model), "--dataset", "custom_caption", *files, "--output_dir", str(output),
                "--no_score", "--num_beams", "1", "--max_new_tokens", "3"]  # fmt: skip
    return ["retrieval", "--model", str(model), "--dataset", "coco_retrieval", *files, "--output_dir", str(output),
            "--k_test", "2"]  # fmt: skip


@pytest.mark.parametrize("kind", ["stage2", "checkpoint", "default", "merged", "stage1", "stage1-checkpoint"])
def test_blip2_eval_runs_every_directory(runs, kind, karpathy_test, tmp_path, elsewhere):
    from blip2_eval.cli import main

    if kind not in runs:
        pytest.skip("this installation carries no default model")
    task = "retrieval" if kind in STAGE1_KINDS else "caption"
    assert main(eval_args(task, runs[kind], karpathy_test, tmp_path / "eval")) == 0
    assert any((tmp_path / "eval").glob("*.json"))


def test_blip2_eval_refuses_a_model_with_missing_weights(runs, karpathy_test, tmp_path, capsys, elsewhere):
    from blip2_eval.cli import main

    partial = tmp_path / "partial"
    shutil.copytree(runs["checkpoint"], partial)
    (partial / "blip2_checkpoint.json").unlink()
    assert main(eval_args("caption", partial, karpathy_test, tmp_path / "eval")) != 0
    assert "lacks" in capsys.readouterr().err
    assert not (tmp_path / "eval" / "results.json").exists()


@pytest.mark.parametrize("kind", ["stage2", "checkpoint", "vqa", "default", "merged"])
def test_blip2_serve_answers_with_every_stage2_directory(runs, kind, tmp_path, elsewhere):
    from fastapi.testclient import TestClient

    from blip2_core.inference.predictor import Predictor
    from blip2_core.serve.app import create_app

    if kind not in runs:
        pytest.skip("this installation carries no default model")
    predictor = Predictor.load(str(runs[kind]))
    assert_holds_saved_tensors(predictor.model, runs[kind])
    image = an_image(tmp_path).read_bytes()
    endpoint, fields = ("/v1/vqa", {"question": "what is it?"}) if kind == "vqa" else ("/v1/caption", {})
    with TestClient(create_app(predictor)) as client:
        reply = client.post(
            endpoint, files={"image": ("p.jpg", image, "image/jpeg")}, data={**fields, "num_beams": "1"}
        )
    assert reply.status_code == 200, reply.text
    assert str(tmp_path) not in reply.text


@pytest.mark.parametrize("kind", ["checkpoint", "default", "merged", "caption"])
def test_the_next_stage_starts_from_every_directory(runs, kind, assets, tmp_path):
    if kind not in runs:
        pytest.skip("this installation carries no default model")
    size = ["--image_size", "64"] if kind == "default" else ["--image_size", str(tiny.IMAGE_SIZE)]
    frozen_lr = ["--learning_rate", "0", "--warmup_start_lr", "0", "--eta_min", "0", "--max_steps", "1"]
    tiny.train(
        ["finetune-caption", "--model_name_or_path", str(runs[kind]), "--data_files", assets["data"],
         "--output_dir", "next", *tiny.COMMON, "--per_device_train_batch_size", "2", *size, *frozen_lr],
        tmp_path,
    )  # fmt: skip
    started = Blip2ForConditionalGeneration.from_pretrained(runs[kind]).state_dict()
    after = Blip2ForConditionalGeneration.from_pretrained(tmp_path / "next").state_dict()
    for name in ("qformer.query_tokens", "language_projection.weight", "vision_model.pos_embed"):
        np.testing.assert_array_equal(after[name].numpy(), started[name].numpy(), err_msg=name)
    assert any(np.any(v.numpy() != 0) for k, v in after.items() if k.startswith("language_model."))


def test_naming_an_embedded_llm_again_is_refused_with_a_reason(runs, assets, tmp_path):
    if "default" not in runs:
        pytest.skip("this installation carries no default model")
    proc = tiny.train(
        ["stage2", "--model_name_or_path", str(runs["default"]), "--text_model_name_or_path", str(assets["llm"]),
         "--data_files", assets["data"], "--output_dir", "x", *tiny.COMMON, "--max_steps", "1"],
        tmp_path, check=False,
    )  # fmt: skip
    assert proc.returncode != 0 and "carries its own LLM" in proc.stderr


def test_do_eval_is_refused_at_start(assets, tmp_path):
    proc = tiny.train(
        ["stage1", "--do_eval", "true", "--vision_model_name_or_path", str(assets["vision"]), "--qformer_init",
         str(assets["bert"]), "--data_files", assets["data"], "--output_dir", "x", *tiny.COMMON, "--max_steps", "2"],
        tmp_path, check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "--do_eval" in proc.stderr and "blip2-eval" in proc.stderr
    assert not (tmp_path / "x").exists()  # refused before any training


def test_load_model_path_reads_a_paddlemix_checkpoint_through_the_converters(assets, tmp_path):
    fixtures = tiny.HERE.parents[1] / "blip2-core" / "tests" / "fixtures" / "opt"
    start = tmp_path / "start"
    shutil.copytree(fixtures / "hf", start)
    tiny.write_bert_vocab(start)  # the fixture's LLM reads WordPiece ids; its tokenizer files
    bridge = load_file(str(fixtures / "paddlemix" / "vision_and_bridge.safetensors"))
    halved = {k: v * 0.5 if v.dtype.kind == "f" else v for k, v in bridge.items()}
    paddlemix = tmp_path / "paddlemix"
    paddlemix.mkdir()
    paddle.save({k: paddle.to_tensor(v) for k, v in halved.items()}, str(paddlemix / "model_state.pdparams"))
    frozen_lr = ["--learning_rate", "0", "--warmup_start_lr", "0", "--eta_min", "0", "--max_steps", "1"]
    proc = tiny.train(
        ["stage2", "--model_name_or_path", str(start), "--load_model_path", str(paddlemix), "--data_files",
         assets["data"], "--output_dir", "out", *tiny.COMMON, "--per_device_train_batch_size", "2", *frozen_lr],
        tmp_path,
    )  # fmt: skip
    assert "loaded 0 weights" not in proc.stderr
    before = load_file(str(start / "model.safetensors"))
    after = Blip2ForConditionalGeneration.from_pretrained(tmp_path / "out").state_dict()
    # HF's and our names agree for these two; PaddleMIX's file held them halved
    np.testing.assert_allclose(after["qformer.query_tokens"].numpy(), 0.5 * before["query_tokens"], rtol=1e-6)
    np.testing.assert_allclose(
        after["language_projection.weight"].numpy(), 0.5 * before["language_projection.weight"].T, rtol=1e-6
    )


def test_load_model_path_of_another_kind_of_model_is_an_error(assets, tmp_path):
    elsewhere = tmp_path / "not-blip2"
    elsewhere.mkdir()
    paddle.save({"encoder.weight": paddle.ones([2, 2])}, str(elsewhere / "model_state.pdparams"))
    proc = tiny.train(
        ["stage1", "--vision_model_name_or_path", str(assets["vision"]), "--qformer_init", str(assets["bert"]),
         "--load_model_path", str(elsewhere), "--data_files", assets["data"], "--output_dir", "x", *tiny.COMMON,
         "--max_steps", "1"],
        tmp_path, check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "model_state.pdparams" in proc.stderr or "not-blip2" in proc.stderr


@pytest.mark.parametrize("kind", ["stage1", "stage1-checkpoint", "retrieval"])
def test_blip2_serve_gallery_indexes_with_every_stage1_directory(runs, kind, karpathy_test, tmp_path, elsewhere):
    from blip2_core.serve.gallery import Gallery

    gallery = Gallery.load(str(runs[kind]), karpathy_test / "images", cache_dir=tmp_path / "cache")
    assert len(gallery.images) == 3 and gallery.encoded == 3
    assert_holds_saved_tensors(gallery.model, runs[kind])
    (best,) = gallery.search(["a dog on the sofa"], top_k=1)
    assert best[0]["image"] in gallery.images
