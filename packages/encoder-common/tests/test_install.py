"""Without paddle, the import says what to install."""

from __future__ import annotations

import subprocess
import sys


def test_a_missing_paddle_says_what_to_install():
    code = "import sys; sys.modules['paddle'] = None; import blip2_encoder_common"  # as if paddle were not installed
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ModuleNotFoundError: blip2-encoder-common needs PaddlePaddle")
    assert "pip install 'blip2-encoder-common[cpu]'" in last and "paddlepaddle-gpu" in last
