"""Tensor parallelism for the torch engine (`plugin: 3d` with `tp > 1` under `train.engine: torch`).

A 2-D DeviceMesh ("dp", "tp"), rank = dp_index x tp + tp_index. In every decoder layer the attention projections
q/k/v and the MLP's gate/up are column-parallel, o_proj and down_proj row-parallel (DTensor
`parallelize_module`); the heads a rank computes are its own (the model reshapes with -1 heads). Embeddings, norms
and the LM head stay whole on every tensor-parallel rank (their gradients are identical there). With more than one
data-parallel group the "dp" axis is FSDP2 shard-grad-op over the tensor-parallel DTensors (FSDP2 x TP).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

COLWISE = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.gate_proj", "mlp.up_proj")
ROWWISE = ("self_attn.o_proj", "mlp.down_proj")


def tp_mesh(device_type: str, tp: int):
    from torch.distributed.device_mesh import init_device_mesh

    world = dist.get_world_size()
    return init_device_mesh(device_type, (world // tp, tp), mesh_dim_names=("dp", "tp"))


def parallelize(model, layers: list, mesh) -> None:
    """Column / row parallel linear layers of every decoder layer on mesh["tp"]."""
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    plan = {**{name: ColwiseParallel() for name in COLWISE}, **{name: RowwiseParallel() for name in ROWWISE}}
    for layer in layers:
        parallelize_module(layer, mesh["tp"], plan)


def clip_grad_norm(params: list, max_norm: float) -> float:
    """Global L2 norm of gradients that are plain tensors or DTensors of different meshes (tensor-parallel 2-D,
    FSDP2's data-parallel 1-D), then clip to max_norm (torch.nn.utils.clip_grad_norm_ stacks the per-tensor norms,
    which cannot mix meshes). Each DTensor's norm is reduced by DTensor itself (its placements decide how)."""
    total = 0.0
    for p in params:
        n = torch.linalg.vector_norm(p.grad.detach(), dtype=torch.float32)
        if hasattr(n, "full_tensor"):
            n = n.full_tensor()
        total += float(n) ** 2
    norm = total ** 0.5
    coef = max_norm / (norm + 1e-6)
    if coef < 1.0:
        for p in params:
            p.grad.mul_(coef)
    return norm
