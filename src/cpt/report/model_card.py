"""The model card of a sealed final/: README.md with the Hub's YAML metadata (base_model, language, license,
library_name, tags) and the stage's own numbers (steps, tokens, last loss, world size, wall time from
the stage's metrics and run records copied into final/), plus the base model's license and notice files copied from the stage's input model
when it has them (LICENSE*, NOTICE*, USE_POLICY*: the LLaMA-2 license travels with every derived checkpoint).
huggingface_hub.ModelCard.load parses it (tests/unit/test_model_card.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from cpt.artifacts.stagedir import METRICS, RUN

NOTICE_PATTERNS = ("LICENSE*", "LICENCE*", "NOTICE*", "USE_POLICY*", "Notice*")


def copy_notices(src_model: str | Path, final: str | Path) -> list[str]:
    """Copy the license/notice files of the input model directory into final/ (names copied)."""
    src, dst = Path(src_model), Path(final)
    copied = []
    for pattern in NOTICE_PATTERNS:
        for f in sorted(src.glob(pattern)) if src.is_dir() else []:
            if f.is_file() and not (dst / f.name).exists():
                shutil.copyfile(f, dst / f.name)
                copied.append(f.name)
    return copied


def base_model_name(model: str | Path) -> str:
    """The base model a checkpoint descends from: the input model's own card's base_model, else its config's
    `_name_or_path` when that is a Hub id, else the directory name."""
    model = Path(model)
    try:
        from huggingface_hub import ModelCard

        name = ModelCard.load(model / "README.md").data.to_dict().get("base_model")
        if name:
            return str(name)
    except (OSError, ValueError):  # no card, or not one the Hub parser reads: fall through to config.json
        pass
    try:
        name = json.loads((model / "config.json").read_text(encoding="utf-8")).get("_name_or_path") or ""
    except (OSError, ValueError):
        name = ""
    return name if name and not name.startswith(("/", ".")) and name.count("/") == 1 else model.name


def _numbers(final: Path) -> dict:
    out: dict = {}
    metrics = final / METRICS
    if metrics.is_file():
        recs = [json.loads(x) for x in metrics.read_text(encoding="utf-8").splitlines() if x.strip()]
        if recs:
            out.update(steps=recs[-1].get("step"), tokens=sum(r.get("tokens", 0) or 0 for r in recs),
                       final_loss=recs[-1].get("loss"))
    run = final / RUN
    if run.is_file():
        data = json.loads(run.read_text(encoding="utf-8"))
        for key in ("world_size", "wall_seconds", "plugin"):
            value = data.get(key, (data.get("trainer") or {}).get(key) if isinstance(data.get("trainer"), dict) else None)
            if value is not None:
                out[key] = value
    return out


def write_model_card(final: str | Path, stage: str, base_model: str, license: str = "other",
                     languages: tuple[str, ...] = ("zh", "en"), source_model: str | Path | None = None) -> Path:
    """Write final/README.md (and copy the notices of `source_model`); returns its path."""
    final = Path(final)
    notices = copy_notices(source_model, final) if source_model else []
    meta = {"base_model": base_model, "language": list(languages), "license": license,
            "library_name": "transformers", "pipeline_tag": "text-generation",
            "tags": ["colossal-llama-2", "continual-pretraining", "llama", f"stage-{stage}"]}
    if license == "other":
        meta["license_name"] = "see-license-files" if notices else "unknown"
    nums = _numbers(final)
    rows = "\n".join(f"| {k} | {v} |" for k, v in nums.items()) or f"| (no {METRICS} / {RUN} in final/) | |"
    body = (f"# {final.parent.name}: stage `{stage}`\n\n"
            f"Continual pre-training of `{base_model}` with the Colossal-LLaMA-2 recipe (colossal-llama-cpt), "
            f"stage `{stage}`. A Hugging Face directory: `AutoModelForCausalLM.from_pretrained` and "
            "`AutoTokenizer.from_pretrained` open it without `trust_remote_code`.\n\n"
            "## This stage's numbers\n\n| | |\n|---|---|\n" + rows + "\n\n"
            "Bits per byte and benchmark scores of this checkpoint are in the experiment's report "
            "(`results/<experiment>/report/report.json`, `summary.md`), with their protocol.\n\n"
            "## License\n\n" + (f"The base model's terms apply: {', '.join(notices)} (copied from the input model).\n"
                                if notices else f"License: {license}. The base model's own terms apply.\n"))
    path = final / "README.md"
    path.write_text("---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n\n" + body,
                    encoding="utf-8")
    return path
