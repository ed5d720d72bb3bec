"""The LLM's tokenizer from the files HF checkpoints ship, built with paddlenlp's tokenizer classes.

paddlenlp's ``AutoTokenizer`` does not know HF's class names (``GPT2Tokenizer`` for OPT, ``T5Tokenizer`` for
FlanT5), so the class is chosen here from ``tokenizer_config.json`` and the vocabulary files present.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from . import hub

TOKENIZER_FILES = [
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.json",
    "spiece.model",
    "vocab.txt",
    "tokenizer.model",
]
# The Q-Former's BERT tokenizer inside a model directory whose Q-Former reads the question (config
# qformer_text_input, written by blip2-train finetune-vqa).
QFORMER_TOKENIZER_DIR = "qformer_tokenizer"


def load_tokenizer(name_or_path: str | os.PathLike) -> Any:
    """A paddlenlp tokenizer for an OPT (GPT-2 BPE), FlanT5 or LLaMA (SentencePiece) or BERT (WordPiece)
    vocabulary."""
    directory = hub.resolve(name_or_path, allow_patterns=TOKENIZER_FILES)
    if not directory.is_dir():
        raise ValueError(f"{directory}: a tokenizer is loaded from a directory")
    config_file = directory / "tokenizer_config.json"
    config = json.loads(config_file.read_text()) if config_file.exists() else {}
    special = _special_tokens(directory, config)
    kind = config.get("tokenizer_class", "").replace("Fast", "")
    if kind in ("GPT2Tokenizer", "GPTTokenizer") or (directory / "merges.txt").exists() or _bpe_json(directory):
        return _gpt2(directory, config, special)
    if kind == "T5Tokenizer" or (directory / "spiece.model").exists():
        from paddlenlp.transformers import T5Tokenizer

        if not (directory / "spiece.model").exists():
            raise FileNotFoundError(f"{directory}: a T5 tokenizer needs spiece.model")
        return T5Tokenizer(str(directory / "spiece.model"), **_present(special, "eos_token", "unk_token", "pad_token"))
    if kind == "LlamaTokenizer" or (directory / "tokenizer.model").exists():
        return _llama(directory, config, special)
    if kind == "BertTokenizer" or (directory / "vocab.txt").exists():
        from paddlenlp.transformers import BertTokenizer

        return BertTokenizer(str(directory / "vocab.txt"), do_lower_case=config.get("do_lower_case", True))
    raise TokenizerNotFoundError(
        f"{directory} has no tokenizer files: an OPT tokenizer is vocab.json + merges.txt (or tokenizer.json), "
        f"a FlanT5 one spiece.model, a LLaMA one tokenizer.model, a BERT one vocab.txt"
    )


def tokenizer_for_model(model: Any, name_or_path: str | os.PathLike, tokenizer: str | None = None) -> Any:
    """The tokenizer a loaded model's text goes through: ``tokenizer`` when given, else the model directory's own
    files, else its LLM's (``config.text_name_or_path``), else the name itself when it is no local path (a Hub
    repo carries its tokenizer files).

    Raises ``ValueError`` listing what was tried, each entry saying what it lacked.
    """
    name = os.fspath(name_or_path)
    candidates = [tokenizer] if tokenizer else []
    if Path(name).is_dir():
        candidates.append(name)
    if model.config.text_name_or_path:
        candidates.append(model.config.text_name_or_path)
    if not Path(name).exists():
        candidates.append(name)
    errors = []
    for candidate in dict.fromkeys(candidates):
        try:
            loaded = load_tokenizer(candidate)
        except (OSError, ValueError) as error:
            errors.append(str(error).replace("\n", "\n    "))
            continue
        if candidate != tokenizer:  # a tokenizer passed explicitly is used as it is
            _with_special_tokens_of_name(loaded, name)
        return loaded
    tried = "".join(f"\n  - {error}" for error in errors) or "\n  - the model names no LLM whose tokenizer to use"
    raise ValueError(f"no tokenizer for {name}:{tried}\n  pass --tokenizer DIR (the LLM's tokenizer files)")


def _with_special_tokens_of_name(tokenizer: Any, name: str) -> None:
    """A known name whose model was trained with other special tokens than its LLM repo's tokenizer has (its
    table entry's ``tokenizer_special_tokens``) gets them."""
    from .model_names import lookup

    entry = lookup(name) if not Path(name).expanduser().exists() else None
    for token_name, token in entry.tokenizer_special_tokens if entry else ():
        setattr(tokenizer, token_name, token)
        if isinstance(getattr(tokenizer, "init_kwargs", None), dict):  # what save_pretrained writes
            tokenizer.init_kwargs[token_name] = token


