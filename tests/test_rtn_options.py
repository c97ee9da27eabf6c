"""RTN's per-group quantizer options used by GPTQ: symmetric weight-only grid and the MSE range search."""
import pytest
import torch

from lowbit import formats, get_scheme
from lowbit.quant.rtn import group_params, mse_group_params, quantize_weight


def _w(seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(40, 128, generator=g) * 0.02
    w[:, 3] *= 20  # an outlier column: clipping it helps the other weights
    return w


def test_symmetric_weight_only_zero_is_middle_code():
    s = get_scheme("w4a16")
    scale, zero = group_params(_w(), s, sym=True)
    assert torch.all(zero == 8)
    amax = _w().abs().amax(1)
    assert torch.allclose(scale.float(), (2 * amax / 15).half().float())


@pytest.mark.parametrize("scheme", ["w4a16", "w3a16", "w4a4"])
def test_mse_search_never_worse_than_minmax(scheme):
    s = get_scheme(scheme)
    w = _w()
    errs = []
    for mse in (False, True):
        codes, scales, zeros = quantize_weight(w, s, 128, mse=mse)
        wq = formats.dequantize(formats.pack(codes, s), scales, zeros, s, 128, 128)
        errs.append(((wq - w).abs() ** 2.4).sum(1))
    assert torch.all(errs[1] <= errs[0] + 1e-12) and errs[1].sum() < errs[0].sum()


def test_mse_search_rejects_addonly():
    with pytest.raises(ValueError, match="scheme"):
        mse_group_params(_w(), get_scheme("ternary"))
