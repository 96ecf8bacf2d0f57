"""The workflow's software environments for Snakemake's deployment methods, generated from requirements.lock.

    python -m cpt.workflow.software [--check]

writes (or, with --check, compares) three files under workflow/envs/:
  cpt.yaml              the conda environment every rule names (`conda:`), used with `snakemake --sdm conda`:
                        Python and pip from conda-forge, every package of the lock at its locked version via pip,
                        except colossalai;
  cpt.post-deploy.sh    run by Snakemake once the environment exists: colossalai with --no-deps (its metadata
                        pins torch<=2.5.1, which no resolver can satisfy next to the locked torch) and this project,
                        editable, also --no-deps: install.sh's route;
  cpt.def               an Apptainer definition (the Snakefile's `container:`, `snakemake --sdm apptainer`): the same
                        three steps as install.sh on python:<version>-slim, the project installed into the image.
Neither conda nor Apptainer is exercised by the tests; the tests only check that the files are those the lock
generates (config/README.md says so).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PYTHON = "3.11"  # the version install.sh's venv and CI use
PIP = "25.3"  # install.sh's pip
NO_DEPS = ("colossalai",)  # installed with --no-deps after the environment (see module docstring)
ENV_DIR = Path("workflow", "envs")
HEADER = "# Generated from requirements.lock by `python -m cpt.workflow.software`; do not edit (a test compares).\n"


def lock_pins(lock_text: str) -> list[str]:
    """The `name==version` lines of a lock file, in order; comments and blank lines dropped."""
    pins = []
    for line in lock_text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            if "==" not in line:
                raise ValueError(f"requirements.lock: not a pinned requirement: {line!r}")
            pins.append(line)
    return pins


def _name(pin: str) -> str:
    return pin.split("==", 1)[0].strip().lower().replace("_", "-")


def conda_environment(lock_text: str) -> str:
    pins = [p for p in lock_pins(lock_text) if _name(p) not in NO_DEPS]
    lines = [HEADER.rstrip("\n"), "# colossalai and this project: cpt.post-deploy.sh (--no-deps).",
             "channels:", "  - conda-forge", "  - nodefaults", "dependencies:",
             f"  - python={PYTHON}", f"  - pip={PIP}", "  - pip:"]
    lines += [f"      - {p}" for p in pins]
    return "\n".join(lines) + "\n"


def post_deploy(lock_text: str) -> str:
    extra = [p for p in lock_pins(lock_text) if _name(p) in NO_DEPS]
    return (
        "#!/usr/bin/env bash\n" + HEADER
        + "# Snakemake runs this inside the new conda environment (workflow/envs/cpt.yaml).\n"
        + "set -euo pipefail\n"
        + 'repo="$(cd "$(dirname "$0")/../.." && pwd)"\n'
        + "".join(f"python -m pip install --no-deps {p}\n" for p in extra)
        + 'python -m pip install --no-deps -e "$repo"\n'
    )


def apptainer_definition(lock_text: str) -> str:
    torch = next((p for p in lock_pins(lock_text) if _name(p) == "torch"), None)
    if torch is None:
        raise ValueError("requirements.lock: no torch pin")
    return (
        f"Bootstrap: docker\nFrom: python:{PYTHON}-slim-bookworm\n\n"
        + "".join(f"{line}\n" if line else "\n" for line in HEADER.rstrip("\n").split("\n"))
        + "# Build from the repository root:  apptainer build workflow/envs/cpt.sif workflow/envs/cpt.def\n"
        + "# Rebuild after changing src/ or requirements.lock (the project is installed into the image).\n\n"
        + "%files\n"
        + "".join(f"    {f} /opt/cpt/{f}\n" for f in ("requirements.lock", "pyproject.toml", "setup.py", "README.md",
                                                     "LICENSE", "MANIFEST.in", "src", "workflow/schemas",
                                                     "data/sources.yaml"))
        + "\n%post\n"
        + f"    python -m pip install --no-cache-dir pip=={PIP}\n"
        + "    # torch first and alone (from PyPI: the Linux wheel with CUDA), then the lock without a resolver\n"
        + f"    python -m pip install --no-cache-dir {torch}\n"
        + "    python -m pip install --no-cache-dir --no-deps -r /opt/cpt/requirements.lock\n"
        + "    python -m pip install --no-cache-dir --no-deps /opt/cpt\n"
        + "\n%environment\n    export PYTHONNOUSERSITE=1\n"
        + "\n%test\n    cpt --help >/dev/null\n"
    )


def generated(root: Path) -> dict[Path, str]:
    lock = (root / "requirements.lock").read_text(encoding="utf-8")
    return {ENV_DIR / "cpt.yaml": conda_environment(lock), ENV_DIR / "cpt.post-deploy.sh": post_deploy(lock),
            ENV_DIR / "cpt.def": apptainer_definition(lock)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cpt.workflow.software", description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=".", help="the repository root (default: .)")
    ap.add_argument("--check", action="store_true", help="exit 1 naming each file that differs from the lock's")
    args = ap.parse_args(argv)
    root = Path(args.root)
    stale = []
    for rel, text in generated(root).items():
        path = root / rel
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(str(rel))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            if path.suffix == ".sh":
                path.chmod(0o755)
    for rel in stale:
        print(f"{rel}: not what requirements.lock generates; run python -m cpt.workflow.software", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
