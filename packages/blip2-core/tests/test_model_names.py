"""The model-name table: every name, its fields, lookup and the --list-models text."""

from __future__ import annotations

import pytest

from blip2_core.loading.model_names import KINDS, LAYOUTS, all_entries, format_table, lookup

LAVIS = "https://storage.googleapis.com/sfr-vision-language-research/LAVIS/models/BLIP2"

PADDLEMIX_NAMES = [
    "paddlemix/blip2-stage1",
    "paddlemix/blip2-stage2",
    "paddlemix/blip2-pretrained-opt2.7b",
    "paddlemix/blip2-pretrained-opt6.7b",
    "paddlemix/blip2_pretrained_flant5xl",
    "paddlemix/blip2_pretrained_flant5xxl",
    "paddlemix/blip2-caption-opt2.7b",
    "paddlemix/blip2-caption-opt6.7b",
    "paddlemix/blip2_caption_flant5xl",
]
LAVIS_NAMES = [
    "blip2/pretrain",
    "blip2/pretrain_vitL",
    "blip2/coco",
    "blip2_opt/pretrain_opt2.7b",
    "blip2_opt/pretrain_opt6.7b",
    "blip2_opt/caption_coco_opt2.7b",
    "blip2_opt/caption_coco_opt6.7b",
    "blip2_t5/pretrain_flant5xl",
    "blip2_t5/pretrain_flant5xxl",
    "blip2_t5/caption_coco_flant5xl",
    "blip2_feature_extractor/pretrain",
    "blip2_image_text_matching/pretrain",
]

