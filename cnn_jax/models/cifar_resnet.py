"""The CIFAR-size residual networks (32x32 inputs, three stages at 32/16/8).

- He, Zhang, Ren & Sun 2015, "Deep Residual Learning for Image Recognition", arXiv:1512.03385, Sec. 4.2 and
  Table 6: ``resnet20/32/44/56/110/1202`` = 6n + 2 layers: 3x3 conv 16, three stages of n basic blocks with
  16/32/64 filters (the first block of stages 2-3 strided), global average pool, FC. Post-activation blocks
  (conv-BN-ReLU-conv-BN, add, ReLU). Shortcuts are identities; where the shape changes, option A (``shortcut="A"``,
  the paper's CIFAR choice) subsamples with the stride and appends zero channels, so it has no parameters; option
  B (``shortcut="B"``) projects with a strided 1x1 conv + BN. Counts with option A: 269,722 / 464,154 / 658,586 /
  853,018 / 1,727,962 / 19,421,274 (the paper's 0.27M ... 19.4M).
  Deviation: ``resnet1202`` starts the last BN scale of each residual branch at 0.1 instead of 1
  (``residual_gamma_init``). With untrained BN statistics every block roughly doubles the activations in evaluation
  mode, and 600 blocks overflow float32 (NaN logits at init); the paper only ever evaluates trained statistics.
  Same parameters; pass ``residual_gamma_init=1.0`` for the plain init.
- The same paper's plain counterparts (Sec. 4.2, Fig. 6 left): ``plain20/32/44/56`` are ``resnet20/32/44/56`` with
  every shortcut removed (``residual=False``: conv-BN-ReLU-conv-BN-ReLU, nothing added), the same layers and
  parameters. The paper trains them to show the degradation problem: the deeper plain net has the higher training
  error.
- Huang, Sun, Liu, Sedra & Weinberger 2016, "Deep Networks with Stochastic Depth", arXiv:1603.09382, Sec. 3-4:
  ``resnet110_sd`` is resnet110 trained with stochastic depth, survival probability p_l = 1 - l/L (1 - p_L) for unit
  l of L = 54, p_L = 0.5 (``drop_path_rate=0.5``, rule ``"huang"``). The paper scales the branch by p_l at test
  time; ``layers.DropPath`` scales kept branches by 1/p_l in training instead, the same function.
- Pre-activation ResNet-164/1001 (He et al. 2016, arXiv:1603.05027, Table 4) and Wide ResNets WRN-d-k (Zagoruyko &
  Komodakis 2016, arXiv:1605.07146, Table 1) are ``preact_resnet.PreActResNet`` with the CIFAR stem; see there.

As in ``preact_resnet``, ``scan_blocks=True`` runs the identical blocks of a stage under ``nn.scan``: compile time
stops growing with depth, but XLA's CPU backend runs convolutions inside the scan loop far slower, so only
ResNet-1202 (200 blocks a stage, impractical to compile unrolled) is registered with it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from cnn_jax import layers
from cnn_jax.layers import (
    BN_CONVENTIONS,
    Array,
    ClassifierHead,
    ClassifierModel,
    ConvNormAct,
    Dtype,
    ModelOutput,
    check_images,
    conv,
    run_stage,
    stage_drop_path_rates,
)
from cnn_jax.models.preact_resnet import PreActResNet
from cnn_jax.registry import ModelInfo, register_model, small_image_info

SHORTCUTS = ("A", "B")


def zero_pad_shortcut(x: Array, features: int, strides: int) -> Array:
    """Option A: the input subsampled with ``strides`` and zero channels appended up to ``features``.

    The zeros follow the input channels, as in fb.resnet.torch's shortcut type A (concat of the strided input
    and a zeroed copy of it).
    """
    x = x[:, ::strides, ::strides, :]
    return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, features - x.shape[-1])))


class CifarBasicBlock(nn.Module):
    """conv3x3-BN-ReLU -> conv3x3-BN, plus the shortcut, then ReLU (He et al. 2015 Fig. 5 left, Sec. 4.2).

    ``residual_gamma_init`` is the initial scale of the branch's last BN (1.0: the usual init). ``residual=False``
    drops the shortcut: the plain block of Fig. 6 (left), the same layers.
    """

    features: int
    strides: int = 1
    shortcut: str = "A"
    residual: bool = True
    residual_gamma_init: float = 1.0
    dtype: Dtype = None
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, *, train: bool, drop_path_rate: float | Array = 0.0) -> Array:
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        momentum, epsilon = BN_CONVENTIONS["pytorch"]

        def bn(name: str, gamma: float = 1.0) -> nn.BatchNorm:
            return nn.BatchNorm(
                use_running_average=not train,
                momentum=momentum,
                epsilon=epsilon,
                scale_init=nn.initializers.constant(gamma),
                name=name,
                **kw,
            )

        y = nn.relu(bn("bn1")(conv(self.features, 3, self.strides, name="conv1", **kw)(x)))
        y = bn("bn2", self.residual_gamma_init)(conv(self.features, 3, 1, name="conv2", **kw)(y))
        y = layers.DropPath(name="drop_path")(y, train=train, rate=drop_path_rate)
        if not self.residual:
            return nn.relu(y)
        if self.strides != 1 or x.shape[-1] != self.features:
            if self.shortcut == "A":
                x = zero_pad_shortcut(x, self.features, self.strides)
            elif self.shortcut == "B":
                x = ConvNormAct(self.features, 1, self.strides, act=None, name="downsample", **kw)(x, train=train)
            else:
                raise ValueError(f"unknown CIFAR ResNet shortcut {self.shortcut!r}; expected one of {SHORTCUTS}")
        return nn.relu(y + x)


class CifarResNet(ClassifierModel):
    """3x3 conv-BN-ReLU (first stage's width), stages of ``CifarBasicBlock`` (stride 2 from stage 2 on), pool, FC.

    Attributes:
      stages: (blocks, filters) per stage; Table 6 uses ``((n, 16), (n, 32), (n, 64))``.
      shortcut: "A" (zero-padding identity, the paper's CIFAR nets) or "B" (projection where the shape changes).
      residual: False removes every shortcut (the plain nets of Sec. 4.2, Fig. 6).
      residual_gamma_init: initial scale of the last BN of every residual branch (see the module docstring).
      drop_path_rule: stochastic-depth decay over the blocks (a key of ``layers.DROP_PATH_RULES``).
      scan_blocks: run each stage's identical blocks under ``nn.scan`` (stacked parameters).
    """

    stages: Sequence[tuple[int, int]] = ((3, 16), (3, 32), (3, 64))
    shortcut: str = "A"
    residual: bool = True
    residual_gamma_init: float = 1.0
    drop_path_rule: str = "huang"
    scan_blocks: bool = False
    drop_path_rate: float = 0.0

    def drop_path_schedule(self) -> list[list[float]]:
        """The drop-path rate of every block, per stage."""
        return stage_drop_path_rates(self.drop_path_rate, [depth for depth, _ in self.stages], self.drop_path_rule)

    @nn.compact
    def __call__(self, images: Array, *, train: bool) -> ModelOutput:
        check_images(images, self.in_channels, type(self).__name__)
        if not self.residual and self.drop_path_rate > 0.0:
            raise ValueError(
                f"drop_path_rate={self.drop_path_rate} needs shortcuts: without them (residual=False) a dropped "
                "block would drop the whole signal; use 0.0"
            )
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = ConvNormAct(self.stages[0][1], 3, name="stem", **kw)(images, train=train)
        for index, ((_, features), rates) in enumerate(zip(self.stages, self.drop_path_schedule(), strict=True)):
            x = run_stage(
                functools.partial(
                    CifarBasicBlock,
                    features=features,
                    shortcut=self.shortcut,
                    residual=self.residual,
                    residual_gamma_init=self.residual_gamma_init,
                    **kw,
                ),
                x,
                rates,
                strides=1 if index == 0 else 2,
                prefix=f"stage{index + 1}",
                train=train,
                scan=self.scan_blocks,
            )
        logits = ClassifierHead(self.num_classes, self.drop_rate, name="head", **kw)(x, train=train)
        return ModelOutput(logits)


# ---------------------------------------------------------------------------------------------------------------
# Registrations: every CIFAR model is counted for 10 classes at 32x32.
RESNET = "He, Zhang, Ren & Sun 2015, Deep Residual Learning for Image Recognition, arXiv:1512.03385"
STOCHASTIC_DEPTH = "Huang, Sun, Liu, Sedra & Weinberger 2016, Deep Networks with Stochastic Depth, arXiv:1603.09382"
IDENTITY_MAPPINGS = "He, Zhang, Ren & Sun 2016, Identity Mappings in Deep Residual Networks, arXiv:1603.05027"
WRN = "Zagoruyko & Komodakis 2016, Wide Residual Networks, arXiv:1605.07146"


def _cifar_info(paper: str, table: str, family: str, reference: str | None) -> ModelInfo:
    # min_resolution: three stages (strides 1, 2, 2) leave a 2x2 map.
    return small_image_info(paper, table, family, min_resolution=8, reference=reference, reference_classes=10)


def _stages(blocks: int, widths: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    return tuple((blocks, width) for width in widths)


# ResNet-6n+2 (Table 6): depth -> n. resnet1202 has no param_counts.csv row (models.md: 19,421,274).
for _depth in (20, 32, 44, 56, 110, 1202):
    register_model(
        f"resnet{_depth}",
        CifarResNet,
        _cifar_info(
            RESNET, "Sec. 4.2, Table 6 (6n+2, option A)", "resnet_cifar", None if _depth == 1202 else f"resnet{_depth}"
        ),
        stages=_stages((_depth - 2) // 6, (16, 32, 64)),
        **({"residual_gamma_init": 0.1, "scan_blocks": True} if _depth == 1202 else {}),
    )

# Plain-6n+2 (Sec. 4.2, Fig. 6 left): the ResNets above without shortcuts; option A has no parameters, so the
# counts equal resnet20/32/44/56's.
for _depth in (20, 32, 44, 56):
    register_model(
        f"plain{_depth}",
        CifarResNet,
        _cifar_info(RESNET, "Sec. 4.2, Fig. 6 left (plain 6n+2, no shortcuts)", "plain_cifar", None),
        stages=_stages((_depth - 2) // 6, (16, 32, 64)),
        residual=False,
    )

register_model(
    "resnet110_sd",
    CifarResNet,
    _cifar_info(
        STOCHASTIC_DEPTH, "Sec. 4, ResNet-110 with linear decay p_L = 0.5", "stochastic_depth_cifar", "resnet110_sd"
    ),
    stages=_stages(18, (16, 32, 64)),
    drop_path_rate=0.5,
)

# Pre-activation bottleneck ResNets (Table 4): depth = 9n + 2.
for _depth in (164, 1001):
    register_model(
        f"preact_resnet{_depth}",
        PreActResNet,
        _cifar_info(
            IDENTITY_MAPPINGS,
            "Table 4 (9n+2 bottleneck, resnet-pre-act.lua layout)",
            "preact_resnet_cifar",
            f"preact_resnet{_depth}",
        ),
        stages=_stages((_depth - 2) // 9, (64, 128, 256)),
        block="bottleneck",
        stem="cifar",
        stride_on_3x3=False,
        drop_path_rule="huang",
        scan_blocks=_depth == 1001,  # 111 units a stage: compile time would grow with depth otherwise
    )

# WRN-d-k (Table 1): (d - 4) / 6 basic units per stage, widths 16k/32k/64k. wrn40_4 has no param_counts.csv row
# (models.md: 8,949,210).
for _depth, _k in ((28, 10), (16, 8), (40, 4)):
    register_model(
        f"wrn{_depth}_{_k}",
        PreActResNet,
        _cifar_info(
            WRN,
            f"Table 1, WRN-{_depth}-{_k} (Tables 4-5)",
            "wide_resnet_cifar",
            None if (_depth, _k) == (40, 4) else f"wrn{_depth}_{_k}",
        ),
        stages=_stages((_depth - 4) // 6, (16 * _k, 32 * _k, 64 * _k)),
        block="basic",
        stem="cifar",
        drop_path_rule="huang",
    )
