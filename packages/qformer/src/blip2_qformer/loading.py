"""Loading a checkpoint of any layout (see ``formats``) into a ``QFormer`` or ``QFormerForPretraining``."""

from __future__ import annotations

import logging
from typing import Any

from blip2_encoder_common import LoadReport, assign_weights

from .formats import convert_state_dict
from .model import QFormer
from .pretraining import QFormerForPretraining


def load_pretrained(
    model: QFormer | QFormerForPretraining, state_dict: dict[str, Any], layout: str | None = None
) -> LoadReport:
    """Load a checkpoint of any layout into a ``QFormer`` or a ``QFormerForPretraining``.

    Keys that are not the model's are reported as ``unexpected`` (for a bare ``QFormer``, the stage-1
    heads among them); a shape mismatch is an error naming the key and both shapes.
    """
    converted = convert_state_dict(state_dict, layout)
    heads = []
    if isinstance(model, QFormer):  # a bare Q-Former: the stage-1 heads are not its own
        heads = [k for k in converted if not k.startswith("qformer.")]
        converted = {k[len("qformer.") :]: v for k, v in converted.items() if k.startswith("qformer.")}
    report = assign_weights(model, converted)
    report.unexpected = heads + report.unexpected
    report.log("Q-Former checkpoint", logging.INFO)
    return report
