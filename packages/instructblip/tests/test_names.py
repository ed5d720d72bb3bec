"""InstructBLIP's known names reach blip2-core's table (blip2-predict --list-models, the loader) through the
blip2_core.model_types entry point, and the tools pick this package's model class by name or by config.json."""

import json
import shutil

import pytest

from blip2_core.cli.predict import main as predict
from blip2_core.loading import model_names
from blip2_core.loading.model_types import for_checkpoint, installed

HF_NAMES = [f"Salesforce/instructblip-{llm}" for llm in ("flan-t5-xl", "flan-t5-xxl", "vicuna-7b", "vicuna-13b")]
LAVIS_NAMES = ["blip2_t5_instruct/flant5xl", "blip2_t5_instruct/flant5xxl", "blip2_vicuna_instruct/vicuna7b",
               "blip2_vicuna_instruct/vicuna13b"]  # fmt: skip


def test_the_model_type_is_registered():
    assert [t.name for t in installed()][:1] == ["blip-2"] and "instructblip" in [t.name for t in installed()]


@pytest.mark.parametrize("name", HF_NAMES + LAVIS_NAMES)
def test_every_name_is_known_and_builds_instructblip(name):
    entry = model_names.lookup(name)
    assert entry is not None and entry.kind == "instruction-tuned" and entry.image_size == 224
    assert for_checkpoint(name).name == "instructblip"
    if entry.layout == "lavis":  # the trimmed file: the frozen ViT and the LLM come from elsewhere
        assert entry.requires == ("eva_vit_g",) and entry.llm_repo and entry.source.endswith("_trimmed.pth")
    else:
        assert entry.source == name


def test_list_models_shows_them(capsys):
    assert predict(["--list-models"]) == 0
    listed = capsys.readouterr().out
    for name in HF_NAMES + LAVIS_NAMES:
        assert name in listed


def test_a_typo_is_answered_with_the_right_name():
    assert model_names.similar_names("Salesforce/instructblip-flan-t5xl")[0] == "Salesforce/instructblip-flan-t5-xl"
    assert model_names.is_misspelt_name("blip2_t5_instruct/flant5")


def test_a_local_directory_is_dispatched_on_its_model_type(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "instructblip"}))
    assert for_checkpoint(tmp_path).name == "instructblip"
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "blip-2"}))
    assert for_checkpoint(tmp_path).name == "blip-2"


@pytest.fixture(scope="module")
def vicuna_like_tokenizer(tmp_path_factory):
    """A tiny SentencePiece LLaMA tokenizer (unk 0, <s> 1, </s> 2, as Vicuna's) standing in for lmsys/vicuna-7b-v1.1."""
    import sentencepiece

    folder = tmp_path_factory.mktemp("vicuna-tokenizer")
    text = folder / "text.txt"
    text.write_text("\n".join(f"question {i}: what color is the {w} square? short answer: red" for i, w in
                              enumerate(["big", "small", "left", "right", "top"] * 20)))  # fmt: skip
    sentencepiece.SentencePieceTrainer.train(
        input=str(text), model_prefix=str(folder / "tokenizer"), vocab_size=60, model_type="bpe",
        bos_id=1, eos_id=2, unk_id=0, pad_id=-1,
    )  # fmt: skip
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer"}))
    return folder


def test_lavis_vicuna_names_start_prompts_with_eos_as_lavis_does(vicuna_like_tokenizer):
    from types import SimpleNamespace

    from blip2_core.loading.text_tokenizer import load_tokenizer, tokenizer_for_model

    model = SimpleNamespace(config=SimpleNamespace(text_name_or_path=str(vicuna_like_tokenizer)))
    plain = load_tokenizer(vicuna_like_tokenizer)
    assert plain("what color")["input_ids"][0] == 1  # Vicuna's own <s>
    lavis = tokenizer_for_model(model, "blip2_vicuna_instruct/vicuna7b")
    ids = lavis("what color")["input_ids"]
    assert ids[0] == 2 and ids[1:] == plain("what color")["input_ids"][1:]  # LAVIS's bos "</s>", the rest the same
    assert lavis.pad_token_id == 2 and lavis.unk_token == "</s>"
    # HF's instructblip-vicuna repos say so in their tokenizer files: read as HF reads them, and saved so
    hf_like = vicuna_like_tokenizer.parent / "hf-like"
    shutil.copytree(vicuna_like_tokenizer, hf_like, dirs_exist_ok=True)
    (hf_like / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "LlamaTokenizer", "bos_token": "</s>", "unk_token": "</s>"})
    )
    assert load_tokenizer(hf_like)("what color")["input_ids"] == ids
    lavis.save_pretrained(str(hf_like.parent / "saved"))
    saved = json.loads((hf_like.parent / "saved" / "tokenizer_config.json").read_text())
    assert saved["tokenizer_class"] == "LlamaTokenizer"
    assert load_tokenizer(hf_like.parent / "saved")("what color")["input_ids"] == ids
    # an explicitly passed tokenizer is used as it is
    assert (
        tokenizer_for_model(model, "blip2_vicuna_instruct/vicuna7b", str(vicuna_like_tokenizer))("a")["input_ids"][0]
        == 1
    )
