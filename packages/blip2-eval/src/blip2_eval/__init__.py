"""Caption, VQA and retrieval evaluation for BLIP-2, with scorers equal to the official ones.

The scorers (``score_vqa``, ``score_captions``, ``retrieval_metrics``) need neither paddle nor a model;
the model-running commands (``blip2-eval caption | vqa | retrieval``) import paddle when they run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "EvalInputError",
    "GenerationSettings",
    "normalize_answer",
    "retrieval_metrics",
    "score_caption_files",
    "score_captions",
    "score_vqa",
    "score_vqa_files",
    "vqa_accuracy",
]

_LAZY = {
    "EvalInputError": ".json_files",
    "GenerationSettings": ".settings",
    "normalize_answer": ".vqa_normalize",
    "retrieval_metrics": ".retrieval_score",
    "score_caption_files": ".caption_score",
    "score_captions": ".caption_score",
    "score_vqa": ".vqa_score",
    "score_vqa_files": ".vqa_score",
    "vqa_accuracy": ".vqa_accuracy",
}

if TYPE_CHECKING:
    from .caption_score import score_caption_files, score_captions
    from .json_files import EvalInputError
    from .retrieval_score import retrieval_metrics
    from .settings import GenerationSettings
    from .vqa_accuracy import vqa_accuracy
    from .vqa_normalize import normalize_answer
    from .vqa_score import score_vqa, score_vqa_files


# Not blip2_core.lazy_names: the scorers must import where blip2-core (and so paddle) cannot.
def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
