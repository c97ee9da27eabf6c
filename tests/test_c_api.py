"""A C program links the installed core library and calls the kernels through the C API:
the proof that a serving stack can embed lowbit without Python."""
import os
import shutil
import subprocess

import pytest

import lowbit

HERE = os.path.dirname(os.path.abspath(__file__))


def test_c_program_links_and_passes(tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    assert cc, "a C compiler is needed to build tests/c_api/embed.c"
    assert os.path.isfile(lowbit.get_library()), "liblowbit_core.a is missing from the installed package"
    assert os.path.isfile(os.path.join(lowbit.get_include(), "lowbit", "lowbit.h"))
    exe = tmp_path / "embed"
    subprocess.run([cc, "-std=c99", "-Wall", "-Werror", os.path.join(HERE, "c_api", "embed.c"),
                    "-I", lowbit.get_include(), lowbit.get_library(), "-lstdc++", "-lm", "-lpthread", "-ldl",
                    "-o", str(exe)], check=True)
    for isa in lowbit.backend_info()["cpu_isa_supported"]:
        r = subprocess.run([str(exe)], capture_output=True, text=True, env={**os.environ, "LOWBIT_ISA": isa})
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"cpu isa {isa}" in r.stdout and "ok: 0 failures" in r.stdout
