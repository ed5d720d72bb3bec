"""bfloat16 as numpy sees it: raw uint16 words, widened to float32 by every reader."""

from __future__ import annotations

import numpy as np


def bf16_to_float32(raw: np.ndarray) -> np.ndarray:
    """Widen raw bfloat16 words (uint16) to float32, exactly: a bf16 value is the high 16 bits of a float32."""
    return (raw.astype(np.uint32) << 16).view(np.float32)
