"""A copy of the project (tracked + untracked, not ignored files) in a temp dir, as a fresh clone would be."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def project_copy(tmp_path) -> Path:
    dest = tmp_path / "repo"
    dest.mkdir()
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.split(b"\0")
    for name in filter(None, files):
        src = REPO / name.decode()
        if not src.is_file():
            continue
        target = dest / name.decode()
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(src.read_bytes())
    downloads = (REPO / "data" / "downloads").resolve()
    if not downloads.is_dir():
        pytest.fail("data/downloads is missing: run install.sh first (it fetches the pinned sources)")
    (dest / "data" / "downloads").symlink_to(downloads)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    return dest
