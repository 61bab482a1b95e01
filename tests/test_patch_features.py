"""Learned patch features: the numerics against a plain reference, the stages' contract, and a run that learns."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pyspark.ml import Pipeline, PipelineModel

from sparkvision.features import patch_math as pm
from sparkvision.cli import main
from sparkvision.data.sources.synthetic import synthetic_images
from sparkvision.features.names import parse_feature_set
from sparkvision.features.patches import PatchFeatures, PatchFeaturesModel
from sparkvision.features.sets import feature_stages
from sparkvision.models.ridge.stage import RidgeClassifier, RidgeClassifierModel

RNG = np.random.default_rng(7)


def _pixels(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    labels, planes = synthetic_images(n, seed=seed)
    return labels, planes.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()


def _frame(spark, n: int = 200, seed: int = 1):
    labels, pixels = _pixels(n, seed)
    return spark.createDataFrame([(im.tobytes(), float(y)) for im, y in zip(pixels, labels)], ["data", "label"])


def _dictionary(k: int, size: int = 6, channels: int = 3):
    d = channels * size * size
    mean = RNG.normal(0, 0.1, d).astype(np.float32)
    whiten = pm.whitening(mean, np.cov(RNG.normal(size=(500, d)), rowvar=False), 0.1, pm.mirror_order(size, channels))
    return pm.with_mirrors(RNG.normal(size=(k // 2, d)).astype(np.float32), pm.mirror_order(size, channels)), \
        pm.symmetric_mean(mean, pm.mirror_order(size, channels)), whiten


def _reference(image: np.ndarray, centroids, mean, whiten, *, size=6, stride=1, grid=2, triangle=True, alpha=0.25):
    """The method written out one window at a time, as the paper describes it."""
    h, w, c = image.shape
    ny, nx = (h - size) // stride + 1, (w - size) // stride + 1
    wy, wx = pm.pooling_weights(ny, grid), pm.pooling_weights(nx, grid)
    out = np.zeros((grid, grid, len(centroids)))
    for i in range(ny):
        for j in range(nx):
            patch = image[i * stride:i * stride + size, j * stride:j * stride + size].astype(np.float64)
            x = patch.transpose(2, 0, 1).ravel()
            x = (x - x.mean()) / np.sqrt(x.var() + 10.0)
            x = (x - mean) @ whiten
            if triangle:
                z = np.sqrt(((centroids - x) ** 2).sum(axis=1))
                f = np.maximum(0.0, z.mean() - z)
            else:
                unit = centroids / np.linalg.norm(centroids, axis=1, keepdims=True)
                f = np.maximum(0.0, unit @ x - alpha)
            out += wy[i][:, None, None] * wx[j][None, :, None] * f[None, None, :]
    return out.ravel()


@pytest.mark.parametrize("triangle", [True, False])
def test_encoding_matches_a_window_by_window_reference(triangle):
    centroids, mean, whiten = _dictionary(10)
    _, pixels = _pixels(3)
    enc = pm.PatchEncoder(centroids, mean, whiten, size=6, stride=1, grid=2, height=32, width=32, triangle=triangle)
    got = enc.encode(pixels)
    for image, row in zip(pixels, got):
        want = _reference(image, centroids, mean, whiten, triangle=triangle)
        np.testing.assert_allclose(row, want, rtol=2e-3, atol=2e-3 * np.abs(want).max())


def test_stride_and_grid_follow_the_parameters():
    centroids, mean, whiten = _dictionary(4)
    _, pixels = _pixels(1)
    enc = pm.PatchEncoder(centroids, mean, whiten, size=6, stride=2, grid=3, height=32, width=32)
    want = _reference(pixels[0], centroids, mean, whiten, stride=2, grid=3)
    np.testing.assert_allclose(enc.encode(pixels)[0], want, rtol=2e-3, atol=2e-3 * np.abs(want).max())
    assert enc.n_features == 9 * 4


def test_mirrored_image_gives_permuted_features_and_folded_features_are_flip_invariant():
    centroids, mean, whiten = _dictionary(12)
    _, pixels = _pixels(2)
    enc = pm.PatchEncoder(centroids, mean, whiten, size=6, stride=1, grid=2, height=32, width=32)
    f, f_mirror = enc.encode(pixels), enc.encode(pixels[:, :, ::-1].copy())
    np.testing.assert_allclose(f_mirror, f[:, pm.mirror_feature_order(12, 2)], rtol=1e-4, atol=1e-4)
    a, b = pm.fold_pairs(12, 2)
    assert len(a) == f.shape[1] // 2 and len(set(a) | set(b)) == f.shape[1]  # a pairing of all features
    np.testing.assert_allclose(f_mirror[:, a] + f_mirror[:, b], f[:, a] + f[:, b], rtol=1e-4, atol=1e-4)


def test_pooling_regions_are_symmetric_and_every_window_counts_once():
    w = pm.pooling_weights(27, 2)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    np.testing.assert_allclose(w, w[::-1, ::-1])
    assert w[13].tolist() == [0.5, 0.5]  # the middle window straddles the boundary


def test_kmeans_step_sums_match_brute_force():
    points = RNG.normal(size=(3000, 5)).astype(np.float32)
    centroids = points[:7].copy()
    sums, counts, cost = pm.assign(points, centroids)
    d = ((points[:, None, :] - centroids[None]) ** 2).sum(axis=2)
    nearest = d.argmin(axis=1)
    assert counts.tolist() == np.bincount(nearest, minlength=7).tolist()
    np.testing.assert_allclose(sums, np.stack([points[nearest == k].sum(axis=0) for k in range(7)]), rtol=1e-4, atol=1e-3)
    assert cost == pytest.approx(d.min(axis=1).sum(), rel=1e-3)


def test_whitening_decorrelates_and_commutes_with_the_mirror():
    order = pm.mirror_order(6, 3)
    x = RNG.normal(size=(20000, 108)) @ RNG.normal(size=(108, 108))
    x = np.concatenate([x, x[:, order]])
    mean = pm.symmetric_mean(x.mean(axis=0), order)
    w = pm.whitening(mean, np.cov(x, rowvar=False), 1e-6, order)
    white = (x - mean) @ w
    np.testing.assert_allclose(np.cov(white, rowvar=False), np.eye(108), atol=0.05)
    np.testing.assert_allclose(w[np.ix_(order, order)], w, atol=1e-5)


def test_feature_set_names():
    assert parse_feature_set("patches") == ("patches", 1600)
    assert parse_feature_set("patches:400") == ("patches", 400)
    assert parse_feature_set("gray") == ("gray", None)
    for bad in ("patches:401", "patches:x", "hsv", "gray:3"):
        with pytest.raises(ValueError):
            parse_feature_set(bad)


# --- the Spark stages ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fitted(spark):
    df = _frame(spark, 300)
    model = Pipeline(stages=[PatchFeatures(k=32, numPatches=5000, maxIter=5, seed=3),
                             RidgeClassifier(regParam=1e-2)]).fit(df)
    return df, model


def test_patch_features_and_ridge_learn_the_synthetic_classes(spark, fitted):
    _, model = fitted
    test = _frame(spark, 200, seed=9)
    out = model.transform(test).select("label", "prediction").toPandas()
    assert (out.label == out.prediction).mean() > 0.8  # ten classes: chance is 0.1


def test_fitted_pipeline_saves_and_loads_with_identical_output(spark, fitted, tmp_path):
    df, model = fitted
    model.write().save(str(tmp_path / "m"))
    loaded = PipelineModel.load(str(tmp_path / "m"))
    assert isinstance(loaded.stages[0], PatchFeaturesModel) and isinstance(loaded.stages[1], RidgeClassifierModel)
    np.testing.assert_array_equal(loaded.stages[0].centroids, model.stages[0].centroids)
    a = model.transform(df).select("features", "probability", "prediction").collect()
    b = loaded.transform(df).select("features", "probability", "prediction").collect()
    assert a == b
    assert loaded.stages[0].getOrDefault("k") == 32


def test_model_copy_keeps_params_and_centroids(fitted):
    features = fitted[1].stages[0]
    twin = features.copy({features.stride: 2})
    assert twin.getOrDefault(twin.stride) == 2 and features.getOrDefault(features.stride) == 1
    assert twin.centroids is features.centroids and twin.numFeatures() == features.numFeatures() == 64


def test_model_features_are_the_numpy_encoders(spark, fitted):
    df, model = fitted
    features = model.stages[0]
    row = features.transform(df.limit(2)).collect()
    pixels = np.stack([np.frombuffer(r.data, np.uint8).reshape(32, 32, 3) for r in row])
    want = features.patch_encoder().encode(pixels)
    a, b = pm.fold_pairs(32, 2)
    np.testing.assert_allclose(np.stack([r.features.toArray() for r in row]), np.sqrt(want[:, a] + want[:, b]), rtol=1e-5)


def test_dictionary_is_closed_under_mirroring(fitted):
    c = fitted[1].stages[0].centroids
    np.testing.assert_array_equal(c[16:], c[:16][:, pm.mirror_order(6, 3)])


def test_random_dictionary_needs_no_kmeans(spark):
    model = PatchFeatures(k=8, numPatches=400, dictionary="random", flipInvariant=False).fit(_frame(spark, 40))
    assert model.centroids.shape == (8, 108) and model.numFeatures() == 32


@pytest.mark.parametrize("params, message", [
    ({"k": 7}, "even"), ({"encoder": "relu"}, "encoder"), ({"dictionary": "pca"}, "dictionary"),
    ({"patchSize": 40}, "larger than the images"), ({"power": 0.0}, "power"), ({"poolingGrid": 30}, "more regions"),
])
def test_bad_parameters_are_refused_before_any_work(spark, params, message):
    with pytest.raises(ValueError, match=message):
        PatchFeatures(**params).fit(_frame(spark, 10))


def test_images_of_another_size_get_a_clear_error(spark, fitted):
    df = spark.createDataFrame([(bytes(100),)], ["data"])
    with pytest.raises(Exception, match="expects 32×32×3 images"):
        fitted[1].stages[0].transform(df).collect()


def test_ridge_matches_the_closed_form_solution(spark):
    x = RNG.normal(size=(400, 6)) * [1, 2, 3, 4, 5, 6] + 3
    y = (x[:, 0] + x[:, 1] > 8).astype(int) + (x[:, 2] > 9).astype(int)
    from pyspark.ml.linalg import Vectors

    df = spark.createDataFrame([(Vectors.dense(r), float(t)) for r, t in zip(x, y)], ["features", "label"])
    model = RidgeClassifier(regParam=0.05).fit(df)
    mu, sd = x.mean(axis=0), x.std(axis=0)
    z = (x - mu) / sd
    onehot = np.eye(3)[y]
    v = np.linalg.solve(z.T @ z + 0.05 * len(x) * np.eye(6), z.T @ (onehot - onehot.mean(axis=0)))
    np.testing.assert_allclose(model.coefficients, v / sd[:, None], rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(model.intercept, onehot.mean(axis=0) - mu @ (v / sd[:, None]), rtol=1e-3, atol=1e-6)


def test_ridge_chooses_its_regularisation_on_held_out_sums(spark):
    from pyspark.ml.linalg import Vectors

    x = np.random.default_rng(3).normal(size=(600, 40))
    y = (x[:, 0] > 0).astype(int)  # one useful feature among 40: heavy regularisation does best
    df = spark.createDataFrame([(Vectors.dense(r), float(t)) for r, t in zip(x, y)], ["features", "label"])
    model = RidgeClassifier(regGrid=[1e-6, 1.0, 1e4], validationFraction=0.3).fit(df)
    errors = model.validationErrors
    assert {1e-6, 1.0, 1e4} <= set(errors) and model.getRegParam() == min(errors, key=errors.get)
    fixed = RidgeClassifier(regParam=0.5).fit(df)
    assert fixed.getRegParam() == 0.5 and fixed.validationErrors == {}

    # A grid too low for this data: its best is its upper edge, so the choice goes on past it,
    # in half-decades, while the held-out error falls (three steps at most).
    wide = np.random.default_rng(4).normal(size=(200, 120))  # more features than rows a class: needs a big penalty
    df = spark.createDataFrame([(Vectors.dense(r), float(r[0] > 0)) for r in wide], ["features", "label"])
    low = RidgeClassifier(regGrid=[1e-4, 3e-4], validationFraction=0.3).fit(df)
    beyond = sorted(set(low.validationErrors) - {1e-4, 3e-4})
    errors = low.validationErrors
    assert errors[3e-4] < errors[1e-4] and 1 <= len(beyond) <= 3
    assert beyond == pytest.approx([3e-4 * 10 ** (0.5 * i) for i in range(1, len(beyond) + 1)])
    assert low.getRegParam() == min(errors, key=errors.get) > 3e-4


def test_squared_error_from_the_sums_equals_the_direct_one():
    from sparkvision.models.ridge.solver import NormalEquations as _Sums

    x = RNG.normal(size=(300, 8)).astype(np.float32)
    y = RNG.integers(0, 3, 300)
    sums = _Sums.empty(8, 3)
    sums.add(x[:200], y[:200])
    held = _Sums.empty(8, 3)
    held.add(x[200:], y[200:])
    w, b = sums.solve(0.1, True)
    direct = ((x[200:] @ w + b - np.eye(3)[y[200:]]) ** 2).sum()
    assert held.squared_error(w, b) == pytest.approx(direct, rel=1e-6)
    assert _Sums.empty(8, 3).absorb(sums).absorb(held).n == 300  # (the unused __add__ is gone: absorb adds in place)
    from sparkvision.runtime.npy import from_npy

    rebuilt = _Sums.empty(8, 3)  # the sums travel in row blocks of the upper triangle; added back, the same
    blocks = list(sums.blocks(max_bytes=64))
    assert len(blocks) == 4 and [from_npy(b[0]).shape for _, b in blocks] == [(2, 8), (2, 6), (2, 4), (2, 2)]
    for start, blobs in reversed(blocks):  # in any order
        arrays = [from_npy(b) for b in blobs]
        assert _Sums.size_of_block(start, arrays) == 8
        rebuilt.add_block(start, arrays)
    rebuilt.mirror(step=3)
    np.testing.assert_allclose(rebuilt.gram, sums.gram, rtol=1e-6)
    assert rebuilt.counts.tolist() == sums.counts.tolist() and np.allclose(rebuilt.xty, sums.xty)


def test_the_in_place_cholesky_solve_matches_the_general_one():
    from sparkvision.models.ridge.solver import NormalEquations as _Sums

    x = (RNG.normal(size=(400, 12)) + 5).astype(np.float32)  # far from centred: the centring matters
    y = RNG.integers(0, 4, 400)
    sums = _Sums.empty(12, 4)  # as a task sums it
    sums.add(x, y)
    driver = _Sums.empty(12, 4).absorb(sums)  # as the driver adds it up, in float64
    assert driver.gram.dtype == np.float64 and driver.n == 400
    for reg in (0.0, 1e-3, 1.0):
        w, b = driver.solve(reg, True)
        w_lu, b_lu = driver._solve_lu(reg, True)
        np.testing.assert_allclose(w, w_lu, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(b, b_lu, rtol=1e-9, atol=1e-12)
    # A system Cholesky refuses (not positive definite; rounding could make one at reg ≈ 0): the
    # general solve answers instead.
    odd = _Sums(np.array([[1.0, 2.0], [2.0, 1.0]]), np.eye(2), np.zeros(2), np.array([1.0, 1.0]))
    w, b = odd.solve(0.0, False)
    np.testing.assert_allclose(w, odd._solve_lu(0.0, False)[0])


def test_ridge_refuses_a_negative_regularisation(spark):
    with pytest.raises(ValueError, match="regParam"):
        RidgeClassifier(regParam=-1.0).fit(_frame(spark, 4))


def test_feature_stages_builds_a_patch_estimator():
    (stage,) = feature_stages("patches:64", shape=(32, 32, 3), seed=5)
    assert isinstance(stage, PatchFeatures) and stage.getK() == 64 and stage.getOrDefault("seed") == 5


def test_run_with_patch_features_end_to_end(spark, cifar_py, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["run", "--data", str(cifar_py), "--work-dir", str(tmp_path / "work"), "--out", str(out),
            "--features", "patches", "--centroids", "16"]
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["model"] == "ridge" and metrics["config"]["centroids"] == 16
    assert metrics["accuracy"] > 0.6
    loaded = PipelineModel.load(str(out / "model"))
    assert [type(s).__name__ for s in loaded.stages] == ["PatchFeaturesModel", "RidgeClassifierModel"]


def test_odd_centroids_fail_before_spark_starts(cifar_py, tmp_path, capsys):
    code = main(["run", "--data", str(cifar_py), "--out", str(tmp_path / "o"), "--features", "patches",
                 "--centroids", "15"])
    assert code == 2 and "--centroids" in capsys.readouterr().err
