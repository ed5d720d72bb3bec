"""``blip2-merge``: one checkpoint from a vision encoder and a Q-Former (bridge), loadable by ``from_pretrained``.

PaddleMIX's ``merge_weight.py`` read the vision weights twice and so never merged the bridge; here each part
is read from its own source, converted from whatever layout it is in, checked against the model's shapes,
and written as our safetensors + config.json. With ``--llm`` the result is a stage-2 model whose LLM
weights are read from that name at load time. Without, a bridge that has its text parts (word embeddings)
makes a stage-1 model (``Blip2Qformer``); one without them (a stage-2 Q-Former) makes a vision + bridge
checkpoint, as PaddleMIX's ``vision_and_bridge`` files are, to which the LLM is named when loading.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .command_line import start_command_line_tool

if TYPE_CHECKING:  # imported where used: paddle loads only after start_command_line_tool()
    from ..model.config import Blip2Config

WORD_EMBEDDINGS = "qformer.embeddings.word_embeddings.weight"  # present only in a Q-Former with its text parts
LLM_PREFIXES = ("language_model.", "opt_model.", "t5_model.")  # HF and PaddleMIX; LAVIS OPT; LAVIS T5


def _config_of(path: Path) -> Blip2Config | None:
    from ..model.config import Blip2Config

    file = path / "config.json" if path.is_dir() else None
    if file is None or not file.exists():
        return None
    return Blip2Config.from_file(file, stage1=True)


def _without_llm(state_dict: dict) -> dict:
    # The LLM is read from its own name at load time (--llm): an LLM inside either part is left unread.
    return {k: v for k, v in state_dict.items() if not k.startswith(LLM_PREFIXES)}


def merge(
    vision: str, bridge: str, save: str | Path, llm: str | None = None, trust_pickle: bool = False
) -> tuple[Path, Blip2Config]:
    """Write the merged checkpoint into ``save``; returns the directory and its config."""
    import paddle

    from blip2_eva_vit import EvaVisionTransformer
    from blip2_qformer import QFormer

    from ..checkpoint_io import write_safetensors
    from ..formats import convert_state_dict
    from ..loading.pretrained import _locate, _read, _text_config
    from ..loading.saving import stable_reference
    from ..model.config import Blip2Config
    from ..model.modeling import Blip2ForConditionalGeneration, Blip2Qformer

    llm = stable_reference(llm) if llm else None  # a relative path would mean nothing from another directory
    vision_source, _ = _locate(vision, trust_pickle)
    bridge_source, _ = _locate(bridge, trust_pickle)
    config = _config_of(bridge_source.path) or _config_of(vision_source.path) or Blip2Config()
    vision_config = (_config_of(vision_source.path) or config).vision_config
    config = dataclasses.replace(
        config,
        vision_config=vision_config,
        vision_name_or_path=None,
        bridge_name_or_path=None,
        vision_and_bridge_name_or_path=None,
        text_config=_text_config(llm) if llm else None,
        text_name_or_path=llm,
    )
    vision_weights = convert_state_dict(
        _without_llm(_read(vision_source)), num_heads=vision_config.num_heads, llm_type=config.llm_type
    )
    weights = {k: v for k, v in vision_weights.items() if k.startswith("vision_model.")}
    bridge_weights = convert_state_dict(
        _without_llm(_read(bridge_source)), num_heads=vision_config.num_heads, llm_type=config.llm_type
    )
    weights.update({k: v for k, v in bridge_weights.items() if not k.startswith("vision_model.")})

    words = weights.get(WORD_EMBEDDINGS)
    stage1 = not llm and words is not None
    qformer = config.qformer_config
    if stage1 and not qformer.has_text_input:  # a stage-2 config beside stage-1 weights: [DEC] is the last row
        rows = int(words.shape[0])
        qformer = dataclasses.replace(qformer, has_text_input=True, vocab_size=rows, bos_token_id=rows - 1)
    config = dataclasses.replace(config, qformer_config=dataclasses.replace(qformer, has_text_input=stage1))

    with paddle.LazyGuard():  # shapes only: nothing is allocated
        if llm:
            parts = {"": Blip2ForConditionalGeneration(config)}
        elif stage1:
            parts = {"": Blip2Qformer(config)}
        else:  # vision + bridge: the projection's width depends on the LLM named later, so it is kept unchecked
            parts = {"vision_model.": EvaVisionTransformer(config.vision_config), "qformer.": QFormer(qformer)}
    expected = {
        prefix + k: tuple(v.shape)
        for prefix, part in parts.items()
        for k, v in part.state_dict().items()
        if not k.startswith("language_model.")
    }
    if not llm and not stage1:
        expected.update({k: tuple(v.shape) for k, v in weights.items() if k.startswith("language_projection.")})
    for key, value in weights.items():
        if key in expected and tuple(value.shape) != expected[key]:
            if key == "vision_model.pos_embed":
                continue  # resized (bicubic) when loaded into a model of another image size
            raise ValueError(f"shape mismatch for {key}: checkpoint {tuple(value.shape)} vs model {expected[key]}")
    unused = sorted(set(weights) - set(expected))
    missing = sorted(set(expected) - set(weights))
    weights = {k: v for k, v in weights.items() if k in expected}
    essential = [k for k in missing if k.startswith(("vision_model.", "qformer."))]
    if essential:
        raise ValueError(f"the merged checkpoint would lack {len(essential)} weights: {', '.join(essential[:10])}")
    if missing:  # e.g. HF's ITM checkpoints: no LM head, no temperature (retrieval works, ITG training starts fresh)
        print(f"blip2-merge: the parts hold no {', '.join(missing[:10])}; they stay as initialised", file=sys.stderr)

    directory = Path(save)
    directory.mkdir(parents=True, exist_ok=True)
    config.save(directory)
    write_safetensors(weights, directory)
    if unused:
        print(
            f"blip2-merge: left out {len(unused)} weights no BLIP-2 part uses: {', '.join(unused[:10])}",
            file=sys.stderr,
        )
    return directory, config


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="blip2-merge",
        description="Merge a vision encoder and a Q-Former into one BLIP-2 checkpoint that from_pretrained loads.",
    )
    # the second spelling of each is PaddleMIX's (paddlemix/examples/blip2/merge_weight.py)
    parser.add_argument(
        "--vision",
        "--vision_name_or_path",
        dest="vision",
        required=True,
        help="vision encoder weights: directory, file, Hub repo id or known name",
    )
    parser.add_argument(
        "--bridge",
        "--bridge_name_or_path",
        dest="bridge",
        required=True,
        help="Q-Former weights (with its config.json, if any, for the sizes)",
    )
    parser.add_argument(
        "--llm",
        "--llm_path",
        dest="llm",
        help="the LLM (name or path) for a stage-2 model; its weights are read at load time",
    )
    parser.add_argument("--save", "--save_path", dest="save", required=True, help="output directory")
    # merge_weight.py's first version (2023-08; it could not start: --blip2_path was declared twice)
    parser.add_argument("--blip2_path", help=argparse.SUPPRESS)
    parser.add_argument("--llm_name", help=argparse.SUPPRESS)
    parser.add_argument("--trust-pickle", action="store_true", help="allow .pth/.pdparams found on a hub (read safely)")
    args = parser.parse_args(argv)
    if args.blip2_path or args.llm_name:
        parser.error(
            "--blip2_path / --llm_name are the first merge_weight.py's (which could not run): pass the parts as "
            "--vision_name_or_path, --bridge_name_or_path and --llm_path"
        )
    start_command_line_tool()
    try:
        directory, config = merge(args.vision, args.bridge, args.save, args.llm, args.trust_pickle)
    except (OSError, ValueError) as error:
        print(f"blip2-merge: {error}", file=sys.stderr)
        return 1
    if args.llm:
        print(f"blip2-merge: wrote a stage-2 model with {args.llm} to {directory}")
    elif config.qformer_config.has_text_input:
        print(f"blip2-merge: wrote a stage-1 model (Blip2Qformer) to {directory}")
    else:
        print(
            f"blip2-merge: wrote a vision encoder + Q-Former (stage 2, no LLM) to {directory}; name the LLM when "
            f"you use it: blip2-predict --model {directory} --llm facebook/opt-2.7b (or blip2-merge ... --llm)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
