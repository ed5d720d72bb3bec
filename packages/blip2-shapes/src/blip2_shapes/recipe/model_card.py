"""The model card (README.md) written beside the demo model's weights, from the recipe's record."""

from __future__ import annotations

from pathlib import Path


def _pct(value) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _shortfalls(vqa: dict, chance: dict) -> list[str]:
    """Said plainly where the model is below chance."""
    below = [name for name, value in vqa.get("perQuestionType", {}).items()
             if value < chance["uniform_per_type"].get(name, 0) + 5]  # fmt: skip
    if vqa.get("overall", 0) < chance["majority_answer"].get("overall", 0):
        below.insert(0, "overall")
    if not below:
        return []
    return [f"**VQA is at or below chance for: {', '.join(below)}** (within 5 points of a uniform guess).", ""]


def _losses(record: dict, name: str) -> str:
    losses = record["losses"][name]
    return f"{losses['first']['loss']:.3f} -> {losses['last']['loss']:.3f}"


def _vit_accuracy(vit: dict) -> str:
    accuracy = vit["held_out_accuracy"]
    return (
        "; ".join(
            f"{slot} group "
            + ", ".join(f"{what} {100 * accuracy[f'{slot}_{what}']:.0f}%" for what in ("colour", "shape", "count"))
            for slot in ("top", "bottom")
        )
        + f"; background {100 * accuracy['background']:.0f}%"
    )


def _text_encoder(record: dict) -> list[str]:
    text = record.get("text_encoder")
    if not text:
        return []
    first, last = text["first_loss"], text["last_loss"]
    return [
        "- Q-Former text side: no BERT exists at this size, so it is pre-trained first "
        "(`blip2_shapes/recipe/pretrain_text.py`, BERT-base's stand-in) "
        f"{text['steps']} steps of {text['batch_size']} on the captions of {text['scenes']} scenes (the LLM's): "
        "masked words, and two captions of a scene against the batch's other scenes "
        f"(losses {first['masked_words']:.2f} -> {last['masked_words']:.3f} and {first['contrastive']:.2f} -> "
        f"{last['contrastive']:.3f}); the cross-attention and queries start fresh. Only the retrieval model starts "
        "from it: VQA from such a Q-Former answered worse",
    ]


def _retrieval_stage1(record: dict) -> list[str]:
    losses = record["losses"].get("stage1_retrieval")
    if not losses:
        return []
    return [
        f"- `blip2-train stage1` again from the pre-trained text side, the retrieval model in `stage1/`: "
        f"{record['settings']['retrieval_stage1']}; loss {losses['first']['loss']:.3f} -> {losses['last']['loss']:.3f}"
    ]


def _load(record: dict) -> str:
    """The 1-minute load average when the run started (the recipe's own two cores make the load at its end)."""
    start = record.get("load_average_at_start")
    if start is None:
        return f"load average at the end {record['load_average_at_end'][0]:.1f}: the machine was shared"
    quiet = "nothing else running" if start[0] < 0.3 else "the machine was shared"
    return f"1-minute load average {start[0]:.2f} at the start: {quiet}"


def _varied_share(record: dict) -> float:
    return float(record["settings"].get("vit_varied_share", 0.0))


def _counted(check: dict, line: str) -> list[str]:
    """The with-counts figure, which records written before it was measured do not have."""
    return [line.format(check["exact_pairs_and_counts_pct"])] if "exact_pairs_and_counts_pct" in check else []


def _drawn_differently(measured: dict | None, varied_share: float) -> list[str]:
    """The scenes of the training distribution drawn by another renderer (``blip2_shapes.drawn_differently``)."""
    if not measured:
        return []
    trained = (
        f" The ViT's pre-training drew {varied_share:.0%} of its extra images with the same renderer at other "
        "settings (`pretrain_vit.TRAINING_STYLE`) and from other scenes: these pictures test robustness the model "
        "was trained for, not one it never saw."
        if varied_share
        else ""
    )
    return [
        "## Pictures drawn by another renderer",
        "",
        f"{measured['images']} scenes of the training distribution drawn another way (`blip2_shapes/drawn_differently.py`: "
        "canvases of 96-200 px in five aspect ratios, anti-aliased, squares and triangles turned by up to 10 degrees, "
        f"colours and background jittered, JPEG quality 40-95; `blip2-shapes measure` repeats it).{trained}",
        "",
        "| | this model |",
        "|---|---|",
        f"| captions naming exactly the drawn colour-shape pairs | {measured['exact_colour_shape_pairs_pct']}% |",
        f"| ... and the right count of each | {measured['exact_pairs_and_counts_pct']}% |",
        f"| colour questions answered right (vqa/, {measured['colour_questions']} questions) | "
        f"{measured['colour_answers_right_pct']}% |",
        "",
    ]


