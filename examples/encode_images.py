"""Encode images with EVA-ViT-g and the Q-Former: the visual tokens BLIP-2 feeds its language model.

    python examples/encode_images.py                                  # tiny random model, random pixels
    python examples/encode_images.py --checkpoint model.safetensors --size vit-g --image cat.jpg

--checkpoint takes a BLIP-2 state dict in the HF (Salesforce/blip2-*), LAVIS or PaddleMIX layout, as a
.safetensors file (torch .pth / paddle .pdparams pickles are read by blip2-core, with a trust flag).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import paddle

from blip2_eva_vit import EvaVisionTransformer, EvaVitConfig, use_all_cores
from blip2_eva_vit import load_pretrained as load_vision
from blip2_qformer import QFormer, QFormerConfig
from blip2_qformer import load_pretrained as load_bridge

MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype="float32")
STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype="float32")
VISION_PREFIXES = ("vision_model.", "visual_encoder.")


def build(size: str) -> tuple[EvaVisionTransformer, QFormer]:
    if size == "vit-g":
        vision_config, bridge_config = EvaVitConfig.eva_vit_g(), QFormerConfig(has_text_input=False)
    else:
        vision_config = EvaVitConfig(hidden_size=64, num_layers=2, num_heads=4, mlp_hidden_size=128)
        bridge_config = QFormerConfig(
            hidden_size=64,
            num_layers=2,
            num_heads=4,
            intermediate_size=128,
            encoder_hidden_size=64,
            has_text_input=False,
        )
    return EvaVisionTransformer(vision_config).freeze(), QFormer(bridge_config)


def load_checkpoint(path: str, vision: EvaVisionTransformer, bridge: QFormer) -> None:
    from safetensors.numpy import load_file

    state = load_file(path)
    vision_state = {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith(VISION_PREFIXES)}
    vision_state = {k: v for k, v in vision_state.items() if not k.startswith("post_layernorm.")}
    for name, report in (("vision", load_vision(vision, vision_state)), ("q-former", load_bridge(bridge, state))):
        print(f"{name}: {len(report.missing)} missing, {len(report.unexpected)} unused keys", *report.notes)


def read_images(paths: list[str], size: int) -> paddle.Tensor:
    from PIL import Image

    arrays = []
    for path in paths:
        image = Image.open(path).convert("RGB").resize((size, size), Image.BICUBIC)
        arrays.append(((np.asarray(image, dtype="float32") / 255.0 - MEAN) / STD).transpose(2, 0, 1))
    return paddle.to_tensor(np.stack(arrays))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="BLIP-2 weights (.safetensors, HF/LAVIS/PaddleMIX layout)")
    parser.add_argument("--size", choices=["tiny", "vit-g"], default="tiny", help="model sizes (default: tiny)")
    parser.add_argument("--image", nargs="*", default=[], help="image files (default: 2 random images)")
    args = parser.parse_args()
    use_all_cores()  # paddle's CPU default is one thread

    vision, bridge = build(args.size)
    bridge.eval()
    if args.checkpoint:
        load_checkpoint(args.checkpoint, vision, bridge)
    else:
        print("no --checkpoint: random weights, so the numbers below show shapes and speed only")
    size = vision.config.image_size
    pixels = read_images(args.image, size) if args.image else paddle.randn([2, 3, size, size])

    start = time.perf_counter()
    with paddle.no_grad():
        image_tokens = vision(pixels).last_hidden_state
        queries = bridge(image_tokens).last_hidden_state
    seconds = time.perf_counter() - start
    print(
        f"image tokens {image_tokens.shape} -> query outputs {queries.shape} "
        f"in {seconds:.2f}s ({pixels.shape[0] / seconds:.1f} img/s)"
    )
    print("first query output, first values:", np.round(queries[0, 0, :6].numpy(), 4).tolist())


if __name__ == "__main__":
    main()
