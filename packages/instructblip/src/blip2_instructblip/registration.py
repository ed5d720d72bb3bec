"""What blip2-core's tools learn about InstructBLIP (entry point ``blip2_core.model_types``): the model class, the
config names it answers to, its known names and LAVIS's decoding defaults. Paddle-free.

Names and sources: the Salesforce ``instructblip-*`` repos on the HF Hub (every part, HF layout) and LAVIS's
``lavis/configs/models/blip2/blip2_instruct_*.yaml`` (``pretrained`` URL, ``image_size`` 224, ``t5_model`` /
``llm_model``; the ``*_trimmed.pth`` files hold the Q-Former, queries and projection: the frozen ViT comes from
``eva_vit_g.pth``, the LLM from its own repo). Decoding: LAVIS's ``generate`` (repetition penalty 1.5) with the
``lavis/projects/instructblip`` eval yamls (captions 10 to 80 tokens, length penalty 1; answers 1 to 10, -1).
"""

from __future__ import annotations

from blip2_core.loading.model_names import ModelEntry
from blip2_core.loading.model_types import ModelType
from blip2_core.model.generation_settings import TaskDefaults

CONFIG_MODEL_TYPE = "instructblip"  # config.json's model_type: HF's, and ours for this model

LAVIS_INSTRUCT = "https://storage.googleapis.com/sfr-vision-language-research/LAVIS/models/InstructBLIP"
_KIND = dict(kind="instruction-tuned", image_size=224)
# LAVIS's blip2_instruct_vicuna*.yaml names a local "./llm/vicuna-*b" (Vicuna v1.1, which the paper used)
_LLMS = {
    "flan-t5-xl": ("google/flan-t5-xl", "flant5xl", "blip2_t5_instruct", "instruct_blip_flanxl_trimmed.pth"),
    "flan-t5-xxl": ("google/flan-t5-xxl", "flant5xxl", "blip2_t5_instruct", "instruct_blip_flanxxl_trimmed.pth"),
    "vicuna-7b": ("lmsys/vicuna-7b-v1.1", "vicuna7b", "blip2_vicuna_instruct", "instruct_blip_vicuna7b_trimmed.pth"),
    "vicuna-13b": (
        "lmsys/vicuna-13b-v1.1",
        "vicuna13b",
        "blip2_vicuna_instruct",
        "instruct_blip_vicuna13b_trimmed.pth",
    ),
}


# LAVIS's Blip2VicunaInstruct sets bos, eos and unk to "</s>" on Vicuna's tokenizer (so every prompt starts with
# "</s>"), as HF's converted instructblip-vicuna repos also do in their tokenizer files. It also adds a [PAD] token
# (id 32000, a freshly resized embedding row); padding here uses "</s>" instead: padded positions are masked.
_LAVIS_VICUNA_TOKENS = (("bos_token", "</s>"), ("unk_token", "</s>"), ("pad_token", "</s>"))


def _entries() -> tuple[ModelEntry, ...]:
    entries = []
    for llm, (llm_repo, lavis_type, lavis_arch, lavis_file) in _LLMS.items():
        about = f"InstructBLIP with {llm} (instruction-following captions and VQA)"
        url = f"{LAVIS_INSTRUCT}/{lavis_file}"
        entries.append(
            ModelEntry(
                name=f"Salesforce/instructblip-{llm}",
                source=f"Salesforce/instructblip-{llm}",
                layout="hf",
                description=f"{about}; HF layout",
                llm=llm,
                llm_repo=llm_repo,
                also_at=((url, "lavis"),),
                **_KIND,
            )
        )
        entries.append(
            ModelEntry(
                name=f"{lavis_arch}/{lavis_type}",
                source=url,
                layout="lavis",
                description=f"LAVIS name; {about}; the ViT from eva_vit_g, the LLM from {llm_repo}",
                llm=llm,
                llm_repo=llm_repo,
                requires=("eva_vit_g",),
                also_at=((f"Salesforce/instructblip-{llm}", "hf"),),
                tokenizer_special_tokens=_LAVIS_VICUNA_TOKENS if lavis_arch == "blip2_vicuna_instruct" else (),
                **_KIND,
            )
        )
    return tuple(entries)


_SOURCE = "LAVIS lavis/projects/instructblip {} eval yamls; Blip2{}Instruct.generate (repetition_penalty 1.5)"
_DEFAULTS = {
    (task, llm): TaskDefaults(*lengths, _SOURCE.format(name, family), repetition_penalty=1.5)
    for task, lengths, name in (("caption", (80, 10, 1.0), "caption_coco"), ("vqa", (10, 1, -1.0), "qa_okvqa"))
    for llm, family in (("t5", "T5"), ("llama", "Vicuna"))
}

MODEL_TYPE = ModelType(
    name=CONFIG_MODEL_TYPE,
    model_class="blip2_instructblip.model:InstructBlipForConditionalGeneration",
    config_names=(CONFIG_MODEL_TYPE,),
    model_entries=_entries(),
    task_defaults=_DEFAULTS,
)
