"""Registry behaviour and the reference data it is tested against."""

import filecmp

import pytest
from conftest import REFERENCE_DIR, SHARED_REFERENCE_DIR, load_param_counts

import cnn_jax


def test_vendored_reference_matches_shared():
    if not SHARED_REFERENCE_DIR.exists():
        pytest.skip(f"{SHARED_REFERENCE_DIR} is not checked out beside the repo")
    for name in ("param_counts.csv", "models.csv"):
        assert filecmp.cmp(REFERENCE_DIR / name, SHARED_REFERENCE_DIR / name, shallow=False), name


def test_every_model_reference_names_an_existing_exact_row():
    rows = load_param_counts()
    for name in cnn_jax.list_models():
        ref = cnn_jax.model_info(name).reference
        if ref is not None:
            assert ref in rows, f"{name}: reference {ref!r} is not a variant of param_counts.csv"
            assert rows[ref]["exact"] in ("yes", "computed"), f"{name}: row {ref!r} has no exact count"


def test_every_exact_reference_row_is_covered_by_a_model():
    """Every `yes` row of param_counts.csv is the reference of some registered model."""
    covered = {cnn_jax.model_info(n).reference for n in cnn_jax.list_models()}
    missing = [v for v, row in load_param_counts().items() if row["exact"] == "yes" and v not in covered]
    assert not missing, f"reference rows with no registered model: {missing}"


def test_list_models_pattern():
    names = cnn_jax.list_models()
    assert names == sorted(names)
    assert set(cnn_jax.list_models("vgg*")) == {n for n in names if n.startswith("vgg")}
    assert cnn_jax.list_models("no_such_family*") == []


def test_drop_path_on_a_network_without_residual_blocks_is_rejected():
    with pytest.raises(ValueError, match=r"model 'vgg16' cannot honour drop_path_rate=0.1"):
        cnn_jax.create_model("vgg16", drop_path_rate=0.1)
    cnn_jax.create_model("vgg16", drop_path_rate=0.0)  # the default is accepted everywhere


def test_overrides_reach_the_module():
    model = cnn_jax.create_model("resnet50", num_classes=10, drop_rate=0.3)
    assert (model.num_classes, model.drop_rate) == (10, 0.3)


def test_model_info_fields():
    info = cnn_jax.model_info("resnet50")
    assert info.resolution == 224 and 0 < info.crop_fraction <= 1 and info.paper


def test_model_info_follows_the_model_arguments():
    """efficientnet_phi's resolution, eval size and crop fraction follow phi and gamma (224 * gamma^phi)."""
    from cnn_jax.models.efficientnet import CROP_PADDING, efficientnet_phi_resolution

    for phi, gamma in [(2.0, 1.15), (3.0, 1.2), (0.5, 1.3)]:
        info = cnn_jax.model_info("efficientnet_phi", phi=phi, gamma=gamma, num_classes=10, in_channels=1)
        resolution = efficientnet_phi_resolution(phi, gamma)
        assert (info.resolution, info.eval_size) == (resolution, resolution), (phi, gamma)
        assert info.crop_fraction == resolution / (resolution + CROP_PADDING)
    assert cnn_jax.model_info("efficientnet_phi", phi=3.0).resolution == 341  # gamma's default, 1.15
    assert cnn_jax.model_info("efficientnet_phi").resolution == 258  # phi = 1 by default
    assert cnn_jax.model_info("efficientnet_phi").crop_fraction == 258 / 290
    # Counting uses the same metadata: phi = 0 is B0's body at B0's 224.
    from cnn_jax.analysis.stats import model_stats

    assert model_stats("efficientnet_phi", phi=0.0, num_classes=10).resolution == 224


def test_model_info_validates_overrides_as_create_model_does():
    assert cnn_jax.model_info("resnet50", num_classes=10, drop_rate=0.3) == cnn_jax.model_info("resnet50")
    with pytest.raises(TypeError, match=r"model 'efficientnet_phi' \(EfficientNetPhi\) got an unknown argument "
                                        r"'gama'; did you mean gamma\? accepted: .*gamma"):
        cnn_jax.model_info("efficientnet_phi", gama=1.2)
    with pytest.raises(ValueError, match=r"model 'vgg16' cannot honour drop_path_rate=0.1"):
        cnn_jax.model_info("vgg16", drop_path_rate=0.1)
    assert cnn_jax.model_info("vgg16", drop_path_rate=0.0) == cnn_jax.model_info("vgg16")
