"""bfloat16 as numpy sees it: raw uint16 words, widened to float32 by every reader."""

from __future__ import annotations

import numpy as np

# bf16 tensors kept as they are stored (``keep_bfloat16=True``): one uint16 field, so that arithmetic on them
# fails instead of treating the words as numbers. blip2-eva-vit / blip2-qformer's assign_weights take the same
# dtype (equal by value: each package names it itself, as neither imports the other).
BFLOAT16_WORDS = np.dtype([("bfloat16", "<u2")])


def bf16_to_float32(raw: np.ndarray) -> np.ndarray:
    """Widen raw bfloat16 words (uint16) to float32, exactly: a bf16 value is the high 16 bits of a float32."""
    return (raw.astype(np.uint32) << 16).view(np.float32)