def write_model_card(directory: Path, record: dict) -> Path:
    m, chance = record["metrics"], record["chance"]
    cap, vqa, ret = m["caption"], m["vqa"], m["retrieval"]
    cap_chance, vqa_chance, ret_chance = chance["caption"], chance["vqa"], chance["retrieval"]
    lines = [
        "# blip2-shapes: the project's default model",
        "",
        "A small BLIP-2 (EVA-ViT + Q-Former + OPT) trained from nothing by this repository's own commands on",
        "`synthetic_shapes` (coloured circles, squares and triangles; blip2-data). It exists so that `blip2-predict`",
        "works offline out of the box and so that CI can see the whole pipeline learn. It knows nothing but shapes.",
        "",
        "## Made by",
        "",
        "```bash",
        "blip2-shapes train --work WORK     # or: python3 -m nox -s demo-train",
        "```",
        "",
        f"- data: synthetic_shapes, seed 0, images per split {record['settings']['data']} (128 px JPEGs; 3 captions",
        "  and VQAv2-style questions with ten answers per image)",
        "- LLM: OPT architecture, "
        f"{record['lm'].get('shape', '')} BPE tokenizer trained on the training text; pre-trained "
        f"{record['lm']['steps']} steps of {record['lm']['batch_size']} on that text and on "
        f"{record['settings']['lm']['text_only_scenes']} more scenes drawn as text only, none of a val, test or "
        f"shifted image (`pretrain_lm.py`; loss {record['lm']['first_loss']:.2f} -> "
        f"{record['lm']['last_loss']:.3f}), then frozen",
        "- vision: EVA-ViT, 64 px input, patch 8, position table started as sines and cosines; no pre-trained "
        "encoder exists at this size, so it is pre-trained first (`blip2_shapes/recipe/pretrain_vit.py`, EVA-CLIP's stand-in) "
        f"{record['vit']['steps']} steps on the training images and {record['vit'].get('drawn_images', 0)} more drawn "
        "in memory (none of a val, test or shifted image"
        + (
            f"; {_varied_share(record):.0%} of them drawn varied, `TRAINING_STYLE`: canvases of 88-216 px of any "
            "aspect ratio, anti-aliased, shapes turned by up to 12 degrees, colours and background jittered, JPEG "
            "quality 30-95, augmentation that keeps every caption true"
            if _varied_share(record)
            else ""
        )
        + ") to name each group's colour, shape and count and the "
        "background, read from their captions "
        f"(loss {record['vit']['first_loss']:.2f} -> {record['vit']['last_loss']:.3f}; on {record['vit']['held_out_images']} "
        f"held-out training images: {_vit_accuracy(record['vit'])}), then frozen in stages 1 and 2 as BLIP-2 keeps "
        "EVA-ViT frozen"
        + (
            "; trained again with the Q-Former in the VQA fine-tuning, as the paper does"
            if record["settings"]["vqa"].get("train_vit")
            else ""
        )
        + "; training images are only resized (no random crop: it would cut out shapes the captions count)",
        *_text_encoder(record),
        f"- `blip2-train stage1` (ITC + ITM + ITG): {record['settings']['stage1']}; loss "
        f"{record['losses']['stage1']['first']['loss']:.3f} -> {record['losses']['stage1']['last']['loss']:.3f}",
        *_retrieval_stage1(record),
        f"- `blip2-train stage2` (frozen ViT and LLM; the captioning model): {record['settings']['stage2']}; loss "
        f"{record['losses']['stage2']['first']['loss']:.3f} -> {record['losses']['stage2']['last']['loss']:.3f}",
        f"- `blip2-train finetune-vqa` from that model, into `vqa/` (the question beside the Q-Former's queries and in the LLM "
        f"prompt, answers weighted; ViT {'trained' if record['settings']['vqa'].get('train_vit') else 'frozen'}, "
        f"LLM frozen): {record['settings']['vqa']}; loss {_losses(record, 'finetune_vqa')}",
        f"- time: {record['train_seconds'] / 60:.1f} min training, {record['total_seconds'] / 60:.1f} min with the "
        f"evaluations, on {record['cpu']} ({_load(record)}); steps"
        + (" (two at a time, one core each: they add up to more)" if "stage1_retrieval" in record["timings_s"] else "")
        + ": "
        + ", ".join(f"{k} {v:.0f} s" for k, v in record["timings_s"].items())
        + (f" ({record['vqa_rerun']})" if record.get("vqa_rerun") else ""),
        "",
        "## Held-out test split (blip2-eval)",
        "",
        "| task | metric | this model | chance |",
        "|---|---|---|---|",
        f"| caption (`blip2-eval caption`, no prompt, beam 5) | CIDEr | {cap['CIDEr']:.3f} | {cap_chance['CIDEr']:.3f} |",
        f"| | BLEU-4 | {cap['Bleu_4']:.3f} | {cap_chance['Bleu_4']:.3f} |",
        f"| | names exactly the drawn colour-shape pairs (colours only) | "
        f"{cap['names_colours_and_shapes']['exact_colour_shape_pairs_pct']}% "
        f"({cap['names_colours_and_shapes']['exact_colours_pct']}%) | |",
        *_counted(cap["names_colours_and_shapes"], "| | the pairs with their counts too | {}% | |"),
        f'| VQA (`blip2-eval vqa`, vqa/, "Question: {{}} Answer:") | accuracy | {_pct(vqa.get("overall"))} | '
        f"{vqa_chance['uniform_overall']:.1f} (uniform), {_pct(vqa_chance['majority_answer'].get('overall'))} "
        "(most common answer) |",
    ]
    per_type = vqa.get("perQuestionType", {})
    majority_type = vqa_chance["majority_answer"].get("perQuestionType", {})
    for name, value in sorted(per_type.items()):
        lines.append(
            f"| | {name} | {value:.1f} | {vqa_chance['uniform_per_type'].get(name, 0):.1f} (uniform), "
            f"{_pct(majority_type.get(name))} (most common) |"
        )
    ceiling = chance.get("retrieval_ceiling")
    for first, (direction, key) in enumerate((("image->text", "txt"), ("text->image", "img"))):
        for k in (1, 5):
            task = "retrieval (`blip2-eval retrieval`, stage1/, k_test 16)" if not first and k == 1 else ""
            best = f", {ceiling[f'{key}_r{k}']:.1f} (ceiling)" if ceiling else ""
            lines.append(
                f"| {task} | {direction} R@{k} | {ret[f'{key}_r{k}']:.1f} | {ret_chance[f'{key}_r{k}']:.1f}{best} |"
            )
    lines += [
        "",
        "Captioning chance: each test image given the caption of a random training image. VQA chance: a uniform",
        "guess among the answers of the question type, and the most common training answer of the type.",
    ]
    if ceiling:
        lines.append(
            "Retrieval ceiling: what a ranking that knows each image's content exactly can expect. Captions say what "
            f"is drawn, not where: {ceiling['images_sharing_all_captions']} of the {ceiling['images']} test images "
            f'share all three captions with another and {ceiling["images_sharing_a_caption"]} at least one ("a red '
            'circle above a blue square" is true on every background), and such ties rank in any order.'
        )
    lm_alone = m.get("lm_given_the_caption")
    if lm_alone:
        lines.append(
            "The frozen LLM alone, given each test picture's last caption (it names every group and the background) "
            "as text instead of the picture (`recipe/lm_alone.py`), answers "
            + ", ".join(f'"{kind}" {value:.1f}%' for kind, value in lm_alone.items())
            + ": a kind of question it gets wrong from the caption is one the Q-Former must answer for it."
        )
    lines += [
        "",
        *_shortfalls(vqa, vqa_chance),
        "## Images drawn differently (the `shifted` split)",
        "",
        "Shapes smaller than any training shape at the very top and bottom edges, or larger than any:",
    ]
    shifted = m["shifted_caption"]
    check = shifted["names_colours_and_shapes"]
    lines += [
        f"captions name exactly the drawn colour-shape pairs for {check['exact_colour_shape_pairs_pct']}% of "
        f"{check['images']} images, exactly the drawn colours for {check['exact_colours_pct']}% "
        f"(CIDEr {shifted['CIDEr']:.3f}).",
        *_counted(check, "The pairs with their counts too: {}%."),
        "",
        *_drawn_differently(m.get("drawn_differently"), _varied_share(record)),
        "## Files",
        "",
        "`model.safetensors` + `config.json` (the stage-2 model that captions, LLM included),",
        "`generation_config.json`, the OPT BPE tokenizer (`vocab.json`, `merges.txt`), `preprocessor_config.json`;",
        "`vqa/` (the VQA-fine-tuned model, the same files, `qformer_text_input: true`: it gives the question to the",
        "Q-Former too, with its WordPiece tokenizer in `vqa/qformer_tokenizer/`; `blip2-predict --question` without",
        "`--model` uses it); `stage1/` (the stage-1 model with its ITC/ITM heads and BERT-style vocabulary, for",
        "retrieval).",
        "`scores.json` holds every figure; `vqa_test_results.json` the test-split answers.",
        "",
    ]
    path = directory / "README.md"
    path.write_text("\n".join(lines))
    return path
