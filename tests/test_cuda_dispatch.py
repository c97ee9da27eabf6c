"""The CUDA dispatch rule (ops.cuda_path, docs/cuda.md's table), which needs no GPU to check."""
import torch

from lowbit import ops


def test_cuda_path_table():
    T = ops.CUDA_CUBLAS_FROM_M
    bf16, fp32 = torch.bfloat16, torch.float32
    # weight-only: the kernel below the threshold for fp16/bf16; fp32 always dense + cuBLAS
    assert ops.cuda_path("w4a16", T["weight_only"] - 1, 4096, 4096, 128, bf16) == "kernel"
    assert ops.cuda_path("w3a16", T["weight_only"], 4096, 4096, 128, torch.float16) == "dense"
    assert ops.cuda_path("w4a16", 1, 4096, 4096, 128, fp32) == "dense"
    # integer / add-only: int8 cuBLAS only per-channel, from the threshold, K and N multiples of 8
    assert ops.cuda_path("w4a4", T["integer"] - 1, 4096, 4096, 4096, bf16) == "kernel"
    assert ops.cuda_path("ternary", T["integer"], 4096, 4096, 4096, fp32) == "int8"
    assert ops.cuda_path("w8a8", 4096, 4096, 4096, 128, bf16) == "kernel"   # grouped
    assert ops.cuda_path("w3a3", 4096, 4095, 4096, 4096, bf16) == "kernel"  # N not a multiple of 8
    assert ops.cuda_path("binary", 4096, 4096, 4100, 4100, bf16) == "kernel"  # K not a multiple of 8
