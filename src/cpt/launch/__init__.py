"""How a training job starts: per-rule resources, the one builder of torchrun / srun + torchrun command lines
(cpt.launch.plan), the preemption-aware torchrun wrapper (cpt.launch.torchrun) and one training stage as the workflow
runs it (cpt.launch.stage)."""
