"""LayerNormFp32 and config_from_dict."""

from __future__ import annotations

import dataclasses

import numpy as np
import paddle
import pytest

from blip2_encoder_common import LayerNormFp32, config_from_dict


def test_layer_norm_fp32_computes_in_float32():
    norm = LayerNormFp32(8)
    x = paddle.randn([2, 8]) * 1000
    out = norm(x.astype("float16"))
    assert out.dtype == paddle.float16
    np.testing.assert_allclose(out.astype("float32").numpy(), norm(x).numpy(), atol=2e-3)


@dataclasses.dataclass
class Sizes:
    width: int = 8
    depth: int = 2


def test_config_from_dict_takes_its_own_keys_and_names_unknown_ones():
    assert config_from_dict(Sizes, {"width": 16}) == Sizes(width=16)
    with pytest.raises(ValueError, match=r"unknown Sizes keys: \['layers'\] \(known: \['depth', 'width'\]\)"):
        config_from_dict(Sizes, {"width": 16, "layers": 3})
