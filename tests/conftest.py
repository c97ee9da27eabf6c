import os

import pytest
import torch

import lowbit

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared")


@pytest.fixture(autouse=True)
def _fresh_seed(request):
    # Fresh random inputs per test, but reproducible from the test's name when one fails.
    torch.manual_seed(abs(hash(request.node.nodeid)) % (2**31))
    yield


def make_qlinear(scheme, N, K, group_size=None, bias=True, dtype=torch.float32):
    """A QLinear quantized from a random nn.Linear (never all zeros)."""
    lin = torch.nn.Linear(K, N, bias=bias)
    with torch.no_grad():
        lin.weight.normal_(0, 0.5)
        if bias:
            lin.bias.normal_(0, 0.5)
    return lowbit.QLinear.from_linear(lin, scheme, group_size)
