"""ColossalAI's JIT-compiled kernels for the GPU trainer: `python -m cpt.train.kernels --prebuild-kernels` builds
them once per node image (docs/hpc.md, "GPU nodes")."""

from __future__ import annotations

from cpt.core.errors import TrainError

# ---- ColossalAI's JIT-compiled kernels (GPU) ------------------------------------------------------------------
# The trainer's GPU optimizer, HybridAdam, loads both on construction (CPU Adam for offloaded states, fused Adam for
# GPU parameters), whatever the plugin. Built on first use with nvcc + ninja into
# ~/.cache/colossalai/torch_extensions/ (a few minutes); prebuilding once per node image avoids that in a job.
KERNEL_LOADERS = ("CPUAdamLoader", "FusedOptimizerLoader")


def prebuild_kernels(dry_run: bool = False) -> list[str]:
    """Compile (or load, when cached) the ColossalAI kernels the GPU trainer needs; returns what was done."""
    import torch

    done = []
    if dry_run:
        return [f"would build colossalai.kernel.kernel_loader.{name}" for name in KERNEL_LOADERS]
    if not torch.cuda.is_available():
        raise TrainError("prebuilding ColossalAI's kernels needs a CUDA GPU and nvcc (the CPU trainer uses torch's "
                         "AdamW and needs none)")
    import colossalai.kernel.kernel_loader as loaders

    for name in KERNEL_LOADERS:
        getattr(loaders, name)().load()
        done.append(f"built {name}")
    return done


def main(argv=None) -> int:
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m cpt.train.kernels",
                                 description="ColossalAI kernels for the GPU trainer")
    ap.add_argument("--prebuild-kernels", action="store_true", help="JIT-compile the kernels now (GPU + nvcc)")
    ap.add_argument("--dry-run", action="store_true", help="only list what would be built")
    a = ap.parse_args(argv)
    if not a.prebuild_kernels:
        ap.print_help()
        return 2
    try:
        for line in prebuild_kernels(a.dry_run):
            print(line)
    except TrainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
