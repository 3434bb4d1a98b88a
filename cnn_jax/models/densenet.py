"""DenseNet (Huang, Liu, van der Maaten & Weinberger 2017, "Densely Connected Convolutional Networks",
arXiv:1608.06993).

Every layer of a dense block sees the concatenation of all earlier feature maps of the block and adds
``growth_rate`` new ones (Sec. 3, Eq. 2). DenseNet-BC (Sec. 3 "Bottleneck layers" / "Compression"): each layer is
BN-ReLU-Conv(1x1, ``bn_size * k``)-BN-ReLU-Conv(3x3, k), and transitions BN-ReLU-Conv(1x1)-AvgPool(2x2) shrink the
channels by the factor ``compression`` (floor(theta * m), as the official code).

Layouts:
- ImageNet (Table 1, torchvision layout): 7x7/2 conv-BN-ReLU with 2k channels, 3x3/2 max-pool, four dense blocks
  (121: 6-12-24-16, 169: 6-12-32-32, 201: 6-12-48-32, all k=32; 161: 6-12-36-24 with k=48, from the authors'
  README), final BN-ReLU, global pool, linear classifier.
- CIFAR DenseNet-BC (Table 2, Sec. 3 "Implementation details"): a 3x3 conv with 2k channels (no BN or ReLU: the
  first dense layer is pre-activated), three dense blocks of (L-4)/6 bottleneck layers, final BN-ReLU, global pool.

Memory-efficient option (Pleiss et al. 2017, "Memory-Efficient Implementation of DenseNets", arXiv:1707.06990):
with ``memory_efficient=True`` the concatenation and the BN-ReLU-Conv(1x1) bottleneck that reads it are
rematerialised (``nn.remat``) in the backward pass instead of being stored, so the stored activations grow linearly,
not quadratically, with the depth of a block. Outputs and gradients are unchanged; ``cnn_jax.tools.train_memory``
measures the effect on the compiled train step (figures in BENCHMARKS.md). XLA:CPU's default passes merge the
recomputation back into the forward pass; compile with ``cnn_jax.runtime.startup.KEEP_REMAT_OPTIONS`` there.

Dropout: ``conv_drop_rate`` is the paper's dropout after every conv except the first (Sec. 4.2, used only for the
runs without data augmentation). torchvision's ``drop_rate`` drops only after each layer's 3x3 conv; this module
follows the paper. ``drop_rate`` is the head dropout (none in the paper).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from cnn_jax import layers
from cnn_jax.registry import ModelInfo, register_model

Array = layers.Array

STEMS = ("imagenet", "cifar")


Moments = tuple[Array, Array]  # per-channel batch mean and mean of squares (float32)


def batch_moments(x: Array) -> Moments:
    """The per-channel mean and mean of squares over (batch, height, width), in float32, as BatchNorm takes them."""
    x = x.astype(jnp.float32)
    return jnp.mean(x, axis=(0, 1, 2)), jnp.mean(x * x, axis=(0, 1, 2))


class ConcatBatchNorm(nn.BatchNorm):
    """``nn.BatchNorm`` (same variables, same update and normalisation) over the channel concatenation of chunks
    whose batch moments are given: in a dense block every later layer normalises the same earlier feature maps, and
    a channel's batch mean and variance do not depend on the layer that normalises it, so each chunk's moments are
    computed once, when it is produced, instead of once per reader (quadratic in the block's depth). ``moments``
    None reduces ``x`` itself (the textbook formulation). A subclass, so the analysis and the weight importer treat
    it as the BatchNorm it is; ``use_running_average`` is ``not train``.
    """

    @nn.compact
    def __call__(self, x: Array, moments: Sequence[Moments] | None, train: bool) -> Array:  # type: ignore[override]
        channels = x.shape[-1]
        running_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((channels,), jnp.float32))
        running_var = self.variable("batch_stats", "var", lambda: jnp.ones((channels,), jnp.float32))
        scale = self.param("scale", self.scale_init, (channels,), self.param_dtype)
        bias = self.param("bias", self.bias_init, (channels,), self.param_dtype)
        if train:
            moments = moments or [batch_moments(x)]
            mean = jnp.concatenate([m for m, _ in moments])
            var = jnp.maximum(0.0, jnp.concatenate([s for _, s in moments]) - mean * mean)  # as Flax's fast variance
            if not self.is_initializing():
                running_mean.value = self.momentum * running_mean.value + (1 - self.momentum) * mean
                running_var.value = self.momentum * running_var.value + (1 - self.momentum) * var
        else:
            mean, var = running_mean.value, running_var.value
        mul = lax.rsqrt(var + self.epsilon) * scale
        y = (x.astype(jnp.float32) - mean) * mul + bias
        return y.astype(self.dtype or x.dtype)


class NormActConv(nn.Module):
    """BN -> ReLU -> Conv (no bias) -> dropout on the channel concatenation of ``inputs`` (pre-activation).

    ``moments``: the inputs' batch moments (``batch_moments``), computed once per feature map by the caller; None
    reduces the concatenation here (the textbook formulation). ``train`` is positional so ``nn.remat`` can treat it
    as static.
    """

    features: int
    kernel_size: int
    drop_rate: float = 0.0
    norm_convention: str = "pytorch"
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, inputs: Sequence[Array], moments: Sequence[Moments] | None, train: bool) -> Array:
        x = jnp.concatenate(inputs, axis=-1) if len(inputs) > 1 else inputs[0]
        momentum, epsilon = layers.bn_convention(self.norm_convention)
        x = ConcatBatchNorm(momentum=momentum, epsilon=epsilon, dtype=self.dtype, param_dtype=self.param_dtype,
                            name="bn")(x, moments, train)
        x = nn.relu(x)
        x = layers.Conv(
            self.features,
            (self.kernel_size, self.kernel_size),
            padding=layers.conv_padding(self.kernel_size),
            use_bias=False,
            kernel_init=layers.conv_kernel_init,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="conv",
        )(x)
        return nn.Dropout(self.drop_rate, deterministic=not train)(x)


# The rematerialised variant: same parameters and outputs, recomputed in the backward pass (self is arg 0).
RematNormActConv = nn.remat(NormActConv, static_argnums=(3,))


class DenseLayer(nn.Module):
    """One dense layer: [concat -> BN-ReLU-Conv1x1(bn_size * k)] -> BN-ReLU-Conv3x3(k) (DenseNet-B, Sec. 3).

    ``bn_size=None`` drops the bottleneck (plain DenseNet: concat -> BN-ReLU-Conv3x3). With ``memory_efficient``
    the bracketed part, which reads the growing concatenation, is rematerialised.
    """

    growth_rate: int
    bn_size: int | None = 4
    drop_rate: float = 0.0
    memory_efficient: bool = False
    norm_convention: str = "pytorch"
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, inputs: Sequence[Array], moments: Sequence[Moments] | None = None, *, train: bool) -> Array:
        first_cls = RematNormActConv if self.memory_efficient else NormActConv
        conv_kw = dict(
            drop_rate=self.drop_rate,
            norm_convention=self.norm_convention,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        moments = None if moments is None else tuple(moments)
        if self.bn_size is None:
            return first_cls(self.growth_rate, 3, **conv_kw, name="conv1")(tuple(inputs), moments, train)
        x = first_cls(self.bn_size * self.growth_rate, 1, **conv_kw, name="conv1")(tuple(inputs), moments, train)
        return NormActConv(self.growth_rate, 3, **conv_kw, name="conv2")((x,), None, train)


class DenseNet(layers.ClassifierModel):
    """DenseNet / DenseNet-BC; the variant is data (``block_sizes``, ``growth_rate``, ``stem``).

    Attributes:
      block_sizes: dense layers per block.
      growth_rate: k, channels each dense layer adds.
      bn_size: bottleneck width as a multiple of k (4 in DenseNet-B); None for no bottleneck.
      compression: theta, the fraction of channels a transition keeps (0.5 in DenseNet-C; 1.0 for none).
      stem_features: channels of the first conv; None means 2k (the paper's choice for DenseNet-BC and ImageNet).
      stem: ``"imagenet"`` (7x7/2 conv-BN-ReLU + 3x3/2 max-pool) or ``"cifar"`` (one 3x3 conv).
      memory_efficient: rematerialise concat + bottleneck in the backward pass (Pleiss et al. 2017).
      share_norm_statistics: in training, compute each feature map's BatchNorm batch moments once and hand them to
        every later BatchNorm that reads it (``ConcatBatchNorm``); False reduces every concatenation again. Same
        variables and outputs (to float rounding), fewer reductions.
      conv_drop_rate: dropout after every conv except the first (paper Sec. 4.2, no-augmentation runs).
      drop_rate: dropout before the classifier.
      norm_convention: BatchNorm momentum/epsilon convention (see ``layers.BN_CONVENTIONS``).
    """

    block_sizes: Sequence[int] = (6, 12, 24, 16)
    growth_rate: int = 32
    bn_size: int | None = 4
    compression: float = 0.5
    stem_features: int | None = None
    stem: str = "imagenet"
    memory_efficient: bool = False
    share_norm_statistics: bool = True
    conv_drop_rate: float = 0.0
    norm_convention: str = "pytorch"

    @nn.compact
    def __call__(self, images: Array, *, train: bool) -> layers.ModelOutput:
        layers.check_images(images, self.in_channels, "DenseNet")
        if self.stem not in STEMS:
            raise ValueError(f"DenseNet: unknown stem {self.stem!r}; expected one of {STEMS}")
        if not 0.0 < self.compression <= 1.0:
            raise ValueError(f"DenseNet: compression must be in (0, 1]; got {self.compression}")
        dt = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        stem_features = self.stem_features or 2 * self.growth_rate

        if self.stem == "imagenet":
            x = layers.ConvNormAct(
                stem_features, 7, strides=2, norm_convention=self.norm_convention, **dt, name="stem"
            )(images, train=train)
            x = layers.Pool("max", 3, strides=2, padding=1, name="stem_pool")(x)
        else:
            x = layers.Conv(
                stem_features,
                (3, 3),
                padding=layers.conv_padding(3),
                use_bias=False,
                kernel_init=layers.conv_kernel_init,
                **dt,
                name="stem",
            )(images)

        share = train and self.share_norm_statistics  # eval mode normalises with the running averages

        def moments_of(x: Array) -> Moments | None:
            return batch_moments(x) if share else None

        def shared(moments: list[Moments | None]) -> tuple[Moments, ...] | None:
            return tuple(moments) if share else None

        features, moments = [x], [moments_of(x)]
        for b, num_layers in enumerate(self.block_sizes, start=1):
            if b > 1:
                # Transition: BN-ReLU-Conv1x1 to floor(theta * m) channels, then 2x2 average pooling.
                channels = sum(f.shape[-1] for f in features)
                x = NormActConv(
                    int(self.compression * channels),
                    1,
                    drop_rate=self.conv_drop_rate,
                    norm_convention=self.norm_convention,
                    **dt,
                    name=f"transition{b - 1}",
                )(tuple(features), shared(moments), train)
                x = layers.Pool("avg", 2, name=f"transition{b - 1}_pool")(x)
                features, moments = [x], [moments_of(x)]
            for i in range(num_layers):
                x = DenseLayer(
                    self.growth_rate,
                    self.bn_size,
                    drop_rate=self.conv_drop_rate,
                    memory_efficient=self.memory_efficient,
                    norm_convention=self.norm_convention,
                    **dt,
                    name=f"block{b}_layer{i}",
                )(features, shared(moments), train=train)
                features.append(x)
                moments.append(moments_of(x))

        x = jnp.concatenate(features, axis=-1)
        momentum, epsilon = layers.bn_convention(self.norm_convention)
        x = ConcatBatchNorm(momentum=momentum, epsilon=epsilon, **dt, name="final_bn")(x, shared(moments), train)
        x = nn.relu(x)
        logits = layers.ClassifierHead(self.num_classes, self.drop_rate, **dt, name="head")(x, train=train)
        return layers.ModelOutput(logits=logits)


_PAPER = "Huang, Liu, van der Maaten & Weinberger 2017, Densely Connected Convolutional Networks, arXiv:1608.06993"

# name: (block sizes, growth rate); torchvision's ImageNet DenseNets.
_IMAGENET = {
    "densenet121": ((6, 12, 24, 16), 32),
    "densenet169": ((6, 12, 32, 32), 32),
    "densenet201": ((6, 12, 48, 32), 32),
    "densenet161": ((6, 12, 36, 24), 48),
}
for _name, (_blocks, _k) in _IMAGENET.items():
    register_model(
        _name,
        DenseNet,
        ModelInfo(
            paper=_PAPER,
            table="Table 1 (161: k=48 from the authors' README); torchvision layout",
            resolution=224,
            crop_fraction=0.875,
            family="densenet",
            reference=_name,
            # 29 -> 15 (stem conv) -> 8 (max-pool) -> 4 -> 2 -> 1 (transitions).
            min_resolution=29,
        ),
        block_sizes=_blocks,
        growth_rate=_k,
    )

# name: (depth L, growth rate); DenseNet-BC for CIFAR-10: 3 blocks of (L - 4) / 6 bottleneck layers.
_CIFAR = {"densenet_bc100_k12": (100, 12), "densenet_bc190_k40": (190, 40)}
for _name, (_depth, _k) in _CIFAR.items():
    register_model(
        _name,
        DenseNet,
        ModelInfo(
            paper=_PAPER,
            table="Table 2 (DenseNet-BC), Sec. 3 Implementation details",
            resolution=32,
            crop_fraction=1.0,
            family="densenet_cifar",
            reference=_name,
            reference_classes=10,
            min_resolution=4,  # two 2x2 average pools
        ),
        block_sizes=((_depth - 4) // 6,) * 3,
        growth_rate=_k,
        stem="cifar",
    )
