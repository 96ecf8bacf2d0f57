"""Row-split embeddings for a LoRA stage's `new_rows`: the rows of a grown vocabulary beyond the base model's
train in full while the base rows stay frozen (NewRowsEmbedding, NewRowsLinear, TiedHead; split_new_rows
installs them)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cpt.core.errors import TrainError


class NewRowsEmbedding(nn.Module):
    """An nn.Embedding split at row `n_base`: rows below it a frozen parameter, the rest a trainable one."""

    def __init__(self, weight: torch.Tensor, n_base: int, padding_idx: int | None = None):
        super().__init__()
        self.n_base = int(n_base)
        self.num_embeddings, self.embedding_dim = int(weight.shape[0]), int(weight.shape[1])
        self.padding_idx = padding_idx
        self.old_rows = nn.Parameter(weight[:n_base].detach().clone(), requires_grad=False)
        self.new_rows = nn.Parameter(weight[n_base:].detach().clone(), requires_grad=True)

    @property
    def weight(self) -> torch.Tensor:
        """The whole matrix (a copy; for reading)."""
        return torch.cat([self.old_rows, self.new_rows], 0)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        n = self.n_base
        old = F.embedding(ids.clamp(max=n - 1), self.old_rows)
        new = F.embedding((ids - n).clamp(min=0), self.new_rows)
        return torch.where((ids >= n).unsqueeze(-1), new, old)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, trainable rows >= {self.n_base}"


class NewRowsLinear(nn.Module):
    """An LM head (nn.Linear over the vocabulary) whose weight is `old_rows` (frozen) over `new_rows` (trainable)."""

    def __init__(self, weight: torch.Tensor, n_base: int, bias: nn.Parameter | None = None):
        super().__init__()
        self.n_base = int(n_base)
        self.out_features, self.in_features = int(weight.shape[0]), int(weight.shape[1])
        self.old_rows = nn.Parameter(weight[:n_base].detach().clone(), requires_grad=False)
        self.new_rows = nn.Parameter(weight[n_base:].detach().clone(), requires_grad=True)
        self.bias = bias

    @property
    def weight(self) -> torch.Tensor:
        return torch.cat([self.old_rows, self.new_rows], 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, torch.cat([self.old_rows, self.new_rows], 0), self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, trainable rows >= {self.n_base}"


class TiedHead(nn.Module):
    """The LM head of a model with tied embeddings as a view of the input embedding's weight (an nn.Embedding or a
    NewRowsEmbedding), without registering that weight a second time: each tensor is one optimizer parameter and
    one checkpoint tensor (a checkpoint holding the tied pair twice would share memory, which safetensors refuses)."""

    def __init__(self, embedding: nn.Module):
        super().__init__()
        self.__dict__["embedding"] = embedding  # not a submodule: the parameters belong to the embedding
        self.out_features, self.in_features = embedding.num_embeddings, embedding.embedding_dim
        self.bias = None

    @property
    def weight(self) -> torch.Tensor:
        return self.__dict__["embedding"].weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight)

    def extra_repr(self) -> str:
        return "tied to the input embedding"


def module_name(model: nn.Module, module: nn.Module) -> str:
    for name, m in model.named_modules():
        if m is module:
            return name
    raise TrainError(f"module {type(module).__name__} is not part of the model")


def set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def tied(model: nn.Module) -> bool:
    out, inp = model.get_output_embeddings(), model.get_input_embeddings()
    return out is not None and getattr(out, "weight", None) is getattr(inp, "weight", object())


def split_new_rows(model: nn.Module, n_base: int) -> dict:
    """Replace the input embedding (and the LM head) of an HF causal LM by row-split modules; returns their names."""
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    if not isinstance(emb, nn.Embedding):
        raise TrainError(f"train.lora.train_embeddings=new_rows: the input embedding is a {type(emb).__name__}, not "
                         f"an nn.Embedding")
    is_tied = tied(model)
    emb_name = module_name(model, emb)
    new_emb = NewRowsEmbedding(emb.weight, n_base, emb.padding_idx)
    names = {"embedding": emb_name}
    if head is not None:
        if not isinstance(head, nn.Linear) or head.weight.shape[0] != emb.weight.shape[0]:
            raise TrainError(f"train.lora.train_embeddings=new_rows: the output layer {type(head).__name__} is not a "
                             f"linear layer over the vocabulary")
        head_name = module_name(model, head)
        new_head = TiedHead(new_emb) if is_tied else NewRowsLinear(head.weight, n_base, head.bias)
        set_module(model, head_name, new_head)
        names["head"] = head_name
    set_module(model, emb_name, new_emb)
    names["tied"] = is_tied
    return names


