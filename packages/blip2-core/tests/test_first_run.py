"""What a new user meets first: every error says what is wrong and what to do, in the CLI's and the API's terms."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import load_file
from tiny_checkpoints import assert_generates_the_reference

from blip2_core import Blip2Config, Blip2ForConditionalGeneration, Blip2Qformer
from blip2_core.checkpoint_io import IncompleteCheckpointError, read_state_dict, write_safetensors
from blip2_core.cli.merge import main as merge_main
from blip2_core.cli.predict import main as predict_main
from blip2_core.loading.hub import ModelNotAvailableError
from blip2_core.loading.pretrained import NoLanguageModelError, UnknownModelError

# -- model names ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("paddlemix/blip2-caption-opt2.7", "paddlemix/blip2-caption-opt2.7b"),  # a PaddleMIX name, one letter short
        ("blip2_opt/caption_coco_opt27b", "blip2_opt/caption_coco_opt2.7b"),  # a LAVIS name
        ("Salesforce/blip2-opt-2.7", "Salesforce/blip2-opt-2.7b"),  # could be a Hub repo: tried, then suggested
    ],
)
def test_a_misspelt_name_gets_the_nearest_known_names(name, suggestion, capsys):
    with pytest.raises(UnknownModelError) as info:
        Blip2ForConditionalGeneration.from_pretrained(name)
    message = str(info.value)
    assert f"did you mean {suggestion}" in message and "--list-models" in message
    assert "huggingface-cli download" not in message  # never told to download the typo
    assert info.value.__cause__ is None and (info.value.__context__ is None or info.value.__suppress_context__)
    assert isinstance(info.value, ModelNotAvailableError)  # callers catching the broader error still do

    assert predict_main(["--model", name, "--image", "cat.jpg"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"blip2-predict: no model {name!r}") and f"did you mean {suggestion}" in err


def test_a_name_like_nothing_known_says_what_a_model_can_be(capsys):
    assert predict_main(["--model", "no-such-model", "--image", "cat.jpg"]) == 1
    err = capsys.readouterr().err
    assert "no model 'no-such-model': not a known name, an existing file or directory, or a Hub repo id" in err
    assert "did you mean" not in err and "--list-models" in err and "huggingface-cli" not in err


# -- files ------------------------------------------------------------------------------------------------------


def test_a_truncated_safetensors_file_is_called_incomplete(fixtures_dir, model_dir, tmp_path, capsys):
    copy = tmp_path / "cut"
    copy.mkdir()
    for item in model_dir.iterdir():
        (copy / item.name).write_bytes(item.read_bytes())
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a download cut off halfway
    with pytest.raises(
        IncompleteCheckpointError, match=r"model\.safetensors is incomplete: .*\(a download cut off\?\)"
    ):
        read_state_dict(weights)
    with pytest.raises(IncompleteCheckpointError, match="Delete it and fetch it again") as info:
        Blip2ForConditionalGeneration.from_pretrained(copy)
    assert info.value.__cause__ is None

    assert predict_main(["--model", str(copy), "--image", "cat.jpg"]) == 1
    assert "model.safetensors is incomplete" in capsys.readouterr().err


def test_a_cut_header_is_incomplete_too(tmp_path):
    write_safetensors({"w": np.ones((4, 4), "float32")}, tmp_path)
    file = tmp_path / "model.safetensors"
    file.write_bytes(file.read_bytes()[:12])
    with pytest.raises(IncompleteCheckpointError, match="is incomplete"):
        read_state_dict(file)


def test_a_bad_config_json_raises_without_a_chain_of_library_frames(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json: not valid JSON") as info:
        Blip2Config.from_file(tmp_path / "config.json")
    assert info.value.__suppress_context__  # the JSON decoder's own frames add nothing to the message


# -- merging without an LLM -------------------------------------------------------------------------------------


def test_merge_without_an_llm_writes_vision_and_bridge_that_load_with_one(fixtures_dir, model_dir, tmp_path, capsys):
    # a stage-2 bridge (no text parts) and a LAVIS file that also holds the LLM: PaddleMIX's merge workflow
    args = ["--vision", str(fixtures_dir / "opt" / "lavis.pth"), "--bridge", str(fixtures_dir / "opt" / "hf")]
    assert merge_main([*args, "--save", str(tmp_path / "merged")]) == 0
    out = capsys.readouterr().out
    assert "vision encoder + Q-Former (stage 2, no LLM)" in out and "--llm" in out

    with pytest.raises(NoLanguageModelError, match=r"names no LLM .*pass text_name_or_path="):
        Blip2ForConditionalGeneration.from_pretrained(tmp_path / "merged")
    llm = fixtures_dir / "opt" / "llm"
    model = Blip2ForConditionalGeneration.from_pretrained(tmp_path / "merged", text_name_or_path=str(llm))
    assert model.load_report.missing == [] and model.load_report.unexpected == []
    assert_generates_the_reference(model, fixtures_dir)

    # the CLI names its own flag, not the Python argument
    image = str(tmp_path / "cat.jpg")
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(image)
    assert predict_main(["--model", str(tmp_path / "merged"), "--image", image]) == 1
    err = capsys.readouterr().err
    assert "names no LLM" in err and "pass --llm NAME_OR_PATH" in err and "text_name_or_path=" not in err
    tokenizer = ["--tokenizer", str(model_dir)]
    assert predict_main(["--model", str(tmp_path / "merged"), "--llm", str(llm), *tokenizer, "--image", image]) == 0


def test_merge_makes_a_stage1_model_from_a_bridge_with_its_text_parts(fixtures_dir, tmp_path):
    # stage-1 weights (word embeddings included) beside a config.json that says "no text input", as a stage-2
    # config copied next to them would: the weights decide, and [DEC] is the last row of the vocabulary
    state = load_file(str(fixtures_dir / "stage1" / "hf" / "model.safetensors"))
    write_safetensors(state, tmp_path / "both")
    config = json.loads((fixtures_dir / "stage1" / "hf" / "config.json").read_text())
    config["qformer_config"]["use_qformer_text_input"] = False
    (tmp_path / "both" / "config.json").write_text(json.dumps(config))
    both = str(tmp_path / "both")
    assert merge_main(["--vision", both, "--bridge", both, "--save", str(tmp_path / "m")]) == 0
    model = Blip2Qformer.from_pretrained(tmp_path / "m")
    (rows,) = {v.shape[0] for k, v in state.items() if k.endswith("word_embeddings.weight")}
    assert model.config.qformer_config.has_text_input and model.config.qformer_config.bos_token_id == rows - 1


def test_an_untrusted_pickle_names_the_cli_flag(fixtures_dir, model_dir, monkeypatch, capsys):
    from blip2_core.loading import pretrained

    lavis = fixtures_dir / "opt" / "lavis.pth"
    resolve = pretrained.hub.resolve
    # as if a hub had served this file for the name
    monkeypatch.setattr(
        pretrained.hub, "resolve", lambda name, **kw: lavis if name == "someone/blip2-lavis" else resolve(name, **kw)
    )
    args = ["--model", "someone/blip2-lavis", "--llm", str(fixtures_dir / "opt" / "llm"), "--image", "cat.jpg"]
    assert predict_main(args) == 1
    err = capsys.readouterr().err
    assert "lavis.pth is a pickle file" in err and "pass --trust-pickle" in err and "trust_pickle=" not in err


# -- tokenizer and images ---------------------------------------------------------------------------------------


def test_a_model_without_tokenizer_files_says_which_files(fixtures_dir, images, capsys):
    model = str(fixtures_dir / "opt" / "hf")  # weights and config, no tokenizer
    assert predict_main(["--model", model, "--image", images[0]]) == 1
    err = capsys.readouterr().err
    assert err.count(model) == 2  # "no tokenizer for <model>:" and the one place looked in, not twice per line
    assert f"- {model} has no tokenizer files" in err
    assert "vocab.json + merges.txt" in err and "spiece.model" in err and "pass --tokenizer DIR" in err


def test_a_directory_given_as_an_image_is_called_a_directory(model_dir, tmp_path, capsys):
    assert predict_main(["--model", str(model_dir), "--image", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path} is a directory, not an image file" in err and "1 of 1 images could not be read" in err


def test_one_bad_image_costs_only_itself(model_dir, images, tmp_path, capsys):
    broken, empty = tmp_path / "broken.jpg", tmp_path / "empty.jpg"
    broken.write_bytes(b"not a jpeg")
    empty.write_bytes(b"")
    args = ["--model", str(model_dir), "--prompt", "a photo of", "--max-new-tokens", "4", "--min-new-tokens", "1"]
    assert predict_main([*args, "--image", images[0]]) == 0
    alone = capsys.readouterr().out

    assert predict_main([*args, "--image", images[0], str(broken), images[1], str(empty), "--json"]) == 1
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert [row["image"] for row in rows] == [images[0], str(broken), images[1], str(empty)]
    assert rows[0]["caption"] == alone.split("\t")[1].strip()  # the good ones are captioned as they are alone
    assert "caption" in rows[2] and "error" not in rows[0] and "error" not in rows[2]
    assert "broken.jpg is not a readable image" in rows[1]["error"] and rows[3]["error"].endswith("is empty (0 bytes)")
    assert "broken.jpg is not a readable image" in captured.err and "2 of 4 images could not be read" in captured.err


# -- installation -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statement", "pip_name"),
    [
        ("import blip2_eva_vit", "blip2-eva-vit"),
        ("import blip2_qformer", "blip2-qformer"),
        # blip2-data needs paddle only for its datasets and loader (import blip2_data alone does not)
        ("from blip2_data import load_dataset", "blip2-data"),
    ],
)
def test_a_missing_paddle_says_what_to_install(statement, pip_name):
    code = f"import sys; sys.modules['paddle'] = None; {statement}"  # as if paddle were not installed
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ModuleNotFoundError:") and f"pip install '{pip_name}[cpu]'" in last
    assert "paddlepaddle-gpu" in last


def test_the_cli_opens_without_paddles_build_tool_noise(model_dir, images):
    cli = Path(sys.executable).with_name("blip2-predict")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    args = [str(cli), "--model", str(model_dir), "--image", images[0], "--max-new-tokens", "2", "--num-beams", "1"]
    result = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(images[0]) and result.stderr == ""
