"""Files the library reads that live outside src/ in the repository (the config schema in workflow/schemas/, the
pinned sources in data/sources.yaml): in a checkout they are read where they are; an installed wheel carries a
copy under cpt/_data/ (setup.py's build_py puts it there), so `pip install colossal-llama-cpt` works outside a
checkout too."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
PACKAGED = Path(__file__).resolve().parents[1] / "_data"

# repository-relative paths copied into the wheel (setup.py reads this list)
SHIPPED = ("workflow/schemas", "data/sources.yaml")


def shipped_path(relative: str) -> Path:
    """`relative` (one of SHIPPED, or a path under one of them) in the checkout when there is one, else the copy
    inside the installed package."""
    in_repo = REPO_ROOT / relative
    if in_repo.exists():
        return in_repo
    return PACKAGED / relative
