"""Pruning PyTorch modules before export: torch-pruning for structure, masks for magnitude."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from examples.resnet_digits import ResNetDigits
from modelport.errors import OptimizationError, UsageError
from modelport.optimize.prune import PruneConfig, prune
from modelport.optimize.prune.torch import prune_module
from modelport.package import ModelPackage

FAST = {"latency_repeats": 3}
X = {"x": np.random.default_rng(0).random((4, 1, 8, 8)).astype(np.float32)}


def _conv_dims(pkg: ModelPackage) -> list[list[int]]:
    model = pkg.load_onnx()
    inits = {i.name: list(i.dims) for i in model.graph.initializer}
    return [inits[n.input[1]] for n in model.graph.node if n.op_type == "Conv"]


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_structured_resnet_residuals_and_bn(tmp_path):
    torch.manual_seed(0)
    model = ResNetDigits(width=8, upsample=1).eval()
    before = _params(model)
    r = prune(model, tmp_path / "half", PruneConfig.structured(0.5, **FAST), example=X)
    assert _params(model) == before  # the caller's module is untouched
    pruned = r.module
    assert pruned.layer1.conv1.weight.shape == (4, 4, 3, 3)
    assert pruned.layer3.conv2.weight.shape == (16, 16, 3, 3)
    assert pruned.layer2.bn2.num_features == 8
    # the residual add couples conv2 and the shortcut: both keep the same channels
    assert pruned.layer2.shortcut[0].weight.shape[0] == pruned.layer2.conv2.weight.shape[0]
    assert pruned.fc.weight.shape == (10, 16)  # head keeps its 10 outputs
    assert before / _params(pruned) > 3.5
    assert r.report.details["torch_params"]["before"] == before
    assert r.report.details["params"]["ratio"] > 3.5
    # the ONNX graph's channel dims shrank
    pkg = ModelPackage.load(tmp_path / "half")
    orig_dims = _conv_dims(ModelPackage.load(tmp_path / "half"))
    assert all(d[0] in (4, 8, 16) for d in orig_dims)
    assert [h["step"] for h in pkg.history] == ["convert", "prune"]
    assert pkg.manifest["verification"]["passed"] is True  # export of the pruned module verified
    assert pkg.signature.outputs[0].shape[-1] == 10
    onnx.checker.check_model(pkg.load_onnx())


def test_structured_grouped_conv_and_concat():
    class Cat(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(1, 8, 3, padding=1)
            self.c, self.bn, self.fc = (
                nn.Conv2d(16, 16, 3, padding=1),
                nn.BatchNorm2d(16),
                nn.Linear(16, 10),
            )

        def forward(self, x):
            h = torch.cat([self.a(x), self.b(x)], 1)
            return self.fc(torch.relu(self.bn(self.c(h))).mean((2, 3)))

    for model in (ResNetDigits(width=8, upsample=1, groups=2), Cat()):
        pruned, info = prune_module(model.eval(), X, PruneConfig.structured(0.5))
        with torch.no_grad():
            assert pruned(torch.from_numpy(X["x"])).shape == (4, 10)
        assert info["torch_params_after"] < info["torch_params_before"] / 2.5
    assert pruned.c.weight.shape == (8, 8, 3, 3) and pruned.a.weight.shape[0] == 4


def test_structured_blocker_is_named():
    class HardCoded(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 8, 3, padding=1)
            self.register_buffer("mix", torch.ones(8, 8, 1, 1))
            self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
            self.fc = nn.Linear(8, 10)

        def forward(self, x):
            h = nn.functional.conv2d(
                self.conv(x), self.mix
            )  # a raw tensor torch-pruning cannot see
            return self.fc(self.conv2(h).mean((2, 3)))

    with pytest.raises(OptimizationError) as exc:
        prune_module(HardCoded().eval(), X, PruneConfig.structured(0.5))
    assert "after layer 'conv'" in str(exc.value) and exc.value.layer == "conv"
    # excluding the layer that feeds it lets the rest be pruned
    pruned, _ = prune_module(HardCoded().eval(), X, PruneConfig.structured(0.5, exclude=("conv",)))
    assert pruned.conv.weight.shape[0] == 8 and pruned.conv2.weight.shape[0] == 4


def test_unknown_exclude_and_non_torch_source(tmp_path):
    with pytest.raises(UsageError) as exc:
        prune_module(ResNetDigits(8, 1).eval(), X, PruneConfig.structured(0.5, exclude=("layer9",)))
    assert "layer9" in str(exc.value) and "layer1.conv1" in str(exc.value)
    from modelport.convert import Source

    with pytest.raises(UsageError, match="convert it first"):
        prune(Source.sklearn("model.joblib"), tmp_path / "x", PruneConfig.magnitude(0.5))


def test_magnitude_torch_masks_survive_finetune(digits_data):
    x, y, _, _ = digits_data
    from examples.digits_cnn import DigitsCNN, train

    calls = []

    def finetune(m):
        calls.append(1)
        return train(m, x[:256], y[:256], epochs=1)

    torch.manual_seed(0)
    pruned, info = prune_module(
        DigitsCNN().eval(), {"x": x[:4]}, PruneConfig.magnitude(0.7, steps=2), finetune
    )
    assert len(calls) == 2
    rows = {r["name"]: r for r in info["layers"]}
    for name in ("features.0", "features.3", "head.1"):
        w = pruned.get_submodule(name).weight
        assert float((w == 0).float().mean()) == pytest.approx(0.7, abs=0.01)
        assert rows[name]["sparsity"] == pytest.approx(0.7, abs=0.01)
    assert not hasattr(pruned.features[0], "weight_orig")  # masks made permanent
    assert rows["head.3"]["sparsity"] == 0.0


@pytest.fixture(scope="module")
def small_resnet(digits_data):
    from examples.digits_cnn import train

    x, y, _, _ = digits_data
    torch.manual_seed(0)
    return train(ResNetDigits(width=16, upsample=1), x, y, epochs=4)


def test_structured_finetune_recovers_accuracy(small_resnet, digits_data, tmp_path):
    x, y, x_test, y_test = digits_data
    from examples.resnet_digits import train

    def finetune(m):
        return train(m, x, y, epochs=2, lr=1e-3)

    r = prune(
        small_resnet,
        tmp_path / "ft",
        PruneConfig.structured(0.5, steps=2, **FAST),
        eval_data={"x": x_test},
        labels=y_test,
        finetune=finetune,
    )
    acc = r.report.accuracy
    assert acc["before"] > 0.95
    assert acc["drop"] <= 0.02
    assert r.report.details["params"]["ratio"] > 3.0
    assert r.report.details["finetune"].endswith("finetune")
    assert r.report.config["steps"] == 2
