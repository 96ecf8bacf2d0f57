"""Training on the output of the reference's `prepare_pretrain_dataset.py` (ColossalAI applications/Colossal-LLaMA).

That script writes, under its `--data_output_dirs` directory, `arrow/part-00000`, `arrow/part-00001`, ... (one
`datasets` save_to_disk directory per input part, columns `input_ids` and `labels`, lists of integers), next to
`jsonl/` and `cache/`. It writes no manifest. `cpt train --dataset` accepts that directory (or its `arrow/`)
as it is: the parts, in name order, become the buckets (trained in that order, as the reference's bins were
meant to be), every part's columns and integer types are checked, and the manifest of what was read is written
beside the run (<output>/dataset_manifest.json), never into the user's data.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from cpt.core.errors import DatasetError

FORMAT = "colossal-llama prepare_pretrain_dataset.py"
PART = re.compile(r"part-(\d+)")
COLUMNS = ("input_ids", "labels")


def reference_parts(root: str | Path) -> list[Path]:
    """The part-* directories of a reference output (root/arrow/part-* or root/part-*), in order; [] if none."""
    root = Path(root)
    for d in (root / "arrow", root):
        if d.is_dir():
            parts = [p for p in d.iterdir() if p.is_dir() and PART.fullmatch(p.name)]
            if parts:
                return sorted(parts, key=lambda p: int(PART.fullmatch(p.name).group(1)))
    return []


def _check_part(part: Path, ds) -> dict:
    import pyarrow as pa
    import pyarrow.compute as pc

    missing = [c for c in COLUMNS if c not in ds.column_names]
    if missing:
        raise DatasetError(f"{part}: missing column(s) {missing} (columns: {ds.column_names}); a "
                           f"prepare_pretrain_dataset.py part has input_ids and labels")
    table = ds.data.table if hasattr(ds.data, "table") else ds.data
    lengths = {}
    for col in COLUMNS:
        typ = table.schema.field(col).type
        if not (pa.types.is_list(typ) or pa.types.is_large_list(typ)) or not pa.types.is_integer(typ.value_type):
            raise DatasetError(f"{part}: column {col} is {typ}, expected a list of integers (token ids)")
        lengths[col] = pc.list_value_length(table.column(col))
    if len(ds) == 0:
        raise DatasetError(f"{part}: no sequences")
    if not pc.all(pc.equal(lengths["input_ids"], lengths["labels"])).as_py():
        bad = pc.index(pc.equal(lengths["input_ids"], lengths["labels"]), False).as_py()
        raise DatasetError(f"{part}: row {bad}: labels and input_ids differ in length")
    ids = pc.list_flatten(table.column("input_ids"))
    if pc.min(ids).as_py() < 0:
        raise DatasetError(f"{part}: negative token id in input_ids")
    return {"sequences": len(ds), "tokens": int(pc.sum(lengths["input_ids"]).as_py()),
            "longest": int(pc.max(lengths["input_ids"]).as_py()), "max_token_id": int(pc.max(ids).as_py())}


def reference_manifest(root: str | Path, parts: list[Path] | None = None) -> tuple[dict, list]:
    """(manifest, datasets) of a reference output: buckets = the parts (absolute paths) in order."""
    import datasets

    root = Path(root)
    parts = reference_parts(root) if parts is None else parts
    if not parts:
        raise DatasetError(f"{root}: neither manifest.json (a `cpt prepare-pretrain` dataset) nor part-* "
                           f"directories (a prepare_pretrain_dataset.py output, or its arrow/)")
    loaded, facts = [], []
    for part in parts:
        try:
            ds = datasets.load_from_disk(str(part))
        except (FileNotFoundError, ValueError) as exc:
            raise DatasetError(f"{part}: not a datasets save_to_disk directory ({exc})") from None
        if not isinstance(ds, datasets.Dataset):
            raise DatasetError(f"{part}: a DatasetDict; expected one Dataset per part")
        facts.append({"name": part.name, "path": str(part.resolve()), **_check_part(part, ds)})
        loaded.append(ds)
    manifest = {"format": FORMAT, "root": str(root.resolve()), "buckets": [f["path"] for f in facts],
                "parts": facts, "sequences": sum(f["sequences"] for f in facts),
                "tokens": sum(f["tokens"] for f in facts), "max_length": None,
                "longest": max(f["longest"] for f in facts), "max_token_id": max(f["max_token_id"] for f in facts)}
    return manifest, loaded


def write_beside_run(manifest: dict, output: str | Path) -> Path:
    """<output>/dataset_manifest.json: what a run read from a reference output (the user's data stays as it is)."""
    path = Path(output) / "dataset_manifest.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
