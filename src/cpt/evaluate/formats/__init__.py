"""Benchmark file formats, read from local directories the user brings (no network).

Every loader returns a `Benchmark`: subjects -> `Subject(dev=[...], test=[...])` of `Question`s, plus a
`skipped` counter (reason -> count) so nothing is dropped silently.

One module per format (the public releases' layouts): each defines `FORMAT = Format(name, load, instruction, ...)`
and is found here by its module name, so a new format is one module plus its test. `base` holds what they share.
"""

from __future__ import annotations

import importlib
import os
import pkgutil

from cpt.core.errors import EvalError
from cpt.evaluate.formats.base import LETTERS, SUBJECT_DISPLAY, Benchmark, Format, Question, Subject

__all__ = ["FORMATS", "LETTERS", "REGISTRY", "SUBJECT_DISPLAY", "Benchmark", "Format", "Question", "Subject",
           "get_format", "load_benchmark"]


def _discover() -> dict[str, Format]:
    found: dict[str, Format] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name in ("base", "names"):  # shared helpers, not formats
            continue
        fmt = getattr(importlib.import_module(f"{__name__}.{info.name}"), "FORMAT", None)
        if not isinstance(fmt, Format):
            raise TypeError(f"{__name__}.{info.name}: a format module defines FORMAT = Format(...)")
        if fmt.name in found:
            raise TypeError(f"{__name__}.{info.name}: format {fmt.name!r} is registered twice")
        found[fmt.name] = fmt
    return found


REGISTRY: dict[str, Format] = _discover()
FORMATS = tuple(REGISTRY)


def get_format(name: str) -> Format:
    if name not in REGISTRY:
        raise EvalError(f"unknown benchmark format {name!r}; known: {', '.join(FORMATS)}")
    return REGISTRY[name]


def load_benchmark(fmt: str, path: str | os.PathLike | None, name: str | None = None,
                   split: str | None = None, four_choice_only: bool | None = None) -> Benchmark:
    """Load one benchmark by format name (see FORMATS). four_choice_only: AGIEval / GAOKAO's published 4-choice
    restriction (None = the format's default, on); an error for a format without that rule."""
    f = get_format(fmt)
    if path is None and f.needs_path:
        raise EvalError(f"benchmark format {fmt!r} needs a `path` to the local data (nothing is downloaded)")
    if f.four_choice_only is None:
        if four_choice_only is not None:
            raise EvalError(f"benchmark format {fmt!r} has no 4-choice rule (four_choice_only is for "
                            f"{', '.join(n for n, x in REGISTRY.items() if x.four_choice_only is not None)})")
        return f.load(path, name or fmt, split)
    rule = f.four_choice_only if four_choice_only is None else bool(four_choice_only)
    return f.load(path, name or fmt, split, four_choice_only=rule)
