"""PyTorch eager twins of the CIFAR-scale networks, for the same-run peer of ``cnn_jax.tools.bench``.

torchvision has no CIFAR ResNets, pre-activation or wide ResNets, DenseNet-BC or LeNet, so these are written here
from the same papers and layer tables as our models (``cnn_jax.models.cifar_resnet``, ``preact_resnet``,
``densenet``, ``lenet``, ``mobilenet``): same layers, same widths, same parameter counts (:func:`build` asserts the
count against ours). Only the work matters: initialisation is PyTorch's default.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn


def _conv(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False)


class _ResNetBasic(nn.Module):
    """He et al. 2015 Sec. 4.2: conv-BN-ReLU-conv-BN + option-A shortcut (strided, zero channels appended), ReLU."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = _conv(cin, cout, 3, stride), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = _conv(cout, cout, 3), nn.BatchNorm2d(cout)
        self.stride, self.extra = stride, cout - cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        if self.stride != 1 or self.extra:
            x = nn.functional.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, 0, self.extra))
        return torch.relu(y + x)


class _PreActBasic(nn.Module):
    """BN-ReLU-conv3x3 twice; a 1x1 projection of the pre-activated input where the shape changes (WRN)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), _conv(cin, cout, 3, stride)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), _conv(cout, cout, 3)
        self.downsample = _conv(cin, cout, 1, stride) if stride != 1 or cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        preact = torch.relu(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(preact)
        return shortcut + self.conv2(torch.relu(self.bn2(self.conv1(preact))))


class _PreActBottleneck(nn.Module):
    """BN-ReLU-conv1x1 (strided) -> BN-ReLU-conv3x3 -> BN-ReLU-conv1x1 (x4), resnet-pre-act.lua's layout."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        width = cout // 4
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), _conv(cin, width, 1, stride)
        self.bn2, self.conv2 = nn.BatchNorm2d(width), _conv(width, width, 3)
        self.bn3, self.conv3 = nn.BatchNorm2d(width), _conv(width, cout, 1)
        self.downsample = _conv(cin, cout, 1, stride) if stride != 1 or cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        preact = torch.relu(self.bn1(x))
        shortcut = x if self.downsample is None else self.downsample(preact)
        y = self.conv1(preact)
        y = self.conv2(torch.relu(self.bn2(y)))
        return shortcut + self.conv3(torch.relu(self.bn3(y)))


class _CifarResNet(nn.Module):
    def __init__(self, block: Callable[[int, int, int], nn.Module], units: int, widths: tuple[int, ...],
                 num_classes: int, *, stem_width: int = 16, preact: bool):
        super().__init__()
        layers: list[nn.Module] = [_conv(3, stem_width, 3)]
        if not preact:
            layers += [nn.BatchNorm2d(stem_width), nn.ReLU()]
        cin = stem_width
        for stage, width in enumerate(widths):
            for unit in range(units):
                layers.append(block(cin, width, 2 if stage and not unit else 1))
                cin = width
        if preact:
            layers += [nn.BatchNorm2d(cin), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean((2, 3)))


class _DenseNetBC(nn.Module):
    """DenseNet-BC for CIFAR (Huang et al. 2017 Table 2): 3x3 stem of 2k channels, three blocks of bottleneck layers
    (BN-ReLU-1x1 4k, BN-ReLU-3x3 k), transitions BN-ReLU-1x1 (half the channels)-2x2 average pool."""

    def __init__(self, depth: int, growth: int, num_classes: int):
        super().__init__()
        per_block = (depth - 4) // 6
        channels = 2 * growth
        self.stem = _conv(3, channels, 3)
        self.blocks, self.transitions = nn.ModuleList(), nn.ModuleList()
        for b in range(3):
            layers = nn.ModuleList()
            for _ in range(per_block):
                layers.append(nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(), _conv(channels, 4 * growth, 1),
                                            nn.BatchNorm2d(4 * growth), nn.ReLU(), _conv(4 * growth, growth, 3)))
                channels += growth
            self.blocks.append(layers)
            if b < 2:
                self.transitions.append(nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(),
                                                      _conv(channels, channels // 2, 1), nn.AvgPool2d(2)))
                channels //= 2
        self.norm = nn.BatchNorm2d(channels)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for b, layers in enumerate(self.blocks):
            features = [x]
            for layer in layers:
                features.append(layer(torch.cat(features, 1)))
            x = torch.cat(features, 1)
            if b < 2:
                x = self.transitions[b](x)
        return self.fc(torch.relu(self.norm(x)).mean((2, 3)))


class _LeNet5(nn.Module):
    """The modern LeNet-5 (``lenet5``): conv 6@5x5-ReLU-max2, conv 16@5x5-ReLU-max2, conv 120@5x5-ReLU, FC 84, FC."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                                 nn.MaxPool2d(2), nn.Conv2d(16, 120, 5), nn.ReLU(), nn.Flatten(),
                                 nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


TWINS: dict[str, Callable[[int], nn.Module]] = {
    "resnet20": lambda n: _CifarResNet(_ResNetBasic, 3, (16, 32, 64), n, preact=False),
    "resnet56": lambda n: _CifarResNet(_ResNetBasic, 9, (16, 32, 64), n, preact=False),
    "wrn16_8": lambda n: _CifarResNet(_PreActBasic, 2, (128, 256, 512), n, preact=True),
    "preact_resnet164": lambda n: _CifarResNet(_PreActBottleneck, 18, (64, 128, 256), n, preact=True),
    "densenet_bc100_k12": lambda n: _DenseNetBC(100, 12, n),
    "lenet5": _LeNet5,
}


def build(name: str, num_classes: int, expected_params: int | None = None) -> Any:
    """The twin of our ``name``; with ``expected_params`` (our model's count), a mismatch is an error."""
    if name not in TWINS:
        raise ValueError(f"no PyTorch twin for {name!r}; twins exist for {sorted(TWINS)}")
    model = TWINS[name](num_classes)
    count = sum(p.numel() for p in model.parameters())
    if expected_params is not None and count != expected_params:
        raise AssertionError(f"PyTorch twin of {name} has {count:,} parameters, ours {expected_params:,}")
    return model
