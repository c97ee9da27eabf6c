"""Every scheme round-trips through pack/unpack, and the C++ and pure-torch packers write
identical bytes; docs/formats.md's test vectors hold."""
import os
import re

import pytest
import torch

import lowbit
from lowbit import _C, formats

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "formats.md")


def c_pack(codes, scheme):
    s = formats.get_scheme(scheme)
    N, K = codes.shape
    out = torch.empty(N, formats.row_bytes(s, K), dtype=torch.uint8)
    codes = codes.to(torch.uint8).contiguous()
    _C.pack(s.id, codes.data_ptr(), N, K, out.data_ptr(), out.numel())
    return out


def c_unpack(packed, scheme, K):
    s = formats.get_scheme(scheme)
    N = packed.shape[0]
    out = torch.empty(N, K, dtype=torch.uint8)
    _C.unpack(s.id, packed.data_ptr(), N, K, out.data_ptr(), out.numel())
    return out


@pytest.mark.parametrize("scheme", list(lowbit.SCHEMES))
@pytest.mark.parametrize("N,K", [(1, 1), (3, 31), (5, 32), (7, 33), (17, 100), (2, 577), (4, 1024)])
def test_roundtrip_cpp_equals_python(scheme, N, K):
    s = lowbit.SCHEMES[scheme]
    codes = torch.randint(0, s.max_code + 1, (N, K), dtype=torch.uint8)
    py = formats.pack(codes, s)
    cpp = c_pack(codes, s)
    assert py.shape == (N, formats.row_bytes(s, K)) and py.dtype == torch.uint8
    assert torch.equal(py, cpp)
    assert torch.equal(formats.unpack(py, s, K), codes)
    assert torch.equal(c_unpack(cpp, s, K), codes)


@pytest.mark.parametrize("scheme", list(lowbit.SCHEMES))
def test_bits_are_real(scheme):
    """3-bit, 2-bit and 1-bit formats take 3, 2 and 1 bits a weight (not int8 in disguise)."""
    s = lowbit.SCHEMES[scheme]
    assert formats.row_bytes(s, 4096) * 8 == 4096 * s.wbits


@pytest.mark.parametrize("scheme", list(lowbit.SCHEMES))
def test_padding_codes_are_zero(scheme):
    s = lowbit.SCHEMES[scheme]
    K = 40
    codes = torch.full((2, K), s.max_code, dtype=torch.uint8)
    p = formats.pack(codes, s)
    padded = formats.unpack(p, s, formats.padded_k(K))
    assert torch.all(padded[:, K:] == 0) and torch.all(padded[:, :K] == s.max_code)


@pytest.mark.parametrize("scheme", ["ternary", "w3a3", "binary"])
def test_pack_rejects_out_of_range_codes(scheme):
    s = lowbit.SCHEMES[scheme]
    codes = torch.zeros(2, 32, dtype=torch.uint8)
    codes[1, 5] = s.max_code + 1
    with pytest.raises(ValueError, match="codes"):
        formats.pack(codes, s)
    with pytest.raises(ValueError, match="out of range"):
        c_pack(codes, s)


def _doc_vectors():
    text = open(DOCS, encoding="utf-8").read()
    rows = re.findall(r"^vector (\w+): codes=([0-9,]+) packed=([0-9a-f]+)$", text, flags=re.M)
    assert len(rows) >= len(lowbit.SCHEMES), "docs/formats.md lost its test vectors"
    return rows


def test_doc_vectors():
    for scheme, codes, packed in _doc_vectors():
        c = torch.tensor([[int(v) for v in codes.split(",")]], dtype=torch.uint8)
        want = bytes.fromhex(packed)
        assert bytes(formats.pack(c, scheme).flatten().tolist()) == want, scheme
        assert bytes(c_pack(c, scheme).flatten().tolist()) == want, scheme
