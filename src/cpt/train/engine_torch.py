"""`train.engine: torch`: PyTorch's own engine (no ColossalAI): DDP, FSDP2 `fully_shard`, Distributed Checkpoint.

- Wrapping (`wrap_model`, before the optimizer is built: FSDP2 replaces the parameters by sharded DTensors): DDP
  for `replicate`; for `shard_grad_op` / `full_shard` every decoder layer, then the root, is `fully_shard`ed on a
  1-D mesh over all ranks with `reshard_after_forward` False / True (ZeRO-2 / ZeRO-3 analogues) and, in bf16, a
  `MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)` over the fp32 parameters. `train.compile` compiles
  every decoder layer first. Activation checkpointing is the model's own (train.grad_checkpointing).
- Accumulation without sync: DDP's `no_sync`, FSDP2's `set_requires_gradient_sync(False)`.
- Checkpoints: `model/` and `optimizer/` are DCP directories (each rank writes its shards; `.metadata` by rank 0)
  inside the project's checkpoint directory, so the manifest covers them. Loading reads `.metadata` with an
  unpickler that builds only DCP's metadata classes (a planted payload is refused, never run); the tensor files
  are raw bytes and torch's weights-only loads. DCP reshards on load: any world size resumes any checkpoint.
- Export: the full state dict gathered to rank 0, written by `save_pretrained` as safetensors shards.
"""

from __future__ import annotations

import contextlib
import pickle
from pathlib import Path

import torch
import torch.distributed as dist

from cpt.train.engine import Engine

SHARD_SIZE = "4GB"

# what a DCP .metadata file may build (torch 2.13): its own dataclasses, sizes, dtypes, layouts, paths
_ALLOWED = {
    ("torch", "Size"), ("torch.serialization", "_get_layout"),
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
    ("pathlib", "PosixPath"), ("pathlib", "PurePosixPath"), ("pathlib", "WindowsPath"), ("pathlib", "PureWindowsPath"),
    ("collections", "OrderedDict"),
}


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED or module == "torch.distributed.checkpoint.metadata":
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        raise pickle.UnpicklingError(f"DCP metadata refers to {module}.{name}, which a checkpoint's metadata never "
                                     f"holds")


def read_metadata(path: str):
    """A DCP directory's .metadata through the restricted unpickler (pickle.UnpicklingError for anything else)."""
    with open(Path(path) / ".metadata", "rb") as f:
        return _MetadataUnpickler(f).load()


def _safe_reader(path: str):
    """A DCP FileSystemReader whose .metadata is read by the restricted unpickler (DCP's own uses pickle.load).
    The metadata is read once here first: DCP would wrap the refusal in its own CheckpointException."""
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import StorageMeta

    read_metadata(path)

    class SafeReader(FileSystemReader):
        def read_metadata(self, *args, **kwargs):
            metadata = read_metadata(path)
            if getattr(metadata, "storage_meta", None) is None:
                metadata.storage_meta = StorageMeta()
            metadata.storage_meta.load_id = self.load_id
            return metadata

    return SafeReader(path)


def decoder_layers(model) -> list:
    """The repeated blocks of a Hugging Face causal LM (model.model.layers for LLaMA-like models)."""
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None:
        from cpt.core.errors import TrainError

        raise TrainError(f"train.engine 'torch': {type(model).__name__} has no model.layers to shard or compile")
    return list(layers)


