"""The run's cost: device-hours (GPU-hours on GPUs) and price per training stage, for the whole run, and a
projection of a whole run from its token count (settings: `report.cost`, workflow/schemas/report.schema.yaml).

Per stage: tokens = the `tokens` of the last row of train/<stage>/metrics.jsonl (what the stage saw);
throughput per device = the median `tokens_per_s` of its rows (the first, warm-up step left out when there are
more) divided by the world size in train/<stage>/run.json (`trainer.world_size`); a stage without that
measurement takes `assume_tokens_per_s` when set (stated as assumed), else it is listed without a cost. The
projection uses `assume_tokens_per_s`, else the mean measured rate. device-hours = tokens / (tokens/s per device) / 3600; wall hours = device-hours /
devices; cost = device-hours x `gpu_hour_usd`.
"""

from __future__ import annotations

import statistics
from typing import Mapping, Sequence

from cpt.core.schema import complete


def settings(section: Mapping | None) -> dict:
    """`report.cost` with the schema's defaults."""
    return complete("report.cost", section)


def measured_rate(rows: Sequence[Mapping], run: Mapping | None) -> tuple[float | None, int | None]:
    """(median tokens/s per device, world size) of one stage; (None, world) where it cannot be measured."""
    world = ((run or {}).get("trainer") or {}).get("world_size")
    rates = [float(r["tokens_per_s"]) for r in rows if r.get("tokens_per_s") is not None]
    rates = [x for x in (rates[1:] if len(rates) > 1 else rates) if x == x and x > 0]
    if not rates or not world:
        return None, world
    return statistics.median(rates) / int(world), int(world)


def stage_costs(train: Mapping[str, Sequence[Mapping]], runs: Mapping[str, Mapping | None], cfg: Mapping) -> list[dict]:
    """One entry per stage with metrics: tokens, rate, its source, devices, device-hours, wall hours, cost."""
    out = []
    for stage, rows in train.items():
        if not rows:
            continue
        tokens = int(rows[-1].get("tokens") or 0)
        rate, world = measured_rate(rows, runs.get(stage))
        source = "measured"
        if rate is None and cfg["assume_tokens_per_s"] is not None:
            rate, source = float(cfg["assume_tokens_per_s"]), "assumed"
        entry = {"stage": stage, "tokens": tokens, "devices": world, "tokens_per_s_per_device": rate,
                 "rate_source": source if rate else "unknown (no tokens_per_s or world size)"}
        if rate:
            dev_h = tokens / rate / 3600.0
            entry.update(device_hours=dev_h, wall_hours=dev_h / world if world else None,
                         cost_usd=dev_h * cfg["gpu_hour_usd"])
        out.append(entry)
    return out


def total(stages: Sequence[Mapping]) -> dict:
    known = [s for s in stages if "device_hours" in s]
    return {"tokens": sum(s["tokens"] for s in stages), "device_hours": sum(s["device_hours"] for s in known),
            "cost_usd": sum(s["cost_usd"] for s in known), "stages_without_rate": [s["stage"] for s in stages
                                                                                 if "device_hours" not in s]}


def projection(cfg: Mapping, devices_default: int | None, stages: Sequence[Mapping]) -> dict | None:
    """The whole run of `projection.tokens` tokens on `projection.devices` devices (default: the training
    resources), at `assume_tokens_per_s`, else at the mean measured rate of this run's stages."""
    proj = cfg["projection"]
    if not proj:
        return None
    rate, source = cfg["assume_tokens_per_s"], "assumed (report.cost.assume_tokens_per_s)"
    if rate is None:
        measured = [s["tokens_per_s_per_device"] for s in stages if s["rate_source"] == "measured"]
        rate = statistics.fmean(measured) if measured else None
        source = "measured on this run (mean of its stages)" if measured else "none: set report.cost.assume_tokens_per_s"
    devices = proj.get("devices") or devices_default
    out = {"tokens": proj["tokens"], "devices": devices, "tokens_per_s_per_device": rate, "rate_source": source,
           "published": proj.get("published")}
    if rate:
        dev_h = proj["tokens"] / rate / 3600.0
        out.update(device_hours=dev_h, wall_hours=dev_h / devices if devices else None,
                   cost_usd=dev_h * cfg["gpu_hour_usd"])
    return out



def _h(x) -> str:
    return "-" if x is None else f"{x:,.3f}" if x < 10 else f"{x:,.1f}"


def _usd(x) -> str:
    return "-" if x is None else f"${x:,.2f}"


def cost_rows(report: Mapping) -> tuple[list[str], list[list[str]]]:
    """The cost table: one row per stage, the total, and the projection (with the published figures)."""
    header = ["stage", "tokens", "devices", "tokens/s/device", "rate", "device-hours", "wall hours", "cost"]
    rows = []
    for s in report["stages"]:
        rate = s["tokens_per_s_per_device"]
        rows.append([s["stage"], f"{s['tokens']:,}", str(s["devices"] or "-"), "-" if rate is None else f"{rate:,.0f}",
                     s["rate_source"], _h(s.get("device_hours")), _h(s.get("wall_hours")), _usd(s.get("cost_usd"))])
    if report["stages"]:
        t = report["total"]
        rows.append(["whole run", f"{t['tokens']:,}", "", "", "", _h(t["device_hours"]), "", _usd(t["cost_usd"])])
    p = report.get("projection")
    if p:
        rate = p["tokens_per_s_per_device"]
        rows.append([f"projection: {p['tokens']:,.0f} tokens", f"{p['tokens']:,.0f}", str(p["devices"] or "-"),
                     "-" if rate is None else f"{rate:,.0f}", p["rate_source"], _h(p.get("device_hours")),
                     _h(p.get("wall_hours")), _usd(p.get("cost_usd"))])
        if p["published"]:
            rows.append(["published", "", "", "", p["published"], "", "", ""])
    return header, rows


def run_cost(train: Mapping[str, Sequence[Mapping]], runs: Mapping[str, Mapping | None], section: Mapping | None,
             devices_default: int | None = None, assume_tokens_per_s: float | None = None,
             gpu_hour_usd: float | None = None) -> dict:
    """Everything the report says about cost; the two keyword overrides win over `section` (CLI options)."""
    over = {k: v for k, v in (("assume_tokens_per_s", assume_tokens_per_s), ("gpu_hour_usd", gpu_hour_usd))
            if v is not None}
    cfg = settings({**(section or {}), **over})
    stages = stage_costs(train, runs, cfg)
    return {"gpu_hour_usd": cfg["gpu_hour_usd"], "stages": stages, "total": total(stages),
            "projection": projection(cfg, devices_default, stages)}
