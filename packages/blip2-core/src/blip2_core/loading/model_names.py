"""The BLIP-2 model names users already know (PaddleMIX, LAVIS, HF Hub), and where their weights are published.

One table, so that ``blip2-predict --list-models``, the model loader and the docs agree. Each name maps to a
:class:`ModelEntry`: what the weights are (stage-1 Q-Former, stage-2 pretrained, stage-2 COCO captioning), which
LLM and image size they go with, and their source: a Hub repo (HF layout) or a release URL (LAVIS layout).

Sources were checked against LAVIS's ``lavis/configs/models/blip2/*.yaml`` (``pretrained`` / ``finetuned`` URLs,
``image_size``, ``opt_model`` / ``t5_model``, ``freeze_vit``), its model registry (``blip2``,
``blip2_feature_extractor``, ``blip2_image_text_matching``, ``blip2_opt``, ``blip2_t5``), the Salesforce repos on
the HF Hub, and PaddleMIX's BLIP-2 README and code (its names and its ``bj.bcebos.com`` weights).

LAVIS saves only parameters that require gradients, and its pretraining configs freeze the ViT
(``freeze_vit: True``), so its ``pretrain*`` checkpoints are expected to hold no ViT weights: those come from
``eva_vit_g.pth`` (listed in ``requires``), and a stage-2 LLM from its own Hub repo (``llm_repo``). The COCO
fine-tuned checkpoints trained the ViT and hold it. HF repos hold every part.

The table is data: each model's shared fields once, as keywords, then one line per name it is known by.
Fetching the weights is :mod:`blip2_core.loading.fetching`'s job.
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass, field

LAVIS_BLIP2 = "https://storage.googleapis.com/sfr-vision-language-research/LAVIS/models/BLIP2"
PADDLEMIX = "https://bj.bcebos.com/v1/paddlenlp/models/community/paddlemix"
EVA_VIT_G_URL = f"{LAVIS_BLIP2}/eva_vit_g.pth"

KINDS = ("stage1", "stage2-pretrained", "stage2-caption", "vision-encoder", "instruction-tuned")
LAYOUTS = ("hf", "lavis", "paddlemix")


@dataclass(frozen=True)
class ModelEntry:
    """A known model name and where its weights are published."""

    name: str
    kind: str  # one of KINDS
    image_size: int
    source: str  # a Hub repo id, or an https URL
    layout: str  # key layout of the weights at ``source``: one of LAYOUTS
    description: str
    llm: str | None = None  # "opt-2.7b", "flan-t5-xl", ...; None for stage 1 and the vision encoder
    vision: str = "eva-vit-g"
    llm_repo: str | None = None  # the LLM's own Hub repo, for sources that do not hold the LLM
    requires: tuple[str, ...] = ()  # other entries whose weights this source lacks (e.g. the frozen ViT)
    also_at: tuple[tuple[str, str], ...] = ()  # other (source, layout) publications of the same model
    aliases: tuple[str, ...] = field(default=(), compare=False)
    # Special tokens the model was trained with in place of its LLM repo's tokenizer's own, for sources whose
    # tokenizer comes from llm_repo (LAVIS's Vicuna models: bos and unk "</s>", as LAVIS sets them)
    tokenizer_special_tokens: tuple[tuple[str, str], ...] = ()

    @property
    def is_url(self) -> bool:
        return self.source.startswith(("https://", "http://"))


# ---------------------------------------------------------------------------------------------------- the table

# LAVIS's stage-1 checkpoint, which PaddleMIX also starts from; the frozen ViT is not in it.
_STAGE1_URL = f"{LAVIS_BLIP2}/blip2_pretrained.pth"
_STAGE1_ON_HUB = ("Salesforce/blip2-itm-vit-g", "hf")
_STAGE1 = dict(kind="stage1", image_size=224, source=_STAGE1_URL, layout="lavis", requires=("eva_vit_g",))
_STAGE1_COCO_URL = f"{LAVIS_BLIP2}/blip2_finetune_coco.pth"
_STAGE1_COCO = dict(
    kind="stage1",
    image_size=364,
    source=_STAGE1_COCO_URL,
    layout="lavis",
    also_at=(("Salesforce/blip2-itm-vit-g-coco", "hf"),),
)

# Stage 2: the Hub repo holds ViT, Q-Former and LLM, so every name of a model points there; the LAVIS file (and
# PaddleMIX's, where published) is listed as an alternative that needs the LLM from llm_repo (and for pretrain
# the ViT from eva_vit_g.pth).
_OPT_2_7B = dict(
    kind="stage2-pretrained",
    llm="opt-2.7b",
    llm_repo="facebook/opt-2.7b",
    image_size=224,
    source="Salesforce/blip2-opt-2.7b",
    layout="hf",
    also_at=(
        (f"{LAVIS_BLIP2}/blip2_pretrained_opt2.7b.pth", "lavis"),
        (f"{PADDLEMIX}/blip2-pretrained-opt2.7b/model_state.pdparams", "paddlemix"),
    ),
)
_OPT_2_7B_ABOUT = "BLIP-2 pretrained with OPT-2.7b (zero-shot captioning / VQA, start of fine-tuning)"
_OPT_6_7B = dict(
    kind="stage2-pretrained",
    llm="opt-6.7b",
    llm_repo="facebook/opt-6.7b",
    image_size=224,
    source="Salesforce/blip2-opt-6.7b",
    layout="hf",
    also_at=((f"{LAVIS_BLIP2}/blip2_pretrained_opt6.7b.pth", "lavis"),),
)
_OPT_6_7B_ABOUT = "BLIP-2 pretrained with OPT-6.7b"
_FLANT5_XL = dict(
    kind="stage2-pretrained",
    llm="flan-t5-xl",
    llm_repo="google/flan-t5-xl",
    image_size=224,
    source="Salesforce/blip2-flan-t5-xl",
    layout="hf",
    also_at=((f"{LAVIS_BLIP2}/blip2_pretrained_flant5xl.pth", "lavis"),),
)
_FLANT5_XL_ABOUT = "BLIP-2 pretrained with FlanT5-XL (instructed zero-shot VQA)"
_FLANT5_XXL = dict(
    kind="stage2-pretrained",
    llm="flan-t5-xxl",
    llm_repo="google/flan-t5-xxl",
    image_size=224,
    source="Salesforce/blip2-flan-t5-xxl",
    layout="hf",
    also_at=((f"{LAVIS_BLIP2}/blip2_pretrained_flant5xxl.pth", "lavis"),),
)
_FLANT5_XXL_ABOUT = "BLIP-2 pretrained with FlanT5-XXL"
_OPT_2_7B_COCO = dict(
    kind="stage2-caption",
    llm="opt-2.7b",
    llm_repo="facebook/opt-2.7b",
    image_size=364,
    source="Salesforce/blip2-opt-2.7b-coco",
    layout="hf",
    also_at=((f"{LAVIS_BLIP2}/blip2_caption_opt2.7b.pth", "lavis"),),
)
_OPT_2_7B_COCO_ABOUT = "BLIP-2 OPT-2.7b fine-tuned for COCO captioning (prompt 'a photo of')"
_OPT_6_7B_COCO = dict(
    kind="stage2-caption",
    llm="opt-6.7b",
    llm_repo="facebook/opt-6.7b",
    image_size=364,
    source="Salesforce/blip2-opt-6.7b-coco",
    layout="hf",
    also_at=((f"{LAVIS_BLIP2}/blip2_caption_opt6.7b.pth", "lavis"),),
)
_OPT_6_7B_COCO_ABOUT = "BLIP-2 OPT-6.7b fine-tuned for COCO captioning (prompt 'a photo of')"
_FLANT5_XL_COCO = dict(
    kind="stage2-caption",
    llm="flan-t5-xl",
    llm_repo="google/flan-t5-xl",
    image_size=364,
    source="Salesforce/blip2-flan-t5-xl-coco",
    layout="hf",
    also_at=((f"{LAVIS_BLIP2}/blip2_caption_flant5xl.pth", "lavis"),),
)
_FLANT5_XL_COCO_ABOUT = "BLIP-2 FlanT5-XL fine-tuned for COCO captioning (prompt 'a photo of')"

# In --list-models order: vision encoder, stage 1, then stage 2 by LLM (each as Hub, LAVIS and PaddleMIX name).
_TABLE = (
    ModelEntry(
        name="eva_vit_g",
        kind="vision-encoder",
        image_size=224,
        source=EVA_VIT_G_URL,
        layout="lavis",
        description="EVA-CLIP ViT-g/14 (LAVIS's BLIP-2 vision encoder; 40 blocks saved, BLIP-2 uses 39)",
        also_at=((f"{PADDLEMIX}/blip2-stage2/eva_vit_g/model_state.pdparams", "paddlemix"),),
        # PaddleMIX's configs name the vision encoder by this sub-path of its stage-2 model.
        aliases=("paddlemix/blip2-stage2/eva_vit_g",),
    ),
    ModelEntry(
        name="blip2/pretrain",
        description="LAVIS stage-1 Q-Former (ITC/ITM/captioning heads), ViT-g frozen, not included",
        also_at=(_STAGE1_ON_HUB,),
        **_STAGE1,
    ),
    ModelEntry(
        name="blip2_feature_extractor/pretrain",
        description="LAVIS feature extractor: the stage-1 Q-Former of blip2/pretrain",
        also_at=(_STAGE1_ON_HUB,),
        **_STAGE1,
    ),
    ModelEntry(
        name="blip2_image_text_matching/pretrain",
        description="LAVIS image-text matching: the stage-1 Q-Former",
        also_at=(_STAGE1_ON_HUB,),
        **_STAGE1,
    ),
    ModelEntry(
        name="paddlemix/blip2-stage1",
        description="PaddleMIX's stage-1 starting point: the LAVIS stage-1 checkpoint (blip2/pretrain)",
        also_at=(_STAGE1_ON_HUB, (f"{PADDLEMIX}/blip2-stage1/model_state.pdparams", "paddlemix")),
        **_STAGE1,
    ),
    ModelEntry(
        name="paddlemix/blip2-stage2",
        description="PaddleMIX's stage-2 starting point: the stage-1 Q-Former (LAVIS blip2/pretrain) plus an LLM "
        "chosen for training (PaddleMIX's default facebook/opt-2.7b); no projection or LLM weights",
        also_at=(_STAGE1_ON_HUB, (f"{PADDLEMIX}/blip2-stage2/model_state.pdparams", "paddlemix")),
        **_STAGE1,
    ),
    ModelEntry(
        name="blip2/pretrain_vitL",
        kind="stage1",
        image_size=224,
        source=f"{LAVIS_BLIP2}/blip2_pretrained_vitL.pth",
        layout="lavis",
        description="LAVIS stage-1 Q-Former trained on CLIP ViT-L/14 (not EVA ViT-g: needs a ViT-L vision encoder)",
        vision="clip-vit-l",
    ),
    ModelEntry(
        name="blip2/coco",
        description="LAVIS stage-1 Q-Former and ViT-g fine-tuned on COCO retrieval",
        **_STAGE1_COCO,
    ),
    ModelEntry(
        name="blip2_feature_extractor/coco",
        description="LAVIS feature extractor fine-tuned on COCO retrieval",
        **_STAGE1_COCO,
    ),
    ModelEntry(
        name="blip2_image_text_matching/coco",
        description="LAVIS image-text matching fine-tuned on COCO retrieval",
        **_STAGE1_COCO,
    ),
    ModelEntry(
        name="Salesforce/blip2-itm-vit-g",
        kind="stage1",
        image_size=224,
        source="Salesforce/blip2-itm-vit-g",
        layout="hf",
        description="stage-1 ViT-g + Q-Former with ITM/ITC heads, HF layout (no Q-Former LM head)",
        also_at=((_STAGE1_URL, "lavis"),),
    ),
    ModelEntry(
        name="Salesforce/blip2-itm-vit-g-coco",
        kind="stage1",
        image_size=364,
        source="Salesforce/blip2-itm-vit-g-coco",
        layout="hf",
        description="stage-1 ViT-g + Q-Former fine-tuned on COCO retrieval, HF layout (no Q-Former LM head)",
        also_at=((_STAGE1_COCO_URL, "lavis"),),
    ),
    ModelEntry(name="Salesforce/blip2-opt-2.7b", description=f"{_OPT_2_7B_ABOUT}; HF layout", **_OPT_2_7B),
    ModelEntry(name="blip2_opt/pretrain_opt2.7b", description=f"LAVIS name; {_OPT_2_7B_ABOUT}", **_OPT_2_7B),
    ModelEntry(
        name="paddlemix/blip2-pretrained-opt2.7b", description=f"PaddleMIX name; {_OPT_2_7B_ABOUT}", **_OPT_2_7B
    ),
    ModelEntry(name="Salesforce/blip2-opt-6.7b", description=f"{_OPT_6_7B_ABOUT}; HF layout", **_OPT_6_7B),
    ModelEntry(name="blip2_opt/pretrain_opt6.7b", description=f"LAVIS name; {_OPT_6_7B_ABOUT}", **_OPT_6_7B),
    ModelEntry(
        name="paddlemix/blip2-pretrained-opt6.7b", description=f"PaddleMIX name; {_OPT_6_7B_ABOUT}", **_OPT_6_7B
    ),
    ModelEntry(name="Salesforce/blip2-flan-t5-xl", description=f"{_FLANT5_XL_ABOUT}; HF layout", **_FLANT5_XL),
    ModelEntry(name="blip2_t5/pretrain_flant5xl", description=f"LAVIS name; {_FLANT5_XL_ABOUT}", **_FLANT5_XL),
    ModelEntry(
        name="paddlemix/blip2_pretrained_flant5xl", description=f"PaddleMIX name; {_FLANT5_XL_ABOUT}", **_FLANT5_XL
    ),
    ModelEntry(name="Salesforce/blip2-flan-t5-xxl", description=f"{_FLANT5_XXL_ABOUT}; HF layout", **_FLANT5_XXL),
    ModelEntry(name="blip2_t5/pretrain_flant5xxl", description=f"LAVIS name; {_FLANT5_XXL_ABOUT}", **_FLANT5_XXL),
    ModelEntry(
        name="paddlemix/blip2_pretrained_flant5xxl", description=f"PaddleMIX name; {_FLANT5_XXL_ABOUT}", **_FLANT5_XXL
    ),
    ModelEntry(
        name="Salesforce/blip2-opt-2.7b-coco", description=f"{_OPT_2_7B_COCO_ABOUT}; HF layout", **_OPT_2_7B_COCO
    ),
    ModelEntry(
        name="blip2_opt/caption_coco_opt2.7b", description=f"LAVIS name; {_OPT_2_7B_COCO_ABOUT}", **_OPT_2_7B_COCO
    ),
    ModelEntry(
        name="paddlemix/blip2-caption-opt2.7b", description=f"PaddleMIX name; {_OPT_2_7B_COCO_ABOUT}", **_OPT_2_7B_COCO
    ),
    ModelEntry(
        name="Salesforce/blip2-opt-6.7b-coco", description=f"{_OPT_6_7B_COCO_ABOUT}; HF layout", **_OPT_6_7B_COCO
    ),
    ModelEntry(
        name="blip2_opt/caption_coco_opt6.7b", description=f"LAVIS name; {_OPT_6_7B_COCO_ABOUT}", **_OPT_6_7B_COCO
    ),
    ModelEntry(
        name="paddlemix/blip2-caption-opt6.7b", description=f"PaddleMIX name; {_OPT_6_7B_COCO_ABOUT}", **_OPT_6_7B_COCO
    ),
    ModelEntry(
        name="Salesforce/blip2-flan-t5-xl-coco", description=f"{_FLANT5_XL_COCO_ABOUT}; HF layout", **_FLANT5_XL_COCO
    ),
    ModelEntry(
        name="blip2_t5/caption_coco_flant5xl", description=f"LAVIS name; {_FLANT5_XL_COCO_ABOUT}", **_FLANT5_XL_COCO
    ),
    ModelEntry(
        name="paddlemix/blip2_caption_flant5xl",
        description=f"PaddleMIX name; {_FLANT5_XL_COCO_ABOUT}",
        # PaddleMIX's README spells it "blip2_caption_flant5xl.7b" in places.
        aliases=("paddlemix/blip2_caption_flant5xl.7b",),
        **_FLANT5_XL_COCO,
    ),
)


@functools.lru_cache(maxsize=1)
def _index() -> tuple[dict[str, ModelEntry], dict[str, ModelEntry], set[str]]:
    """By name, by case-folded name, and the name spaces of names that are not Hub repos themselves (PaddleMIX's
    and LAVIS's names); over BLIP-2's table and the names the installed model types add (``model_types``)."""
    from .model_types import extra_model_entries

    by_name = {n: e for e in (*_TABLE, *extra_model_entries()) for n in (e.name, *e.aliases)}
    folded = {n.lower(): e for n, e in by_name.items()}
    reserved = {n.partition("/")[0].lower() for n, e in by_name.items() if "/" in n and n != e.source}
    return by_name, folded, reserved


def all_entries() -> list[ModelEntry]:
    """Every known model, in table order (vision encoder, stage 1, then stage 2 by LLM), then the names the
    installed model types add (InstructBLIP's, where blip2-instructblip is installed)."""
    from .model_types import extra_model_entries

    return [*_TABLE, *extra_model_entries()]


def lookup(name: str) -> ModelEntry | None:
    """The entry for a known name or alias (case-insensitive), or None for anything else (a path, a repo id)."""
    name = name.strip().rstrip("/")
    by_name, folded, _ = _index()
    return by_name.get(name) or folded.get(name.lower())


def similar_names(name: str, count: int = 3) -> list[str]:
    """The known names closest to ``name`` (a typo, a missing suffix), best first."""
    folded = {n.lower(): n for n in _index()[0]}
    return [folded[n] for n in difflib.get_close_matches(name.strip().lower(), folded, n=count, cutoff=0.6)]


def is_misspelt_name(name: str) -> bool:
    """True for a name under ``paddlemix/``, ``blip2_opt/`` or another name space of PaddleMIX's and LAVIS's
    names (not Hub accounts) that is not in the table, nor a folder of one: a typo, not a Hub repo to try."""
    parts = name.strip().strip("/").split("/")
    return parts[0].lower() in _index()[2] and lookup("/".join(parts[:2])) is None


def format_table(entries: list[ModelEntry] | None = None, descriptions: bool = False) -> str:
    """Aligned text columns: name, kind, LLM, image size, layout, source (and descriptions if asked)."""
    entries = all_entries() if entries is None else entries
    header = ("NAME", "KIND", "LLM", "IMAGE", "LAYOUT", "SOURCE")
    rows = [(e.name, e.kind, e.llm or "-", str(e.image_size), e.layout, e.source) for e in entries]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row, entry in zip([header, *rows], [None, *entries]):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])
        if descriptions and entry is not None:
            lines.append(" " * 4 + entry.description)
    return "\n".join(line.rstrip() for line in lines)