# name -> (kind, llm, image size, source, layout): written out by hand from LAVIS's configs and the HF repos.
EXPECTED = {
    "paddlemix/blip2-stage1": ("stage1", None, 224, f"{LAVIS}/blip2_pretrained.pth", "lavis"),
    "paddlemix/blip2-stage2": ("stage1", None, 224, f"{LAVIS}/blip2_pretrained.pth", "lavis"),
    "blip2/pretrain": ("stage1", None, 224, f"{LAVIS}/blip2_pretrained.pth", "lavis"),
    "blip2/pretrain_vitL": ("stage1", None, 224, f"{LAVIS}/blip2_pretrained_vitL.pth", "lavis"),
    "blip2/coco": ("stage1", None, 364, f"{LAVIS}/blip2_finetune_coco.pth", "lavis"),
    "blip2_feature_extractor/pretrain": ("stage1", None, 224, f"{LAVIS}/blip2_pretrained.pth", "lavis"),
    "blip2_image_text_matching/pretrain": ("stage1", None, 224, f"{LAVIS}/blip2_pretrained.pth", "lavis"),
    "paddlemix/blip2-pretrained-opt2.7b": ("stage2-pretrained", "opt-2.7b", 224, "Salesforce/blip2-opt-2.7b", "hf"),
    "blip2_opt/pretrain_opt2.7b": ("stage2-pretrained", "opt-2.7b", 224, "Salesforce/blip2-opt-2.7b", "hf"),
    "paddlemix/blip2-pretrained-opt6.7b": ("stage2-pretrained", "opt-6.7b", 224, "Salesforce/blip2-opt-6.7b", "hf"),
    "blip2_opt/pretrain_opt6.7b": ("stage2-pretrained", "opt-6.7b", 224, "Salesforce/blip2-opt-6.7b", "hf"),
    "paddlemix/blip2_pretrained_flant5xl": (
        "stage2-pretrained",
        "flan-t5-xl",
        224,
        "Salesforce/blip2-flan-t5-xl",
        "hf",
    ),
    "blip2_t5/pretrain_flant5xl": ("stage2-pretrained", "flan-t5-xl", 224, "Salesforce/blip2-flan-t5-xl", "hf"),
    "paddlemix/blip2_pretrained_flant5xxl": (
        "stage2-pretrained",
        "flan-t5-xxl",
        224,
        "Salesforce/blip2-flan-t5-xxl",
        "hf",
    ),
    "blip2_t5/pretrain_flant5xxl": ("stage2-pretrained", "flan-t5-xxl", 224, "Salesforce/blip2-flan-t5-xxl", "hf"),
    "paddlemix/blip2-caption-opt2.7b": ("stage2-caption", "opt-2.7b", 364, "Salesforce/blip2-opt-2.7b-coco", "hf"),
    "blip2_opt/caption_coco_opt2.7b": ("stage2-caption", "opt-2.7b", 364, "Salesforce/blip2-opt-2.7b-coco", "hf"),
    "paddlemix/blip2-caption-opt6.7b": ("stage2-caption", "opt-6.7b", 364, "Salesforce/blip2-opt-6.7b-coco", "hf"),
    "blip2_opt/caption_coco_opt6.7b": ("stage2-caption", "opt-6.7b", 364, "Salesforce/blip2-opt-6.7b-coco", "hf"),
    "paddlemix/blip2_caption_flant5xl": ("stage2-caption", "flan-t5-xl", 364, "Salesforce/blip2-flan-t5-xl-coco", "hf"),
    "blip2_t5/caption_coco_flant5xl": ("stage2-caption", "flan-t5-xl", 364, "Salesforce/blip2-flan-t5-xl-coco", "hf"),
    "Salesforce/blip2-itm-vit-g": ("stage1", None, 224, "Salesforce/blip2-itm-vit-g", "hf"),
    "Salesforce/blip2-itm-vit-g-coco": ("stage1", None, 364, "Salesforce/blip2-itm-vit-g-coco", "hf"),
    "eva_vit_g": ("vision-encoder", None, 224, f"{LAVIS}/eva_vit_g.pth", "lavis"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_entry_fields(name):
    entry = lookup(name)
    assert entry is not None
    assert (entry.kind, entry.llm, entry.image_size, entry.source, entry.layout) == EXPECTED[name]
    assert entry.description


def test_every_known_name_is_listed_once():
    names = [e.name for e in all_entries()]
    assert len(names) == len(set(names))
    for name in PADDLEMIX_NAMES + LAVIS_NAMES:
        assert name in names, name
    for entry in all_entries():
        assert entry.kind in KINDS and entry.layout in LAYOUTS
        assert entry.is_url == entry.source.startswith("https://")
        for source, layout in entry.also_at:
            assert layout in LAYOUTS and source != entry.source


def test_descriptions_explain_paddlemix_starting_points():
    stage2 = lookup("paddlemix/blip2-stage2")
    assert "stage-1 Q-Former" in stage2.description and "LLM" in stage2.description
    assert lookup("paddlemix/blip2-stage1").source == lookup("blip2/pretrain").source


def test_stage2_entries_record_their_llm_and_lavis_alternative():
    entry = lookup("blip2_opt/caption_coco_opt2.7b")
    assert entry.llm_repo == "facebook/opt-2.7b"
    assert (f"{LAVIS}/blip2_caption_opt2.7b.pth", "lavis") in entry.also_at
    assert lookup("blip2_t5/pretrain_flant5xxl").llm_repo == "google/flan-t5-xxl"
    # LAVIS pretrain checkpoints do not hold the frozen ViT: the entry says where it comes from.
    assert lookup("blip2/pretrain").requires == ("eva_vit_g",)
    assert lookup("blip2/coco").requires == ()


def test_lookup_aliases_case_and_unknown():
    assert lookup("paddlemix/blip2-stage2/eva_vit_g").name == "eva_vit_g"
    assert lookup("paddlemix/blip2_caption_flant5xl.7b").name == "paddlemix/blip2_caption_flant5xl"
    assert lookup("SALESFORCE/BLIP2-OPT-2.7B").name == "Salesforce/blip2-opt-2.7b"
    assert lookup("/data/my-blip2") is None
    assert lookup("facebook/opt-2.7b") is None


def test_format_table_is_aligned():
    text = format_table()
    lines = text.splitlines()
    assert lines[0].split() == ["NAME", "KIND", "LLM", "IMAGE", "LAYOUT", "SOURCE"]
    assert len(lines) == len(all_entries()) + 1
    source_column = lines[0].index("SOURCE")
    layout_column = lines[0].index("LAYOUT")
    for line, entry in zip(lines[1:], all_entries()):
        assert line.startswith(entry.name + " ")
        assert line[source_column:] == entry.source
        assert line[layout_column:].split()[0] == entry.layout
    described = format_table(descriptions=True).splitlines()
    assert described[2] == "    " + all_entries()[0].description
