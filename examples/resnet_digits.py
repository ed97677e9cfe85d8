"""A small ResNet-style CNN (residual blocks, BatchNorm) for scikit-learn's 8x8 digits.

    python -m examples.resnet_digits OUT_DIR   # trains, writes OUT_DIR/resnet_digits.pt (state_dict),
                                               # OUT_DIR/digits_{calib,test}.npz and digits_labels.npy

The input is (batch, 1, 8, 8) float32 in [0, 1], like ``examples.digits_cnn``; the network first
upsamples it (nearest, ``upsample`` times) so that the convolutions have enough work for latency to
be meaningful on ONNX Runtime (at the defaults: over 1 ms at batch 8 on 2 CPU cores).

``finetune`` is the recovery hook for ``modelport prune --finetune examples.resnet_digits:finetune``:
it receives a (pruned) module and returns it trained for a few epochs on the digits training split.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from torch import nn

from examples.digits_cnn import accuracy, load_digits_split, save_trained

__all__ = [
    "BasicBlock",
    "ResNetDigits",
    "accuracy",
    "build_trained",
    "finetune",
    "load_digits_split",
    "train",
]


class BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN plus a shortcut (1x1 conv + BN when the shape changes), then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False, groups=groups)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + self.shortcut(x))


class ResNetDigits(nn.Module):
    """Upsample, stem conv, three residual stages (width, 2*width, 4*width; strides 1, 2, 2),
    global average pooling and a linear classifier head ``fc``. ``groups`` > 1 makes each block's
    second convolution grouped (to exercise grouped-conv pruning)."""

    def __init__(
        self, width: int = 24, upsample: int = 2, classes: int = 10, groups: int = 1
    ) -> None:
        super().__init__()
        self.upsample = (
            nn.Upsample(scale_factor=upsample, mode="nearest") if upsample > 1 else nn.Identity()
        )
        self.stem = nn.Sequential(
            nn.Conv2d(1, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.layer1 = BasicBlock(width, width, 1, groups)
        self.layer2 = BasicBlock(width, width * 2, 2, groups)
        self.layer3 = BasicBlock(width * 2, width * 4, 2, groups)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width * 4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(self.upsample(x))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def train(
    model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int = 4, seed: int = 0, lr: float = 3e-3
) -> nn.Module:
    """Adam on full batches of 64 (the last partial batch of an epoch is dropped: torch 2.13's CPU
    backward crashed on this network with some odd batch sizes, e.g. 29)."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model.train()
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt) - 63, 64):
            b = perm[i : i + 64]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xt[b]), yt[b])
            loss.backward()
            opt.step()
    return model.eval()


def finetune(model: nn.Module, epochs: int = 2, lr: float = 1e-3) -> nn.Module:
    """Recovery fine-tune: a few epochs of Adam on the digits training split; returns the model."""
    x, y, _, _ = load_digits_split()
    return train(model, x, y, epochs=epochs, lr=lr)


def build_trained(width: int = 24, upsample: int = 2, epochs: int = 4, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    x, y, _, _ = load_digits_split(seed)
    return train(ResNetDigits(width, upsample), x, y, epochs=epochs, seed=seed)


def main(out_dir: str) -> None:
    _, _, x_test, y_test = load_digits_split()
    model = build_trained()
    out = save_trained(model, out_dir, "resnet_digits.pt")
    print(
        f"trained ResNetDigits: test accuracy {accuracy(model, x_test, y_test):.4f} -> {out}/resnet_digits.pt"
    )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "build/demo")
