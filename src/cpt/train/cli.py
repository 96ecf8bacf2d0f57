"""`cpt train` / `python -m cpt.train`: train one stage (run under torchrun for more than one process)."""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path

import click

from cpt.core.errors import CptError, describe


def _rank_prefix() -> str:
    import os

    return f"[rank {os.environ.get('RANK', '0')}]"


def _die_with_launcher() -> None:
    """Under torchrun, this rank dies with it (torchrun starts each rank in its own session: a kill -9 of the
    launcher's process group would leave the ranks running, blocked in a collective, holding the output lock)."""
    import os

    if os.environ.get("TORCHELASTIC_RUN_ID") is not None:
        from cpt.core.procs import die_with_parent

        die_with_parent()


def _output_lock(output):
    """Rank 0 holds the lock on the stage directory (cpt.core.locks; a no-op when a parent process holds it)."""
    import contextlib
    import os

    from cpt.core.locks import writing

    return writing([output]) if os.environ.get("RANK", "0") == "0" else contextlib.nullcontext()


def run(config, model, dataset, output, overrides=(), benchmark_seq_len=None, benchmark_steps=None,
        progress=True, stage=None) -> int:
    """Library entry point (what the workflow script calls inside each torchrun worker). Returns the exit code."""
    from cpt.train.config import load_config

    t0 = time.time()
    cfg = load_config(config, overrides, stage)
    benchmark = None
    if benchmark_seq_len:
        benchmark = {"seq_len": int(benchmark_seq_len), "steps": int(benchmark_steps or 10)}
    elif dataset is None:
        raise click.UsageError("--dataset is required (or --benchmark-seq-len for random data)")
    with _output_lock(output):
        return _run(cfg, model, dataset, output, benchmark, progress, t0)


def _run(cfg, model, dataset, output, benchmark, progress, t0) -> int:
    import torch.distributed as dist

    from cpt.core.provenance import write_provenance
    from cpt.train.loop import train

    result = train(cfg, model, dataset, output, benchmark=benchmark, progress=progress)
    rank = dist.get_rank() if dist.is_initialized() else 0
    if rank == 0 and benchmark:
        steady = result.history[1:] or result.history
        tps = sorted(r["tokens_per_s"] for r in steady)
        summary = {"plugin": cfg.plugin, "precision": cfg.precision, "seq_len": benchmark["seq_len"],
                   "micro_batch_size": cfg.micro_batch_size, "world_size": dist.get_world_size(),
                   "steps": len(result.history), "tokens_per_s_median": tps[len(tps) // 2],
                   "mfu_median": (sorted(r["mfu"] for r in steady)[len(steady) // 2]
                                  if steady[0]["mfu"] is not None else None),
                   "loss_first": result.history[0]["loss"], "loss_last": result.history[-1]["loss"]}
        Path(output).mkdir(parents=True, exist_ok=True)
        (Path(output) / "benchmark.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        click.echo(json.dumps(summary))
    if rank == 0 and result.final_dir is not None:
        write_provenance(result.final_dir, "train", cfg.to_dict(),
                         inputs={"model": model, "dataset": dataset}, started=t0,
                         extra={"steps": result.step, "tokens": result.tokens,
                                "world_size": dist.get_world_size(),
                                "ranks_agree_params_sha256": result.params_sha256,
                                "padding_slots_per_epoch": result.padding_slots_per_epoch,
                                # the settings as they ran (also final/effective_config.json)
                                "effective_config": result.effective_config})
    if dist.is_initialized():
        dist.barrier()
        from cpt.train.peers import stop

        stop()  # the heartbeat's store connections close before the process group's
        dist.destroy_process_group()
    return result.exit_code


@click.command("train")
@click.option("--config", "config", type=click.Path(dir_okay=False), default=None,
              help="JSON/YAML file holding the stage's training section (the workflow's train_config.json), or an "
                   "experiment config with --stage")
@click.option("--stage", default=None, help="with an experiment --config: the stage (train.defaults + "
                                           "train.stages.<stage>, as the workflow merges them)")
@click.option("--model", type=click.Path(file_okay=False), default=None, help="HF model dir to start from. Required.")
@click.option("--dataset", type=click.Path(file_okay=False), default=None,
              help="the stage's bucketed dataset dir (manifest.json + bucket-NNNNN/)")
@click.option("--output", type=click.Path(file_okay=False), default=None,
              help="stage output dir: final/, checkpoints/, metrics.jsonl, tensorboard/. Required.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="override one training key, e.g. --set lr=3e-4 (`train.` may be left out; the value is parsed "
                   "with the schema's type). The keys, their meaning and defaults: workflow/schemas/"
                   "train.schema.yaml ($defs.settings, defaults); --print-config shows them all with their values.")
@click.option("--print-config", "print_config", is_flag=True,
              help="Print the resolved training settings (config + --set + schema defaults) as YAML and exit.")
@click.option("--benchmark-seq-len", type=int, default=None, help="benchmark mode: random tokens of this length")
@click.option("--benchmark-steps", type=int, default=10, show_default=True)
@click.option("--no-progress", is_flag=True, help="no progress bar")
def cli_train(config, stage, model, dataset, output, overrides, print_config, benchmark_seq_len, benchmark_steps,
              no_progress):
    """Train one stage (ColossalAI Booster). Rerunning the same command resumes from the latest checkpoint;
    SIGTERM/SIGUSR1 save a checkpoint and exit with code 75."""
    from cpt.core.options import require, show_config
    from cpt.train.progress import setup_rank_output

    setup_rank_output()
    _die_with_launcher()
    try:
        if print_config:
            from cpt.train.config import load_config

            show_config(load_config(config, overrides, stage).to_dict())
        require(**{"--model": model, "--output": output})
        code = run(config, model, dataset, output, overrides, benchmark_seq_len, benchmark_steps,
                   progress=not no_progress, stage=stage)
    except CptError as exc:
        click.echo(f"{_rank_prefix()} error: {describe(exc)}", err=True)
        sys.exit(2)
    except (click.ClickException, click.exceptions.Exit):
        raise
    except Exception as exc:
        from cpt.train.runtime import collective_failure

        hint = collective_failure(exc)
        if hint:
            click.echo(f"{_rank_prefix()} error: {hint}", err=True)
            sys.exit(1)
        click.echo(f"{_rank_prefix()} unexpected error:\n{traceback.format_exc()}", err=True)
        sys.exit(1)
    sys.exit(code)
