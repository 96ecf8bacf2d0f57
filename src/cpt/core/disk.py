"""A full disk, told apart from other write errors: ENOSPC/EDQUOT anywhere in an exception's chain (pyarrow and
safetensors put it in their message text only), or almost no space left where the write failed. Checkpoints
(cpt.train.ckpt_io) and dataset builds (cpt.dataset.build) report it as "no space left on device (ENOSPC)" with the
path and the free space."""

from __future__ import annotations

import errno
import os
from pathlib import Path

LOW_SPACE = 1 << 20  # after a failed write, less than this free on the file system = the disk was full
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def disk_full(exc: BaseException, where: Path) -> bool:
    seen = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS:
            return True
        text = str(e)
        if "No space left" in text or "os error 28" in text or "Disk quota exceeded" in text:
            return True
        e = e.__cause__ or e.__context__
    probe = Path(where)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        st = os.statvfs(probe)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < LOW_SPACE


def free_space(where: Path) -> str:
    probe = Path(where)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        st = os.statvfs(probe)
        return f"{st.f_bavail * st.f_frsize:,} of {st.f_blocks * st.f_frsize:,} bytes free"
    except OSError:
        return "free space unknown"
