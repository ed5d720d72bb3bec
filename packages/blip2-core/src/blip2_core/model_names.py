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

:func:`fetch_url` downloads a release URL into ``$BLIP2_HOME/checkpoints`` (default ``~/.cache/blip2``).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import unquote, urlparse
from urllib.request import Request, urlopen

from .hub import ModelNotAvailableError, is_offline, resolve

LAVIS_BLIP2 = "https://storage.googleapis.com/sfr-vision-language-research/LAVIS/models/BLIP2"
PADDLEMIX = "https://bj.bcebos.com/v1/paddlenlp/models/community/paddlemix"
EVA_VIT_G_URL = f"{LAVIS_BLIP2}/eva_vit_g.pth"

KINDS = ("stage1", "stage2-pretrained", "stage2-caption", "vision-encoder")
LAYOUTS = ("hf", "lavis", "paddlemix")


@dataclass(frozen=True)
class ModelEntry:
    """A known model name and where its weights are published."""

    name: str
    kind: str  # one of KINDS
    llm: str | None  # "opt-2.7b", "flan-t5-xl", ...; None for stage 1 and the vision encoder
    image_size: int
    source: str  # a Hub repo id, or an https URL
    layout: str  # key layout of the weights at ``source``: one of LAYOUTS
    description: str
    vision: str = "eva-vit-g"
    llm_repo: str | None = None  # the LLM's own Hub repo, for sources that do not hold the LLM
    requires: tuple[str, ...] = ()  # other entries whose weights this source lacks (e.g. the frozen ViT)
    also_at: tuple[tuple[str, str], ...] = ()  # other (source, layout) publications of the same model
    aliases: tuple[str, ...] = field(default=(), compare=False)

    @property
    def is_url(self) -> bool:
        return self.source.startswith(("https://", "http://"))


# ---------------------------------------------------------------------------------------------------- the table

_STAGE1 = f"{LAVIS_BLIP2}/blip2_pretrained.pth"
_STAGE1_COCO = f"{LAVIS_BLIP2}/blip2_finetune_coco.pth"
_FROZEN_VIT = ("eva_vit_g",)


def _stage1(name: str, description: str, *, also_at: tuple = (), aliases: tuple = ()) -> ModelEntry:
    return ModelEntry(
        name,
        "stage1",
        None,
        224,
        _STAGE1,
        "lavis",
        description,
        requires=_FROZEN_VIT,
        also_at=(("Salesforce/blip2-itm-vit-g", "hf"), *also_at),
        aliases=aliases,
    )


def _stage1_coco(name: str, description: str) -> ModelEntry:
    return ModelEntry(
        name,
        "stage1",
        None,
        364,
        _STAGE1_COCO,
        "lavis",
        description,
        also_at=(("Salesforce/blip2-itm-vit-g-coco", "hf"),),
    )


@dataclass(frozen=True)
class _Stage2:
    """One stage-2 model, known under a LAVIS, a PaddleMIX and a Hub name."""

    kind: str
    llm: str
    llm_repo: str
    image_size: int
    hf_repo: str
    lavis_url: str
    lavis_name: str
    paddlemix_names: tuple[str, ...]
    what: str
    paddlemix_url: str | None = None


