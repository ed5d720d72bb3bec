"""The two tokenizers of the demo model, made from the synthetic_shapes training text.

- The LLM's: a GPT-2 byte-level BPE (``vocab.json`` + ``merges.txt``, OPT's special tokens and ids) trained with
  HF ``tokenizers`` (a dependency of paddlenlp, so always installed). paddlenlp's GPTTokenizer reads it.
- The Q-Former's: a BERT WordPiece ``vocab.txt`` of every word of that text (lower case, whole words).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

# OPT's special tokens at OPT's ids (<s> 0, <pad> 1, </s> 2, <unk> 3); OPT uses </s> as its BOS too.
OPT_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PROMPT_TEXT = ["Question: {} Answer:", "Question: {} Short answer:", "a photo of"]


def train_bpe(texts: Iterable[str], directory: Path, vocab_size: int = 512) -> Path:
    """vocab.json, merges.txt and OPT's tokenizer_config.json / special_tokens_map.json in ``directory``."""
    from tokenizers import ByteLevelBPETokenizer

    directory.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    corpus = sorted(set(texts)) + [p.format("") for p in PROMPT_TEXT]
    bpe.train_from_iterator(
        corpus, vocab_size=vocab_size, min_frequency=1, special_tokens=OPT_SPECIALS, show_progress=False
    )
    bpe.save_model(str(directory))
    vocab = json.loads((directory / "vocab.json").read_text())
    if [vocab[t] for t in OPT_SPECIALS] != [0, 1, 2, 3]:
        raise RuntimeError(f"special tokens got ids {[vocab[t] for t in OPT_SPECIALS]}, OPT's are 0-3")
    config = {
        "tokenizer_class": "GPT2Tokenizer",
        "add_bos_token": True,  # OPT's tokenizer starts every text with </s>
        "bos_token": "</s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "model_max_length": 64,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    special = {k: config[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token")}
    (directory / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    return directory


def bert_vocab(texts: Iterable[str], directory: Path) -> Path:
    """A WordPiece vocabulary of whole words (BERT's basic tokenizer splits punctuation off, lower-cases)."""
    directory.mkdir(parents=True, exist_ok=True)
    words = sorted({w for t in texts for w in re.findall(r"\w+|[^\w\s]", t.lower())})
    (directory / "vocab.txt").write_text("\n".join(BERT_SPECIALS + words) + "\n")
    config = {"tokenizer_class": "BertTokenizer", "do_lower_case": True}
    (directory / "tokenizer_config.json").write_text(json.dumps(config) + "\n")
    return directory
