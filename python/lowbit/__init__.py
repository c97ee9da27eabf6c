"""lowbit: fast low-bit matrix multiplication for PyTorch models.

    import lowbit
    model = lowbit.quantize(model, scheme="w4a16")      # every nn.Linear -> QLinear
    lowbit.save(model, "model.lowbit.safetensors")
"""
__version__ = "0.1.0"

import os as _os

import torch as _torch

from . import _C
from .formats import SCHEMES, Scheme, get_scheme
from .nn import QLinear
from .model import load, quantize, save
from . import ops
from .interop import export_gptq, import_gptq

__all__ = ["QLinear", "quantize", "save", "load", "SCHEMES", "Scheme", "get_scheme", "backend_info",
           "set_num_threads", "get_num_threads", "set_cpu_isa", "get_include", "get_library", "ops",
           "export_gptq", "import_gptq"]


def set_num_threads(n: int):
    """Threads for lowbit's CPU kernels (default: torch.get_num_threads() at import)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected a positive int, got {n!r}")
    _C.set_num_threads(n)


def get_num_threads() -> int:
    return _C.get_num_threads()


def set_cpu_isa(isa: str):
    """Force a CPU kernel family: "scalar", "avx2" or "avx512" (LOWBIT_ISA does the same at start)."""
    if not isinstance(isa, str):
        raise TypeError(f"isa: expected str, got {type(isa).__name__}")
    if isa not in ("scalar", "avx2", "avx512"):
        raise ValueError(f"isa: unknown {isa!r}; choose scalar, avx2 or avx512")
    _C.set_cpu_isa(isa)


def backend_info() -> dict:
    """What this build and machine offer: versions, the CPU ISA in use, CUDA."""
    return {
        "version": __version__,
        "core_version": _C.version(),
        "format_version": _C.FORMAT_VERSION,
        "cpu_isa": _C.cpu_isa(),
        "cpu_isa_supported": _C.cpu_isa_supported().split(","),
        "num_threads": _C.get_num_threads(),
        "threads": f"OpenMP team ({_threads_runtime})" if _threads_runtime else "lowbit's own pool",
        "cuda_compiled": bool(_C.CUDA_COMPILED),
        "cuda_available": _torch.cuda.is_available(),
        "torch": _torch.__version__,
    }


def get_include() -> str:
    """Folder with lowbit/lowbit.h, for C/C++ programs that link the kernels."""
    return _os.path.join(_os.path.dirname(__file__), "include")


def get_library() -> str:
    """Path of the static core library liblowbit_core.a (CPU kernels, no Python, no torch)."""
    return _os.path.join(_os.path.dirname(__file__), "lib", "liblowbit_core.a")


_C.set_num_threads(_torch.get_num_threads())


def _torch_openmp_runtime():
    """Path of the GNU OpenMP runtime torch runs its CPU ops on, or None (another backend, no
    libgomp loaded, not Linux). lowbit's kernels then run on that runtime's threads."""
    if "ATen parallel backend: OpenMP" not in _torch.__config__.parallel_info():
        return None
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1]
                if "/libgomp" in path and ".so" in path:
                    return path
    except OSError:
        pass
    return None


# Share torch's OpenMP threads instead of a second pool that would wait for them
# (csrc/core/threads.cpp says why; LOWBIT_THREADS=pool keeps lowbit's own pool).
_threads_runtime = None
if _os.environ.get("LOWBIT_THREADS", "openmp") != "pool":
    _gomp = _torch_openmp_runtime()
    if _gomp and _C.use_openmp_runtime(_gomp):
        _threads_runtime = _gomp
