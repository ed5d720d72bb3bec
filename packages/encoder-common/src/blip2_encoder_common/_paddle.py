"""The one place this package imports paddle from, so that a missing paddle is an error saying what to install.

paddle is an extra of every package of ours (GPU users install paddlepaddle-gpu instead of the CPU wheel), so a
plain ``pip install blip2-eva-vit`` leaves it out.
"""

from __future__ import annotations

import sys

# The packages that depend on this one, by import name: the one being imported is the one the user installed,
# so the message names it rather than this package, which came along with it.
_INSTALLED_BY = {"blip2_eva_vit": "blip2-eva-vit", "blip2_qformer": "blip2-qformer"}


def missing_paddle_message() -> str:
    """What to install, naming the package of ours being imported (blip2-encoder-common when imported alone)."""
    importing = [pip for module, pip in _INSTALLED_BY.items() if module in sys.modules]
    pip_name = importing[0] if importing else "blip2-encoder-common"
    return (
        f"{pip_name} needs PaddlePaddle, which is not installed: pip install '{pip_name}[cpu]' (or pip install "
        f"paddlepaddle) for the CPU build; for a GPU, pip install paddlepaddle-gpu (pick the CUDA build on "
        f"paddlepaddle.org.cn)"
    )


try:
    import paddle
    from paddle import nn
except ModuleNotFoundError as error:  # say what to install instead of a bare "No module named 'paddle'"
    if error.name != "paddle":
        raise
    raise ModuleNotFoundError(missing_paddle_message(), name="paddle") from None

__all__ = ["nn", "paddle"]