class TorchEngine(Engine):
    name = "torch"

    def __init__(self, traits, device_type: str):
        self.traits = traits
        self.cfg = traits.cfg
        self.dev = device_type
        self.model = None  # the wrapped model (the optimizer state dict is keyed through it)
        self.fsdp = traits.sharded  # FSDP2 wraps the model (also on the dp axis of tensor parallelism)

    # ---- wrap ------------------------------------------------------------------------------------------------
    def wrap_model(self, model):
        if self.dev == "cuda":
            model = model.to(torch.device("cuda", torch.cuda.current_device()))
        if self.cfg.compile:
            for layer in decoder_layers(model):
                layer.compile()
        if self.traits.tensor_parallel:
            from torch.distributed.fsdp import fully_shard

            from cpt.train.engine_tp import parallelize, tp_mesh

            mesh = tp_mesh(self.dev, self.cfg.tp)
            parallelize(model, decoder_layers(model), mesh)
            self.fsdp = mesh["dp"].size() > 1
            if self.fsdp:  # FSDP2 x TP: shard-grad-op over the data-parallel axis; bf16 by autocast
                for layer in decoder_layers(model):
                    fully_shard(layer, mesh=mesh["dp"], reshard_after_forward=False)
                fully_shard(model, mesh=mesh["dp"], reshard_after_forward=False)
        elif self.traits.sharded:
            from torch.distributed.device_mesh import init_device_mesh
            from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

            mesh = init_device_mesh(self.dev, (dist.get_world_size(),))
            mp = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
                  if self.cfg.precision == "bf16" else MixedPrecisionPolicy())
            reshard = self.traits.sharding == "full_shard"
            for layer in decoder_layers(model):
                fully_shard(layer, mesh=mesh, reshard_after_forward=reshard, mp_policy=mp)
            fully_shard(model, mesh=mesh, reshard_after_forward=reshard, mp_policy=mp)
        else:
            from torch.nn.parallel import DistributedDataParallel

            # as ColossalAI's TorchDDPPlugin is built (cpt.train.plugins.DDPTraits.kwargs)
            model = DistributedDataParallel(model, find_unused_parameters=False, broadcast_buffers=False)
        self.model = model
        return model

    def wrap(self, model, optimizer, scheduler):
        self.model = model
        return model, optimizer, scheduler

    def unwrap(self, model):
        return model.module if self.traits.replicated_params else model

    # ---- step ------------------------------------------------------------------------------------------------
    @property
    def supports_no_sync(self) -> bool:
        return True

    @contextlib.contextmanager
    def no_sync(self, model, optimizer):
        if self.traits.replicated_params:
            with model.no_sync():
                yield
            return
        if not self.fsdp:  # tensor parallel alone: no data-parallel gradient reduction to hold back
            yield
            return
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)

    def backward(self, loss, optimizer) -> None:
        loss.backward()

    def clip_and_step(self, optimizer):
        params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        max_norm = self.cfg.grad_clip if self.cfg.grad_clip > 0 else float("inf")
        if self.traits.tensor_parallel:  # DTensors of two meshes (and plain tensors): the engine's own norm
            from cpt.train.engine_tp import clip_grad_norm

            norm = clip_grad_norm(params, max_norm)
            optimizer.step()
            return norm
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        if hasattr(norm, "full_tensor"):
            norm = norm.full_tensor()
        optimizer.step()
        return float(norm)

    # ---- checkpoints: DCP directories --------------------------------------------------------------------------
    def _model_state(self, model):
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        return get_model_state_dict(model)

    def save_model(self, model, path, shard=True, use_safetensors=True):
        import torch.distributed.checkpoint as dcp

        dcp.save({"model": self._model_state(model)}, checkpoint_id=str(path))

    def save_optimizer(self, optimizer, path, shard=True):
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        dcp.save({"optimizer": get_optimizer_state_dict(self.model, optimizer)}, checkpoint_id=str(path))

    def load_model(self, model, path):
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import set_model_state_dict

        state = {"model": self._model_state(model)}
        dcp.load(state, storage_reader=_safe_reader(str(path)))
        set_model_state_dict(model, state["model"])

    def load_optimizer(self, optimizer, path):
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict, set_optimizer_state_dict

        state = {"optimizer": get_optimizer_state_dict(self.model, optimizer)}
        dcp.load(state, storage_reader=_safe_reader(str(path)))
        set_optimizer_state_dict(self.model, optimizer, state["optimizer"])

    def export_model(self, model, path):
        """Collective: gather the full weights (fp32 masters) to rank 0's CPU; rank 0 writes safetensors shards."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if dist.get_rank() == 0:
            inner = self.unwrap(model)
            # a plain module of the same class holds the gathered weights: save_pretrained then sees no DTensors
            inner.save_pretrained(path, state_dict=full, safe_serialization=True, max_shard_size=SHARD_SIZE)

    def facts(self) -> dict:
        return {"engine": self.name, "sharding": self.traits.sharding, "compile": self.cfg.compile,
                "torch": torch.__version__}
