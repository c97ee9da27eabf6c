"""Write a whole folder so that readers never see it half written."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile


@contextlib.contextmanager
def atomic_folder(folder: "str | os.PathLike", prefix: str = ".lowbit-"):
    """Yield a fresh temporary folder beside `folder`; on success it replaces `folder` (an old
    one is removed first), on any error it is deleted and `folder` is left as it was."""
    folder = os.fspath(folder)
    parent = os.path.dirname(os.path.abspath(folder))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=prefix, dir=parent)
    try:
        yield tmp
        if os.path.isdir(folder):
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
