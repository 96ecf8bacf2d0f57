"""The model card of a sealed final/: README.md with the Hub's YAML metadata (base_model, language, license,
library_name, tags) and the stage's own numbers (steps, tokens, last loss, world size, wall time from
the stage's metrics and run records copied into final/), plus the base model's license and notice files copied from
the stage's input model when it has them (LICENSE*, NOTICE*, USE_POLICY*: the LLaMA-2 license travels with every
derived checkpoint). huggingface_hub.ModelCard.load parses it (tests/unit/test_model_card.py).

The workflow writes the card when training ends, before the checkpoint is evaluated (rule train, then evaluate and
report): that card says where this point's bits per byte, benchmark scores and cost will be. Given the experiment's
report (report/report.json), the card carries them itself, benchmark scores with their protocol:
`cpt model-card --final DIR --report results/<experiment>/report/report.json`."""

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


PROTOCOL_KEYS = ("shots", "scoring", "prompt_style", "format", "split", "few_shot_source", "backend")


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def evaluation_section(point: str, report: dict | None) -> str:
    """Markdown: this point's bits per byte, benchmark scores (with protocol) and training cost from the experiment's
    report.json; where they will be when the report lacks them (the card is written before evaluation)."""
    report = report or {}
    bpb = (report.get("bpb") or {}).get(point) or {}
    bench = (report.get("benchmarks") or {}).get(point) or {}
    cost = next((s for s in (report.get("cost") or {}).get("stages") or [] if s.get("stage") == point), None)
    parts = ["## Evaluation\n"]
    if not (bpb or bench or cost):
        parts.append(f"Not evaluated when this card was written (the workflow writes it when training ends, before "
                     f"evaluation). This checkpoint is evaluation point `{point}`: bits per byte in "
                     f"`results/<experiment>/evaluate/{point}/bpb.json`, benchmark scores with their protocol in "
                     f"`evaluate/{point}/benchmarks.json` and `protocol.json`, the cost in "
                     f"`report/report.json` (`cost.stages`); all of them in `report/summary.md`. "
                     f"`cpt model-card --final <this directory> --report results/<experiment>/report/report.json` "
                     f"writes them into this card.\n")
        return "\n".join(parts)
    if bpb:
        parts.append("Bits per byte on held-out text (the same bytes for every point of the experiment):\n\n"
                     "| language | bits per byte | bytes | tokens |\n|---|---|---|---|")
        parts += [f"| {lang} | {_fmt(v.get('bits_per_byte'))} | {v.get('bytes')} | {v.get('tokens')} |"
                  for lang, v in sorted(bpb.items()) if isinstance(v, dict)]
        parts.append("")
    if bench:
        parts.append("Benchmark scores (accuracy, %) and the protocol of each:\n\n| benchmark | accuracy | questions | "
                     + " | ".join(PROTOCOL_KEYS) + " |\n|" + "---|" * (3 + len(PROTOCOL_KEYS)))
        for name, r in sorted(bench.items()):
            if not isinstance(r, dict):
                continue
            acc = r.get("accuracy", r.get("not_run", r.get("error", "")))
            parts.append(f"| {name} | {_fmt(acc)} | {r.get('num_questions', '')} | "
                         + " | ".join(_fmt(r.get(k, "")) for k in PROTOCOL_KEYS) + " |")
        parts.append("")
    if cost:
        parts.append("Training cost of this stage:\n\n| tokens | devices | device-hours | wall hours | USD | rate |\n"
                     "|---|---|---|---|---|---|\n"
                     f"| {cost.get('tokens')} | {cost.get('devices')} | {_fmt(cost.get('device_hours'))} | "
                     f"{_fmt(cost.get('wall_hours'))} | {_fmt(cost.get('cost_usd'))} | {cost.get('rate_source')} |\n")
    return "\n".join(parts)


def write_model_card(final: str | Path, stage: str, base_model: str, license: str = "other",
                     languages: tuple[str, ...] = ("zh", "en"), source_model: str | Path | None = None,
                     report: dict | None = None) -> Path:
    """Write final/README.md (and copy the notices of `source_model`); returns its path. `report`: the experiment's
    report.json, whose numbers for evaluation point `stage` the card then carries."""
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
            + evaluation_section(stage, report) + "\n"
            "## License\n\n" + (f"The base model's terms apply: {', '.join(notices)} (copied from the input model).\n"
                                if notices else f"License: {license}. The base model's own terms apply.\n"))
    path = final / "README.md"
    path.write_text("---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n\n" + body,
                    encoding="utf-8")
    return path


def refresh_model_card(final: str | Path, report_json: str | Path, stage: str | None = None) -> Path:
    """Rewrite final/README.md with the numbers of the experiment's report.json for this stage, keeping the card's
    metadata (base_model, license, languages). `stage` defaults to the card's `stage-<name>` tag, else the name of
    final/'s parent directory (results/<experiment>/train/<stage>/final)."""
    from huggingface_hub import ModelCard

    from cpt.core.errors import ConfigError

    final = Path(final)
    try:
        meta = ModelCard.load(final / "README.md").data.to_dict()
    except (OSError, ValueError):
        meta = {}
    tags = [t for t in meta.get("tags") or [] if str(t).startswith("stage-")]
    stage = stage or (tags[0][len("stage-"):] if tags else final.parent.name)
    try:
        report = json.loads(Path(report_json).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{report_json}: cannot read the report ({exc}); run the report rule or `cpt report`") from exc
    return write_model_card(final, stage, meta.get("base_model") or base_model_name(final),
                            license=meta.get("license") or "other",
                            languages=tuple(meta.get("language") or ("zh", "en")), report=report)
