"""GoogLeNet / Inception family tests: auxiliary heads, the two GoogLeNet layouts, average-pool padding convention,
Inception-ResNet residual scaling, LRN and the smallest accepted inputs."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cnn_jax
from cnn_jax.layers import Pool
from cnn_jax.models import inception
from cnn_jax.models.alexnet import LocalResponseNorm

NUM_CLASSES = 7
# (without aux, with aux, aux head names)
AUX_PAIRS = [
    ("googlenet", "googlenet_aux", {"aux1", "aux2"}),
    ("googlenet_paper", "googlenet_paper_aux", {"aux1", "aux2"}),
    ("inception_v3", "inception_v3_aux", {"aux"}),
]
FAMILY_MODELS = [
    "googlenet", "googlenet_aux", "googlenet_paper", "googlenet_paper_aux", "inception_v3", "inception_v3_aux",
    "inception_v4", "inception_resnet_v2",
]


def _image(resolution: int, batch: int = 2) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct((batch, resolution, resolution, 3), jnp.float32)


def _init_shapes(model: nn.Module, resolution: int):
    return jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), _image(resolution))


def _intercepted(model: nn.Module, resolution: int, module_type: type[nn.Module]) -> list[nn.Module]:
    """The ``module_type`` submodules an (abstract) init of ``model`` calls, in call order."""
    return [module for module, _ in _intercepted_calls(model, resolution, module_type)]


def _intercepted_calls(model: nn.Module, resolution: int, module_type: type[nn.Module]) -> list[tuple[nn.Module, dict]]:
    seen = []

    def record(next_fun, args, kwargs, context):
        if isinstance(context.module, module_type) and context.method_name == "__call__":
            seen.append((context.module, kwargs))
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
        _init_shapes(model, resolution)
    return seen


@pytest.mark.parametrize("plain, with_aux, heads", AUX_PAIRS)
def test_aux_logits_in_train_mode_only(plain, with_aux, heads):
    res = cnn_jax.model_info(with_aux).min_resolution
    for name, expected in ((with_aux, heads), (plain, set())):
        model = cnn_jax.create_model(name, num_classes=NUM_CLASSES)

        def run(x, model=model):
            variables = model.init(jax.random.key(0), x, train=False)
            train_out, _ = model.apply(
                variables, x, train=True, rngs={"dropout": jax.random.key(1)}, mutable=["batch_stats"]
            )
            return train_out, model.apply(variables, x, train=False)

        train_out, eval_out = jax.eval_shape(run, _image(res))
        assert set(train_out.aux_logits) == expected, name
        assert all(a.shape == (2, NUM_CLASSES) for a in train_out.aux_logits.values()), name
        assert eval_out.aux_logits == {}, name


@pytest.mark.parametrize("plain, with_aux, heads", AUX_PAIRS)
def test_aux_heads_add_only_their_own_subtrees(plain, with_aux, heads):
    res = cnn_jax.model_info(with_aux).min_resolution
    full = _init_shapes(cnn_jax.create_model(with_aux), res)
    bare = _init_shapes(cnn_jax.create_model(plain), res)
    assert heads <= set(full["params"]) and set(full) == set(bare)
    for collection in full:
        stripped = {k: v for k, v in full[collection].items() if k not in heads}
        assert jax.tree_util.tree_structure(stripped) == jax.tree_util.tree_structure(bare[collection])
        assert jax.tree_util.tree_leaves(stripped) == jax.tree_util.tree_leaves(bare[collection])


def _random_variables(shapes, seed: int):
    # NumPy, not jax.random: one eager jax.random call per parameter shape would compile a program each.
    rng = np.random.default_rng(seed)
    # Positive values keep BatchNorm running variances valid.
    return jax.tree_util.tree_map(lambda s: (0.5 + 0.1 * rng.random(s.shape)).astype(s.dtype), shapes)


@pytest.mark.slow
@pytest.mark.parametrize("plain, with_aux, heads", AUX_PAIRS)
def test_aux_heads_do_not_change_eval_logits(plain, with_aux, heads):
    full_model = cnn_jax.create_model(with_aux, num_classes=NUM_CLASSES)
    bare_model = cnn_jax.create_model(plain, num_classes=NUM_CLASSES)
    full = _random_variables(_init_shapes(full_model, cnn_jax.model_info(with_aux).min_resolution), seed=3)
    res = cnn_jax.model_info(plain).min_resolution  # the aux heads do not run in eval mode: any valid input
    bare = {c: {k: v for k, v in tree.items() if k not in heads} for c, tree in full.items()}
    images = np.random.default_rng(4).normal(size=(2, res, res, 3)).astype(np.float32)

    @jax.jit
    def logits(full, bare, x):
        return full_model.apply(full, x, train=False).logits, bare_model.apply(bare, x, train=False).logits

    with_heads, without = logits(full, bare, images)
    np.testing.assert_array_equal(with_heads, without)


@pytest.mark.parametrize("include, expected_corner, expected_edge", [(True, 4 / 9, 6 / 9), (False, 1.0, 1.0)])
def test_avg_pool_padding_convention_at_the_border(include, expected_corner, expected_edge):
    block = inception.Mixed(((inception.AVG_POOL,),), count_include_pad=include)
    out = block.apply({}, jnp.full((1, 5, 5, 2), 3.0), train=False)
    np.testing.assert_allclose(out[0, 0, 0], 3.0 * expected_corner, rtol=1e-6)
    np.testing.assert_allclose(out[0, 0, 2], 3.0 * expected_edge, rtol=1e-6)
    np.testing.assert_allclose(out[0, 2, 2], 3.0, rtol=1e-6)


@pytest.mark.parametrize("name, include", [("inception_v3", True), ("inception_v4", False),
                                           ("inception_resnet_v2", False)])
def test_models_pass_their_avg_pool_convention_to_every_branch_pool(name, include):
    model = cnn_jax.create_model(name)
    assert model.count_include_pad is include
    padded_avg = [p for p in _intercepted(model, 75, Pool) if p.kind == "avg" and p.padding > 0]
    assert len(padded_avg) > 0
    assert {p.count_include_pad for p in padded_avg} == {include}
    flipped = [p for p in _intercepted(model.clone(count_include_pad=not include), 75, Pool) if p.kind == "avg"]
    assert {p.count_include_pad for p in flipped if p.padding > 0} == {not include}


def test_inception_resnet_residual_scales_and_drop_path_rates():
    model = cnn_jax.create_model("inception_resnet_v2", scan_blocks=False, drop_path_rate=0.39)
    calls = _intercepted_calls(model, 75, inception.InceptionResidual)
    assert [b.scale for b, _ in calls] == [0.17] * 10 + [0.1] * 20 + [0.2] * 9 + [1.0]
    assert [b.activate for b, _ in calls] == [True] * 39 + [False]
    # timm's rule by default: linspace(0, rate, 40) over all residual blocks.
    np.testing.assert_allclose([kw["drop_path_rate"] for _, kw in calls], np.linspace(0.0, 0.39, 40), atol=1e-12)
    custom = _intercepted(model.clone(residual_scales=(0.3, 0.2, 0.1)), 75, inception.InceptionResidual)
    assert [custom[i].scale for i in (0, 10, 30, 39)] == [0.3, 0.2, 0.1, 1.0]


class _Stage(nn.Module):
    scan: bool

    @nn.compact
    def __call__(self, x, *, train):
        make = functools.partial(inception.InceptionResidual, ((inception.Conv(3),), (inception.Conv(2, 3),)), 0.5)
        return inception.run_stage(make, x, "blocks", [0.0, 0.1, 0.2], depth=3, train=train, scan=self.scan)


def test_scanned_stage_equals_unrolled_blocks_with_stacked_parameters():
    x = jax.random.normal(jax.random.key(0), (2, 5, 5, 4))
    unrolled = jax.jit(lambda x: _Stage(scan=False).init(jax.random.key(1), x, train=False))(x)
    scanned_shapes = jax.eval_shape(lambda: _Stage(scan=True).init(jax.random.key(1), x, train=False))
    stacked = {
        c: {"blocks": jax.tree_util.tree_map(lambda *a: jnp.stack(a), *(tree[f"blocks_{i}"] for i in range(3)))}
        for c, tree in unrolled.items()
    }
    assert jax.tree_util.tree_structure(stacked) == jax.tree_util.tree_structure(scanned_shapes)
    assert [a.shape for a in jax.tree_util.tree_leaves(stacked)] == [
        a.shape for a in jax.tree_util.tree_leaves(scanned_shapes)
    ]
    scanned_out, unrolled_out = jax.jit(
        lambda s, u, x: (_Stage(scan=True).apply(s, x, train=False), _Stage(scan=False).apply(u, x, train=False))
    )(stacked, unrolled, x)
    np.testing.assert_allclose(scanned_out, unrolled_out, rtol=1e-5, atol=1e-5)


def test_residual_branch_is_scaled_before_the_addition():
    branches = ((inception.Conv(4),), (inception.Conv(2), inception.Conv(3, 3)))
    x = jax.random.normal(jax.random.key(0), (1, 4, 4, 5))
    block = inception.InceptionResidual(branches, scale=0.1, activate=False)
    variables = jax.jit(lambda x: block.init(jax.random.key(1), x, train=False))(x)
    # Non-zero BN shift so the branch output is not trivially zero.
    variables = jax.tree_util.tree_map(lambda v: v + 0.3, variables)

    @jax.jit
    def outputs(v, x):
        return [b.apply(v, x, train=False) for b in (block, block.clone(scale=0.2), block.clone(activate=True))]

    plain, doubled, activated = outputs(variables, x)
    residual = plain - x
    assert np.abs(residual).max() > 1e-3
    np.testing.assert_allclose(doubled - x, 2 * residual, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(activated, jax.nn.relu(x + residual), rtol=1e-5, atol=1e-6)


def test_googlenet_layouts():
    paper = _init_shapes(cnn_jax.create_model("googlenet_paper"), 224)
    tv = _init_shapes(cnn_jax.create_model("googlenet"), 224)
    assert paper["params"]["inception3a"]["branch5x5"]["conv"]["kernel"].shape == (5, 5, 16, 32)
    assert "bias" in paper["params"]["inception3a"]["branch5x5"]["conv"]
    assert "batch_stats" not in paper
    assert tv["params"]["inception3a"]["branch5x5"]["conv"]["kernel"].shape == (3, 3, 16, 32)
    assert "bias" not in tv["params"]["inception3a"]["branch5x5"]["conv"]
    assert "inception5b" in tv["batch_stats"]
    # The max-pool before stage 5: Table 1's 3x3/2 vs torchvision's 2x2/2, both rounding up.
    for name, window in (("googlenet_paper", 3), ("googlenet", 2)):
        pool4 = [p for p in _intercepted(cnn_jax.create_model(name), 224, Pool) if p.name == "maxpool4"]
        assert [(p.window, p.strides, p.ceil_mode) for p in pool4] == [(window, 2, True)]
    with pytest.raises(ValueError, match="unknown GoogLeNet layout 'caffe'"):
        _init_shapes(cnn_jax.create_model("googlenet", layout="caffe"), 224)


def test_googlenet_paper_aux_head_pools_14x14_to_4x4():
    shapes = _init_shapes(cnn_jax.create_model("googlenet_paper_aux"), 224)
    for head in ("aux1", "aux2"):
        assert shapes["params"][head]["fc1"]["kernel"].shape == (4 * 4 * 128, 1024)
    # Other input sizes keep the same parameter shapes.
    small = _init_shapes(cnn_jax.create_model("googlenet_paper_aux"), 100)
    assert jax.tree_util.tree_leaves(small) == jax.tree_util.tree_leaves(shapes)


def test_googlenet_paper_layout_has_caffe_lrn_in_the_stem():
    paper = _intercepted(cnn_jax.create_model("googlenet_paper"), 64, LocalResponseNorm)
    assert [m.name for m in paper] == ["norm1", "norm2"]
    assert all((m.k, m.alpha, m.alpha_per_size) == (1.0, 1e-4, True) for m in paper)
    assert _intercepted(cnn_jax.create_model("googlenet"), 64, LocalResponseNorm) == []


@pytest.mark.parametrize("name", FAMILY_MODELS)
def test_min_resolution_is_the_smallest_accepted_input(name):
    model = cnn_jax.create_model(name)
    res = cnn_jax.model_info(name).min_resolution
    _init_shapes(model, res)
    with pytest.raises(ValueError, match="too small"):
        _init_shapes(model, res - 1)