_STAGE2 = (
    _Stage2(
        "stage2-pretrained",
        "opt-2.7b",
        "facebook/opt-2.7b",
        224,
        "Salesforce/blip2-opt-2.7b",
        f"{LAVIS_BLIP2}/blip2_pretrained_opt2.7b.pth",
        "blip2_opt/pretrain_opt2.7b",
        ("paddlemix/blip2-pretrained-opt2.7b",),
        "BLIP-2 pretrained with OPT-2.7b (zero-shot captioning / VQA, start of fine-tuning)",
        f"{PADDLEMIX}/blip2-pretrained-opt2.7b/model_state.pdparams",
    ),
    _Stage2(
        "stage2-pretrained",
        "opt-6.7b",
        "facebook/opt-6.7b",
        224,
        "Salesforce/blip2-opt-6.7b",
        f"{LAVIS_BLIP2}/blip2_pretrained_opt6.7b.pth",
        "blip2_opt/pretrain_opt6.7b",
        ("paddlemix/blip2-pretrained-opt6.7b",),
        "BLIP-2 pretrained with OPT-6.7b",
    ),
    _Stage2(
        "stage2-pretrained",
        "flan-t5-xl",
        "google/flan-t5-xl",
        224,
        "Salesforce/blip2-flan-t5-xl",
        f"{LAVIS_BLIP2}/blip2_pretrained_flant5xl.pth",
        "blip2_t5/pretrain_flant5xl",
        ("paddlemix/blip2_pretrained_flant5xl",),
        "BLIP-2 pretrained with FlanT5-XL (instructed zero-shot VQA)",
    ),
    _Stage2(
        "stage2-pretrained",
        "flan-t5-xxl",
        "google/flan-t5-xxl",
        224,
        "Salesforce/blip2-flan-t5-xxl",
        f"{LAVIS_BLIP2}/blip2_pretrained_flant5xxl.pth",
        "blip2_t5/pretrain_flant5xxl",
        ("paddlemix/blip2_pretrained_flant5xxl",),
        "BLIP-2 pretrained with FlanT5-XXL",
    ),
    _Stage2(
        "stage2-caption",
        "opt-2.7b",
        "facebook/opt-2.7b",
        364,
        "Salesforce/blip2-opt-2.7b-coco",
        f"{LAVIS_BLIP2}/blip2_caption_opt2.7b.pth",
        "blip2_opt/caption_coco_opt2.7b",
        ("paddlemix/blip2-caption-opt2.7b",),
        "BLIP-2 OPT-2.7b fine-tuned for COCO captioning (prompt 'a photo of')",
    ),
    _Stage2(
        "stage2-caption",
        "opt-6.7b",
        "facebook/opt-6.7b",
        364,
        "Salesforce/blip2-opt-6.7b-coco",
        f"{LAVIS_BLIP2}/blip2_caption_opt6.7b.pth",
        "blip2_opt/caption_coco_opt6.7b",
        ("paddlemix/blip2-caption-opt6.7b",),
        "BLIP-2 OPT-6.7b fine-tuned for COCO captioning (prompt 'a photo of')",
    ),
    _Stage2(
        "stage2-caption",
        "flan-t5-xl",
        "google/flan-t5-xl",
        364,
        "Salesforce/blip2-flan-t5-xl-coco",
        f"{LAVIS_BLIP2}/blip2_caption_flant5xl.pth",
        "blip2_t5/caption_coco_flant5xl",
        # PaddleMIX's README spells it "blip2_caption_flant5xl.7b" in places.
        ("paddlemix/blip2_caption_flant5xl", "paddlemix/blip2_caption_flant5xl.7b"),
        "BLIP-2 FlanT5-XL fine-tuned for COCO captioning (prompt 'a photo of')",
    ),
)


def _stage2_entries(model: _Stage2) -> list[ModelEntry]:
    # The Hub repo holds ViT, Q-Former and LLM, so every name points there; the LAVIS file is listed as an
    # alternative (it needs the LLM from llm_repo, and for pretrain the ViT from eva_vit_g.pth).
    lavis_alt = (model.lavis_url, "lavis")
    also = (lavis_alt,) if model.paddlemix_url is None else (lavis_alt, (model.paddlemix_url, "paddlemix"))

    def entry(name: str, description: str, aliases: tuple[str, ...] = ()) -> ModelEntry:
        return ModelEntry(
            name,
            model.kind,
            model.llm,
            model.image_size,
            model.hf_repo,
            "hf",
            description,
            llm_repo=model.llm_repo,
            also_at=also,
            aliases=aliases,
        )

    return [
        entry(model.hf_repo, f"{model.what}; HF layout"),
        entry(model.lavis_name, f"LAVIS name; {model.what}"),
        entry(model.paddlemix_names[0], f"PaddleMIX name; {model.what}", aliases=tuple(model.paddlemix_names[1:])),
    ]


