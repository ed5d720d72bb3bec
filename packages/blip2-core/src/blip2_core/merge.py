"""``blip2-merge``: one checkpoint from a vision encoder and a Q-Former (bridge), loadable by ``from_pretrained``.

The seed's ``merge_weight.py`` read the vision weights twice and so never merged the bridge; here each part
is read from its own source, converted from whatever layout it is in, checked against the model's shapes,
and written as our safetensors + config.json. With ``--llm`` the result is a stage-2 model whose LLM
weights are read from that name at load time; without, a stage-1 model (``Blip2Qformer``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .startup import start_command_line_tool

if TYPE_CHECKING:  # imported where used: paddle loads only after start_command_line_tool()
    from .config import Blip2Config


def _config_of(path: Path) -> Blip2Config | None:
    from .config import Blip2Config

    file = path / "config.json" if path.is_dir() else None
    if file is None or not file.exists():
        return None
    return Blip2Config.from_file(file, stage1=True)


def merge(
    vision: str, bridge: str, save: str | Path, llm: str | None = None, trust_pickle: bool = False
) -> tuple[Path, Blip2Config]:
    """Write the merged checkpoint into ``save``; returns the directory and its config."""
    import paddle

    from .checkpoint_io import write_safetensors
    from .config import Blip2Config
    from .formats import convert_state_dict
    from .modeling import Blip2ForConditionalGeneration, Blip2Qformer
    from .pretrained import _locate, _read, _text_config

    vision_source, _ = _locate(vision, trust_pickle)
    bridge_source, _ = _locate(bridge, trust_pickle)
    config = _config_of(bridge_source.path) or _config_of(vision_source.path) or Blip2Config()
    vision_config = (_config_of(vision_source.path) or config).vision_config
    config = dataclasses.replace(
        config, vision_config=vision_config, vision_name_or_path=None, bridge_name_or_path=None
    )
    config.vision_and_bridge_name_or_path = None
    if llm:
        config.text_name_or_path = llm
        config.text_config = _text_config(llm)
        config.qformer_config = dataclasses.replace(config.qformer_config, has_text_input=False)
    else:
        config.text_config = None
        config.qformer_config = dataclasses.replace(config.qformer_config, has_text_input=True)

    vision_weights = convert_state_dict(_read(vision_source), vision_config.num_heads, config.llm_type)
    weights = {k: v for k, v in vision_weights.items() if k.startswith("vision_model.")}
    bridge_weights = convert_state_dict(_read(bridge_source), vision_config.num_heads, config.llm_type)
    weights.update({k: v for k, v in bridge_weights.items() if not k.startswith(("vision_model.", "language_model."))})

    with paddle.LazyGuard():  # shapes only: nothing is allocated
        model = Blip2ForConditionalGeneration(config) if llm else Blip2Qformer(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.startswith("language_model.")}
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
    parser.add_argument(
        "--vision", required=True, help="vision encoder weights: directory, file, Hub repo id or known name"
    )
    parser.add_argument(
        "--bridge", required=True, help="Q-Former weights (with its config.json, if any, for the sizes)"
    )
    parser.add_argument("--llm", help="the LLM (name or path) for a stage-2 model; its weights are read at load time")
    parser.add_argument("--save", required=True, help="output directory")
    parser.add_argument("--trust-pickle", action="store_true", help="allow .pth/.pdparams found on a hub (read safely)")
    args = parser.parse_args(argv)
    start_command_line_tool()
    try:
        directory, config = merge(args.vision, args.bridge, args.save, args.llm, args.trust_pickle)
    except (OSError, ValueError) as error:
        print(f"blip2-merge: {error}", file=sys.stderr)
        return 1
    kind = f"stage-2 model with {args.llm}" if args.llm else "stage-1 model (Blip2Qformer)"
    print(f"blip2-merge: wrote a {kind} to {directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
