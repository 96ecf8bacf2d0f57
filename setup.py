"""Only what pyproject.toml cannot say: the wheel carries copies of the repository files the library reads at run
time (cpt.core.shipped.SHIPPED: the config schema, the pinned sources) under cpt/_data/."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = ("workflow/schemas", "data/sources.yaml")  # = cpt.core.shipped.SHIPPED (a test checks they agree)


class BuildPyWithData(build_py):
    def run(self):
        super().run()
        target = Path(self.build_lib) / "cpt" / "_data"
        for rel in SHIPPED:
            src, dst = ROOT / rel, target / rel
            if not src.exists():
                raise FileNotFoundError(f"{src}: listed in setup.py SHIPPED but missing from the source tree")
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dst, dirs_exist_ok=True)
            else:
                shutil.copy2(src, dst)


setup(cmdclass={"build_py": BuildPyWithData})