def _build_table() -> list[ModelEntry]:
    entries = [
        ModelEntry(
            "eva_vit_g",
            "vision-encoder",
            None,
            224,
            EVA_VIT_G_URL,
            "lavis",
            "EVA-CLIP ViT-g/14 (LAVIS's BLIP-2 vision encoder; 40 blocks saved, BLIP-2 uses 39)",
            also_at=((f"{PADDLEMIX}/blip2-stage2/eva_vit_g/model_state.pdparams", "paddlemix"),),
            # PaddleMIX's configs name the vision encoder by this sub-path of its stage-2 model.
            aliases=("paddlemix/blip2-stage2/eva_vit_g",),
        ),
        _stage1("blip2/pretrain", "LAVIS stage-1 Q-Former (ITC/ITM/captioning heads), ViT-g frozen, not included"),
        _stage1("blip2_feature_extractor/pretrain", "LAVIS feature extractor: the stage-1 Q-Former of blip2/pretrain"),
        _stage1("blip2_image_text_matching/pretrain", "LAVIS image-text matching: the stage-1 Q-Former"),
        _stage1(
            "paddlemix/blip2-stage1",
            "PaddleMIX's stage-1 starting point: the LAVIS stage-1 checkpoint (blip2/pretrain)",
            also_at=((f"{PADDLEMIX}/blip2-stage1/model_state.pdparams", "paddlemix"),),
        ),
        _stage1(
            "paddlemix/blip2-stage2",
            "PaddleMIX's stage-2 starting point: the stage-1 Q-Former (LAVIS blip2/pretrain) plus an LLM "
            "chosen for training (PaddleMIX's default facebook/opt-2.7b); no projection or LLM weights",
            also_at=((f"{PADDLEMIX}/blip2-stage2/model_state.pdparams", "paddlemix"),),
        ),
        ModelEntry(
            "blip2/pretrain_vitL",
            "stage1",
            None,
            224,
            f"{LAVIS_BLIP2}/blip2_pretrained_vitL.pth",
            "lavis",
            "LAVIS stage-1 Q-Former trained on CLIP ViT-L/14 (not EVA ViT-g: needs a ViT-L vision encoder)",
            vision="clip-vit-l",
        ),
        _stage1_coco("blip2/coco", "LAVIS stage-1 Q-Former and ViT-g fine-tuned on COCO retrieval"),
        _stage1_coco("blip2_feature_extractor/coco", "LAVIS feature extractor fine-tuned on COCO retrieval"),
        _stage1_coco("blip2_image_text_matching/coco", "LAVIS image-text matching fine-tuned on COCO retrieval"),
        ModelEntry(
            "Salesforce/blip2-itm-vit-g",
            "stage1",
            None,
            224,
            "Salesforce/blip2-itm-vit-g",
            "hf",
            "stage-1 ViT-g + Q-Former with ITM/ITC heads, HF layout (no Q-Former LM head)",
            also_at=((_STAGE1, "lavis"),),
        ),
        ModelEntry(
            "Salesforce/blip2-itm-vit-g-coco",
            "stage1",
            None,
            364,
            "Salesforce/blip2-itm-vit-g-coco",
            "hf",
            "stage-1 ViT-g + Q-Former fine-tuned on COCO retrieval, HF layout (no Q-Former LM head)",
            also_at=((_STAGE1_COCO, "lavis"),),
        ),
    ]
    for model in _STAGE2:
        entries.extend(_stage2_entries(model))
    return entries


_TABLE = _build_table()
_BY_NAME = {n: e for e in _TABLE for n in (e.name, *e.aliases)}
_BY_FOLDED_NAME = {n.lower(): e for n, e in _BY_NAME.items()}


def all_entries() -> list[ModelEntry]:
    """Every known model, in table order (vision encoder, stage 1, then stage 2 by LLM)."""
    return list(_TABLE)


def lookup(name: str) -> ModelEntry | None:
    """The entry for a known name or alias (case-insensitive), or None for anything else (a path, a repo id)."""
    name = name.strip().rstrip("/")
    return _BY_NAME.get(name) or _BY_FOLDED_NAME.get(name.lower())


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


# ---------------------------------------------------------------------------------------------------- fetching

CHUNK_BYTES = 1 << 20


def blip2_home() -> Path:
    """``$BLIP2_HOME``, default ``~/.cache/blip2``."""
    return Path(os.environ.get("BLIP2_HOME") or Path.home() / ".cache" / "blip2").expanduser()


