"""CARTL's official WideResNets load into the zoo's ``WideResNet`` and compute the same function.

The reference below is written from the paper's description of its networks (Chen et al.,
"CARTL: Cooperative Adversarially-Robust Transfer Learning", ICML 2021, and its official
``src/networks/wrn.py`` / ``parseval_wrn.py`` layout): pre-activation wide blocks with
LeakyReLU(0.1), a 1×1 shortcut of the activated input where the shape changes, a final
BN + LeakyReLU, 8×8 average pooling and ``fc``; a NEFT output averages the residual branches of
its last k blocks, its spectral scaling already folded into the saved weights.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_robust.models.checkpoint import load_weights
from lit_robust.models.wide_resnet import WideResNet, wrn_28_4


class ReferenceBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, averaged: bool) -> None:
        super().__init__()
        self.bn1, self.relu1 = nn.BatchNorm2d(cin), nn.LeakyReLU(0.1)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2, self.relu2 = nn.BatchNorm2d(cout), nn.LeakyReLU(0.1)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.equal = cin == cout
        self.convShortcut = None if self.equal else nn.Conv2d(cin, cout, 1, stride, 0,
                                                              bias=False)
        self.averaged = averaged

    def forward(self, x: Tensor) -> Tensor:
        if self.equal:
            out = self.relu1(self.bn1(x))
        else:
            x = self.relu1(self.bn1(x))
            out = x
        out = self.conv2(self.relu2(self.bn2(self.conv1(out))))
        shortcut = x if self.equal else self.convShortcut(x)
        return 0.5 * shortcut + 0.5 * out if self.averaged else shortcut + out


class ReferenceLayer(nn.Module):
    def __init__(self, blocks: list[ReferenceBlock]) -> None:
        super().__init__()
        self.layer = nn.Sequential(*blocks)


class ReferenceWRN(nn.Module):
    """WRN-depth-width of CARTL's code; the last ``averaged`` of its 3n + 2 blocks average."""

    def __init__(self, depth: int, width: int, num_classes: int, averaged: int = 0) -> None:
        super().__init__()
        n = (depth - 4) // 6
        channels = [16, 16 * width, 32 * width, 64 * width]
        total = 3 * n + 2
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        number = 0
        for stage in range(3):
            blocks = []
            for i in range(n):
                number += 1
                blocks.append(ReferenceBlock(channels[stage] if i == 0 else channels[stage + 1],
                                             channels[stage + 1], (1, 2, 2)[stage] if i == 0
                                             else 1, averaged=number + averaged > total))
            setattr(self, f"block{stage + 1}", ReferenceLayer(blocks))
        self.bn1, self.relu = nn.BatchNorm2d(channels[3]), nn.LeakyReLU(0.1)
        self.fc = nn.Linear(channels[3], num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.block3.layer(self.block2.layer(self.block1.layer(self.conv1(x))))
        out = F.avg_pool2d(self.relu(self.bn1(out)), 8)
        return self.fc(out.flatten(1))


def _randomized(reference: ReferenceWRN) -> ReferenceWRN:
    """Non-trivial BatchNorm statistics and affine parameters, in eval mode."""
    generator = torch.Generator().manual_seed(1)
    for module in reference.modules():
        if isinstance(module, nn.BatchNorm2d):
            size = module.num_features
            module.running_mean.copy_(0.2 * torch.randn(size, generator=generator))
            module.running_var.copy_(0.5 + torch.rand(size, generator=generator))
            module.weight.data.copy_(0.5 + torch.rand(size, generator=generator))
            module.bias.data.copy_(0.2 * torch.randn(size, generator=generator))
    return reference.eval()


@pytest.mark.parametrize("averaged", [0, 4])
def test_official_state_dict_gives_the_official_logits(averaged: int, tmp_path: Path) -> None:
    torch.manual_seed(0)
    reference = _randomized(ReferenceWRN(28, 1, 10, averaged=averaged))
    torch.save(reference.state_dict(), tmp_path / "cartl.pt")
    ours = WideResNet(28, 1, num_classes=10, activation="leaky_relu", average_last_k=averaged)
    load_weights(ours, tmp_path / "cartl.pt")  # strict: the same keys
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), reference(x), rtol=1e-5, atol=1e-5)
        # the plants: ReLU instead of LeakyReLU, or plain sums in a NEFT output
        relu = WideResNet(28, 1, num_classes=10, average_last_k=averaged)
        load_weights(relu, tmp_path / "cartl.pt")
        assert not torch.allclose(relu.eval()(x), reference(x), atol=1e-3)
        if averaged:
            summed = WideResNet(28, 1, num_classes=10, activation="leaky_relu")
            load_weights(summed, tmp_path / "cartl.pt")
            assert not torch.allclose(summed.eval()(x), reference(x), atol=1e-3)


def test_average_last_k_counts_the_cartl_blocks() -> None:
    net = wrn_28_4(activation="leaky_relu", average_last_k=6)  # 14 blocks: residual 9..12
    averaged = [getattr(block, "average_branches", None) for block in net.blocks()]
    assert averaged == [False] * 8 + [True] * 4 + [None, None]
    assert isinstance(net.relu, nn.LeakyReLU) and net.relu.negative_slope == 0.1
    with pytest.raises(ValueError, match="average_last_k"):
        wrn_28_4(average_last_k=15)
    with pytest.raises(ValueError, match="activation"):
        wrn_28_4(activation="gelu")  # type: ignore[arg-type]
