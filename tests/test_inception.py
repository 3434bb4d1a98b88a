"""GoogLeNet / Inception family tests: auxiliary heads, the two GoogLeNet layouts, average-pool padding convention,
Inception-ResNet residual scaling, LRN and the smallest accepted inputs."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cnn_jax
from cnn_jax.models import inception
from cnn_jax.models.alexnet import LocalResponseNorm
from cnn_jax.models.layers import Pool

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
    seen = []

    def record(next_fun, args, kwargs, context):
        if isinstance(context.module, module_type) and context.method_name == "__call__":
            seen.append(context.module)
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
    for collection in full:
        assert heads <= set(full[collection]) or collection == "batch_stats", collection
        stripped = {k: v for k, v in full[collection].items() if k not in heads}
        assert jax.tree_util.tree_structure(stripped) == jax.tree_util.tree_structure(bare[collection])
        assert jax.tree_util.tree_leaves(stripped) == jax.tree_util.tree_leaves(bare[collection])


def _random_variables(shapes, key):
    leaves, treedef = jax.tree_util.tree_flatten(shapes)
    keys = jax.random.split(key, len(leaves))
    # Positive values keep BatchNorm running variances valid.
    values = [0.5 + 0.1 * jax.random.uniform(k, s.shape, s.dtype) for k, s in zip(keys, leaves, strict=True)]
    return treedef.unflatten(values)


@pytest.mark.slow
@pytest.mark.parametrize("plain, with_aux, heads", AUX_PAIRS[:2])
def test_aux_heads_do_not_change_eval_logits(plain, with_aux, heads):
    res = cnn_jax.model_info(with_aux).min_resolution
    full_model = cnn_jax.create_model(with_aux, num_classes=NUM_CLASSES)
    bare_model = cnn_jax.create_model(plain, num_classes=NUM_CLASSES)
    full = _random_variables(_init_shapes(full_model, res), jax.random.key(3))
    bare = {c: {k: v for k, v in tree.items() if k not in heads} for c, tree in full.items()}
    images = jax.random.normal(jax.random.key(4), (2, res, res, 3))

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


def test_inception_resnet_residual_scales():
    model = cnn_jax.create_model("inception_resnet_v2")
    blocks = _intercepted(model, 75, inception.InceptionResidual)
    assert [b.scale for b in blocks] == [0.17] * 10 + [0.1] * 20 + [0.2] * 9 + [1.0]
    assert [b.activate for b in blocks] == [True] * 39 + [False]
    custom = _intercepted(model.clone(residual_scales=(0.3, 0.2, 0.1)), 75, inception.InceptionResidual)
    assert [b.scale for b in custom][:1] + [b.scale for b in custom][10:11] + [b.scale for b in custom][30:31] == [
        0.3, 0.2, 0.1,
    ]


def test_residual_branch_is_scaled_before_the_addition():
    branches = ((inception.Conv(4),), (inception.Conv(2), inception.Conv(3, 3)))
    x = jax.random.normal(jax.random.key(0), (1, 4, 4, 5))
    block = inception.InceptionResidual(branches, scale=0.1, activate=False)
    variables = block.init(jax.random.key(1), x, train=False)
    # Non-zero BN shift so the branch output is not trivially zero.
    variables = jax.tree_util.tree_map(lambda v: v + 0.3, variables)
    residual = block.apply(variables, x, train=False) - x
    doubled = block.clone(scale=0.2).apply(variables, x, train=False) - x
    assert np.abs(residual).max() > 1e-3
    np.testing.assert_allclose(doubled, 2 * residual, rtol=1e-4, atol=1e-6)
    activated = block.clone(activate=True).apply(variables, x, train=False)
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
