"""A small CNN for scikit-learn's bundled 8x8 digits: trains in seconds on a CPU, no downloads.

    python -m examples.digits_cnn OUT_DIR     # trains, writes OUT_DIR/digits_cnn.pt (state_dict)
                                              # and OUT_DIR/digits_{calib,test}.npz / labels.npy

Used by the demo, the tests and the benchmarks as the "real CNN" beside MiniLM.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn


class DigitsCNN(nn.Module):
    """Conv-BN-ReLU x2, max-pool, Dense head. Input: (batch, 1, 8, 8) float32 in [0, 1]."""

    def __init__(self, channels: int = 32, hidden: int = 64, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels * 2, 3, padding=1),
            nn.BatchNorm2d(channels * 2),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * 2 * 4 * 4, hidden),
            nn.ReLU(),
            nn.Linear(hidden, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def load_digits_split(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test); x as float32 (n, 1, 8, 8) scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None, :, :]
    y = d.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(x))
    n_test = 360
    test, train = idx[:n_test], idx[n_test:]
    return x[train], y[train], x[test], y[test]


def train(
    model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int = 8, seed: int = 0, lr: float = 3e-3
) -> nn.Module:
    """Plain Adam training; a few seconds on 2 CPU cores."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model.train()
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), 64):
            b = perm[i : i + 64]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xt[b]), yt[b])
            loss.backward()
            opt.step()
    return model.eval()


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    with torch.no_grad():
        return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def build_trained(seed: int = 0, epochs: int = 8) -> nn.Module:
    torch.manual_seed(seed)
    x, y, _, _ = load_digits_split(seed)
    return train(DigitsCNN(), x, y, epochs=epochs, seed=seed)


def save_trained(model: nn.Module, out_dir: str, weights_name: str) -> Path:
    """Write the state_dict plus the data files the demo and docs use: digits_calib.npz (256
    training images), digits_test.npz and digits_labels.npy. Returns the output directory."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    x_train, _, x_test, y_test = load_digits_split()
    torch.save(model.state_dict(), out / weights_name)
    np.savez(out / "digits_calib.npz", x=x_train[:256])
    np.savez(out / "digits_test.npz", x=x_test)
    np.save(out / "digits_labels.npy", y_test)
    return out


def main(out_dir: str) -> None:
    x_train, y_train, x_test, y_test = load_digits_split()
    torch.manual_seed(0)
    model = train(DigitsCNN(), x_train, y_train)
    out = save_trained(model, out_dir, "digits_cnn.pt")
    print(
        f"trained DigitsCNN: test accuracy {accuracy(model, x_test, y_test):.4f} -> {out}/digits_cnn.pt"
    )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "build/demo")