def qformer_tokenizer_for_model(
    model: Any, name_or_path: str | os.PathLike, qformer_tokenizer: str | None = None
) -> Any:
    """The Q-Former's (BERT) tokenizer of a model whose Q-Former reads the question (``config.qformer_text_input``):
    ``qformer_tokenizer`` when given, else ``qformer_tokenizer/`` in the model directory (or Hub repo). None for any
    other model (every released BLIP-2 checkpoint): its Q-Former reads no text.

    Raises ``ValueError`` when the model needs one and none is found.
    """
    if not model.config.qformer_text_input:
        return None
    name = os.fspath(name_or_path)
    # a model type whose published files may lack qformer_tokenizer/ (LAVIS's .pth) names the tokenizer it used
    fallback = getattr(model, "default_qformer_tokenizer", None)
    if not qformer_tokenizer and fallback and not _has_qformer_tokenizer(name):
        qformer_tokenizer = fallback
    if qformer_tokenizer:
        candidate: str | Path = qformer_tokenizer
    elif Path(name).exists():
        candidate = Path(name) / QFORMER_TOKENIZER_DIR
    else:  # a Hub repo id: only its qformer_tokenizer/ files
        try:
            candidate = hub.resolve(name, allow_patterns=[f"{QFORMER_TOKENIZER_DIR}/{f}" for f in TOKENIZER_FILES])
            candidate = candidate / QFORMER_TOKENIZER_DIR
        except (OSError, ValueError) as error:
            raise ValueError(
                f"{name}: cannot fetch its Q-Former tokenizer ({QFORMER_TOKENIZER_DIR}/): {error}"
            ) from None
    if not Path(candidate).is_dir() or not (Path(candidate) / "vocab.txt").is_file():
        raise ValueError(
            f"{name}: its config says the Q-Former reads the question (qformer_text_input: true), but "
            f"{candidate} holds no BERT tokenizer (vocab.txt); blip2-train finetune-vqa writes it there "
            f"(or pass the Q-Former's tokenizer directory)"
        )
    return load_tokenizer(candidate)


def _has_qformer_tokenizer(name: str) -> bool:
    """Whether ``name`` is a local model directory with a qformer_tokenizer/, or a Hub id (which may have one)."""
    path = Path(name).expanduser()
    if path.exists():
        return (path / QFORMER_TOKENIZER_DIR / "vocab.txt").is_file()
    from .model_names import lookup

    return lookup(name) is None or not lookup(name).is_url


@functools.lru_cache(maxsize=1)
def _llama_tokenizer_class() -> type:
    from paddlenlp.transformers import LlamaTokenizer as PaddleNLPLlamaTokenizer

    # the same class name, so that a saved tokenizer_config.json names the class HF and paddlenlp know
    class LlamaTokenizer(PaddleNLPLlamaTokenizer):
        """paddlenlp's LlamaTokenizer takes the bos and eos ids from the SentencePiece model whatever bos_token and
        eos_token say; HF's takes the tokens given. HF's instructblip-vicuna repos and LAVIS set bos to "</s>"
        (every prompt starts with id 2, not 1), so the ids follow the tokens here, as in HF. Saved, the model file
        is HF's tokenizer.model (paddlenlp's own name, sentencepiece.bpe.model, no LLaMA reader looks for)."""

        resource_files_names = {"vocab_file": "tokenizer.model"}

        @property
        def bos_token_id(self) -> int | None:
            return None if self.bos_token is None else self.convert_tokens_to_ids(self.bos_token)

        @property
        def eos_token_id(self) -> int | None:
            return None if self.eos_token is None else self.convert_tokens_to_ids(self.eos_token)

    return LlamaTokenizer


def _llama(directory: Path, config: dict[str, Any], special: dict[str, str]) -> Any:
    tokens = _present(special, "bos_token", "eos_token", "unk_token", "pad_token")
    tokenizer = _llama_tokenizer_class()(
        str(directory / "tokenizer.model"),
        add_bos_token=bool(config.get("add_bos_token", True)),
        add_eos_token=bool(config.get("add_eos_token", False)),
        **tokens,
    )
    if tokenizer.pad_token_id is None:  # LLaMA has no padding token; padded positions are masked anyway
        tokenizer.pad_token = tokenizer.unk_token
    return tokenizer


class TokenizerNotFoundError(FileNotFoundError):
    """A directory holds none of the tokenizer files we read; the message names it and the files."""


def _special_tokens(directory: Path, config: dict[str, Any]) -> dict[str, str]:
    tokens: dict[str, Any] = {}
    special_file = directory / "special_tokens_map.json"
    if special_file.exists():
        tokens.update(json.loads(special_file.read_text()))
    tokens.update({k: v for k, v in config.items() if k.endswith("_token") and v is not None})
    # HF writes a special token either as a string or as {"content": ...}
    return {k: (v["content"] if isinstance(v, dict) else v) for k, v in tokens.items() if isinstance(v, (str, dict))}


def _present(values: dict[str, str], *names: str) -> dict[str, str]:
    return {name: values[name] for name in names if name in values}


def _bpe_json(directory: Path) -> dict[str, Any] | None:
    """The BPE model inside a fast tokenizer's tokenizer.json, when that is all a checkpoint ships."""
    file = directory / "tokenizer.json"
    if not file.exists():
        return None
    model = json.loads(file.read_text()).get("model", {})
    return model if model.get("type") == "BPE" else None


def _gpt2(directory: Path, config: dict[str, Any], special: dict[str, str]) -> Any:
    from paddlenlp.transformers import GPTTokenizer

    vocab, merges = directory / "vocab.json", directory / "merges.txt"
    if not (vocab.exists() and merges.exists()):
        model = _bpe_json(directory)
        if model is None:
            raise FileNotFoundError(
                f"{directory}: a GPT-2/OPT tokenizer needs vocab.json and merges.txt, or tokenizer.json"
            )
        scratch = Path(tempfile.mkdtemp(prefix="blip2-tokenizer-"))
        vocab, merges = scratch / "vocab.json", scratch / "merges.txt"
        vocab.write_text(json.dumps(model["vocab"]))
        pairs = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
        merges.write_text("#version: 0.2\n" + "\n".join(pairs) + "\n")
    tokens = _present(special, "pad_token", "eos_token", "unk_token", "bos_token")
    tokenizer = GPTTokenizer(str(vocab), str(merges), add_bos_token=bool(config.get("add_bos_token", False)), **tokens)
    return tokenizer
