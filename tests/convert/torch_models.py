"""Tiny PyTorch models used by the conversion tests (importable as tests.convert.torch_models)."""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    def __init__(self, inputs: int = 4, hidden: int = 8, outputs: int = 3) -> None:
        super().__init__()
        self.fc1 = nn.Linear(inputs, hidden)
        self.fc2 = nn.Linear(hidden, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def build_mlp() -> MLP:
    torch.manual_seed(0)
    return MLP()


class TwoInputsTwoOutputs(nn.Module):
    """Token ids + float features; returns a dict (named outputs)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 6)
        self.proj = nn.Linear(6 + 2, 4)

    def forward(self, ids: torch.Tensor, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        pooled = self.emb(ids).mean(1)  # (batch, 6), sequence averaged away
        h = self.proj(torch.cat([pooled, feats], dim=1))
        return {"scores": h, "probs": torch.softmax(h, dim=1)}


def build_two_io() -> TwoInputsTwoOutputs:
    torch.manual_seed(0)
    return TwoInputsTwoOutputs()


class DataDependentBranch(nn.Module):
    """Tracing bakes in one branch; verification must catch it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return x * 2
        return x - 100


class FixedBatchReshape(nn.Module):
    """Reads the batch size as a Python int: tracing bakes the example's size into the graph."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = int(x.shape[0])
        return x.reshape(n, 2, 2).sum(-1) * 3


class BatchNormDropout(nn.Module):
    """Outputs depend on eval() (BatchNorm statistics, Dropout)."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(4)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4, 2)
        with torch.no_grad():
            self.bn.running_mean.fill_(0.5)
            self.bn.running_var.fill_(2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.bn(x)))


@torch.library.custom_op("modelport_test::mystery", mutates_args=())
def mystery(x: torch.Tensor) -> torch.Tensor:
    return x.clone() + 1


@mystery.register_fake
def _(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


class UnsupportedOp(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mystery(x)


def not_a_module() -> str:
    return "nope"


class Subtract(nn.Module):
    """Two inputs whose order matters: a - 2*b."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a - 2 * b


class KeywordOnly(nn.Module):
    """A keyword-only parameter: forward(image, *, meta)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(4, 2)

    def forward(self, image: torch.Tensor, *, meta: torch.Tensor) -> torch.Tensor:
        return self.fc(image) * meta


class EmbeddingIds(nn.Module):
    """nn.Embedding(50, 16) fed by an input named ``ids`` (looks like a token-id input)."""

    def __init__(self, shift: int = 0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.shift = shift
        self.emb = nn.Embedding(50, 16)
        self.fc = nn.Linear(16 + 4, 3)

    def forward(self, ids: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        looked_up = self.emb(ids + self.shift if self.shift else ids)
        return self.fc(torch.cat([looked_up.mean(1), feats], dim=1))


def build_embedding_ids() -> EmbeddingIds:
    return EmbeddingIds()


def build_shifted_embedding_ids() -> EmbeddingIds:
    """The ids are changed before the lookup, so no range can be read from the module."""
    return EmbeddingIds(shift=1)