def url_cache_path(url: str, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where :func:`fetch_url` keeps ``url``: ``<cache_dir or $BLIP2_HOME>/checkpoints/<file name>``."""
    name = Path(unquote(urlparse(url).path)).name
    if not name or name in (".", ".."):
        raise ValueError(f"cannot name a cache file after {url!r}")
    root = Path(cache_dir).expanduser() if cache_dir is not None else blip2_home()
    return root / "checkpoints" / name


def _torch_hub_copy(url: str) -> Path | None:
    # LAVIS downloads these files into torch hub's cache: reuse a copy already there instead of fetching it again.
    torch_home = (
        os.environ.get("TORCH_HOME") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "torch"
    )
    candidate = Path(torch_home).expanduser() / "hub" / "checkpoints" / url_cache_path(url, "/").name
    return candidate if candidate.is_file() else None


def fetch_url(
    url: str,
    cache_dir: str | os.PathLike | None = None,
    *,
    timeout: float = 60.0,
    lock_timeout: float = -1,
) -> Path:
    """The local path of ``url``'s file, downloading it into the cache first if needed.

    The download goes to ``<name>.part`` and is resumed with an HTTP Range request after an interruption; the
    file appears under its final name only when complete, and a file lock keeps parallel processes (ranks) from
    fetching it twice. Offline (``BLIP2_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``) or unreachable, raises
    :class:`ModelNotAvailableError` saying where to put the file.
    """
    from filelock import FileLock

    destination = url_cache_path(url, cache_dir)
    if destination.is_file():
        return destination
    if cache_dir is None and (existing := _torch_hub_copy(url)) is not None:
        return existing
    if is_offline():
        raise ModelNotAvailableError(_url_not_available(url, destination, "offline (BLIP2_OFFLINE/HF_HUB_OFFLINE)"))
    destination.parent.mkdir(parents=True, exist_ok=True)
    part = destination.with_name(destination.name + ".part")
    with FileLock(str(destination) + ".lock", timeout=lock_timeout):
        if destination.is_file():  # another process finished it while we waited
            return destination
        try:
            total = _download_to_part(url, part, timeout)
        except (URLError, HTTPException, OSError) as e:
            if isinstance(e, HTTPError) and e.code not in (408, 429, 500, 502, 503, 504):
                raise ModelNotAvailableError(_url_not_available(url, destination, f"HTTP {e.code} {e.reason}")) from e
            kept = f"; {part.stat().st_size} bytes kept in {part}, run again to resume" if part.exists() else ""
            raise ModelNotAvailableError(_url_not_available(url, destination, f"download failed ({e}){kept}")) from e
        got = part.stat().st_size
        if total is not None and got != total:
            raise ModelNotAvailableError(
                _url_not_available(url, destination, f"download stopped at {got} of {total} bytes; run again to resume")
            )
        os.replace(part, destination)
    return destination


def _download_to_part(url: str, part: Path, timeout: float) -> int | None:
    """Append the rest of ``url`` to ``part``; return the full size the server announced (None if unknown)."""
    offset = part.stat().st_size if part.exists() else 0
    request = Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urlopen(request, timeout=timeout)
    except HTTPError as e:
        # 416: nothing past our offset, so the part file is already whole (if the sizes agree).
        if e.code == 416 and offset:
            announced = e.headers.get("Content-Range", "").rpartition("/")[2]
            if announced.isdigit() and int(announced) == offset:
                return offset
            part.unlink()
            return _download_to_part(url, part, timeout)
        raise
    with response:
        if offset and response.status == 206:
            # "bytes <start>-<end>/<total>": the server must continue exactly where our file ends.
            content_range = response.headers.get("Content-Range", "")
            span, _, total_text = content_range.removeprefix("bytes ").partition("/")
            if span.partition("-")[0] != str(offset):
                raise OSError(f"{url}: server resumed at {content_range!r}, expected byte {offset}")
            total = int(total_text) if total_text.isdigit() else None
            mode = "ab"
        else:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            mode = "wb"  # a fresh download, or a server that ignored the Range header
        with open(part, mode) as out:
            shutil.copyfileobj(response, out, CHUNK_BYTES)
    return total


def _url_not_available(url: str, destination: Path, reason: str) -> str:
    return (
        f"{url} is not available: {reason}.\n"
        f"  On a machine with network access download it (e.g. curl -L -o {destination.name} '{url}') and put it at\n"
        f"    {destination}\n"
        f"  (the cache is $BLIP2_HOME/checkpoints, BLIP2_HOME defaulting to ~/.cache/blip2), or pass the file's "
        f"path instead of the model name."
    )


def fetch_entry(entry: ModelEntry, cache_dir: str | os.PathLike | None = None) -> Path:
    """The local path of ``entry``'s weights: its release URL through :func:`fetch_url`, or its Hub repo."""
    return fetch_url(entry.source, cache_dir) if entry.is_url else resolve(entry.source)
