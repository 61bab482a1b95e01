"""Feature stages: bit-exact grayscale, pixel vectors, and the pyspark.ml stage contract."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.functions import vector_to_array

from sparkvision.features.kernels import rgb_to_gray
from sparkvision.features.pixels import Grayscale, PixelVectorizer, vectors_from_python
from sparkvision.features.sets import feature_stages
from sparkvision.runtime.session import COLUMNAR_INPUT


def _random_images(n, seed=0):
    rng = np.random.default_rng(seed)
    sizes = [(32, 32)] * (n - 3) + [(1, 1), (7, 5), (64, 48)]  # mixed sizes in one batch
    return [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for h, w in sizes]


def test_rgb_to_gray_matches_pillow_on_every_colour_extreme():
    rng = np.random.default_rng(1)
    rgb = np.concatenate([rng.integers(0, 256, size=(5000, 3)), [[0, 0, 0], [255, 255, 255], [255, 0, 0],
                                                                [0, 255, 0], [0, 0, 255], [128, 128, 127]]])
    img = rgb.astype(np.uint8).reshape(1, -1, 3)
    expected = np.asarray(Image.fromarray(img, "RGB").convert("L")).reshape(-1)
    assert np.array_equal(rgb_to_gray(img.reshape(-1)), expected)


def test_grayscale_stage_is_bit_exact_with_pillow(spark):
    images = _random_images(200)
    df = spark.createDataFrame([(i, im.tobytes()) for i, im in enumerate(images)], ["i", "data"]).repartition(3)
    rows = {r.i: r.gray for r in Grayscale().transform(df).select("i", "gray").collect()}
    for i, im in enumerate(images):
        assert rows[i] == Image.fromarray(im, "RGB").convert("L").tobytes(), f"image {i} {im.shape}"


@pytest.fixture(params=["false", "true"], ids=["vectors-from-python", "array_to_vector"])
def vector_path(spark, request):
    """Both of PixelVectorizer's ways to make vectors: sparkvision's sessions turn Spark's columnar
    UDF input off (vectors come from Python); a user's own session may leave it on."""
    old = spark.conf.get(COLUMNAR_INPUT, "true")
    spark.conf.set(COLUMNAR_INPUT, request.param)
    yield request.param
    spark.conf.set(COLUMNAR_INPUT, old)


@pytest.mark.parametrize("features, width", [("gray", 1024), ("rgb", 3072)])
def test_pixel_vectors_are_bytes_over_255(spark, vector_path, features, width):
    images = _random_images(20, seed=2)[:17]  # all 32×32
    df = spark.createDataFrame([(i, im.tobytes()) for i, im in enumerate(images)], ["i", "data"])
    out = PipelineModel(feature_stages(features)).transform(df)
    assert vectors_from_python(out) == (vector_path == "false")
    # cached, as fit_pipeline caches a classifier's input (the columnar path failed exactly here)
    out = out.select("i", "features").persist()
    assert out.count() == len(images) and dict(out.dtypes)["features"] == "vector"
    got = {r.i: r.a for r in out.select("i", vector_to_array("features").alias("a")).collect()}
    out.unpersist()
    for i, im in enumerate(images):
        src = np.asarray(Image.fromarray(im).convert("L")) if features == "gray" else im
        expected = [v / 255.0 for v in src.reshape(-1).tolist()]  # exactly the assignment's pixel/255.0
        assert len(got[i]) == width and got[i] == expected


@pytest.mark.parametrize("stage", [Grayscale(inputCol="rgb", outputCol="g"),
                                   PixelVectorizer(inputCol="g", outputCol="v", maxValue=128.0)])
def test_stage_contract_params_copy_save_load(spark, tmp_path, stage):
    copy = stage.copy()
    assert copy.uid == stage.uid and copy.extractParamMap() == stage.extractParamMap()
    assert copy is not stage
    path = str(tmp_path / "stage")
    stage.write().save(path)
    loaded = type(stage).load(path)
    assert loaded.uid == stage.uid
    assert {p.name: v for p, v in loaded.extractParamMap().items()} == \
           {p.name: v for p, v in stage.extractParamMap().items()}


def test_features_in_a_saved_pipeline_give_the_same_vectors(spark, tmp_path):
    images = _random_images(10, seed=3)[:7]
    df = spark.createDataFrame([(i, im.tobytes()) for i, im in enumerate(images)], ["i", "data"])
    model = Pipeline(stages=feature_stages("gray")).fit(df)
    model.write().save(str(tmp_path / "m"))
    again = PipelineModel.load(str(tmp_path / "m"))
    col = vector_to_array("features").alias("a")
    assert model.transform(df).select("i", col).orderBy("i").collect() == \
           again.transform(df).select("i", col).orderBy("i").collect()


def test_bad_parameters_are_refused(spark):
    df = spark.createDataFrame([(b"\x01\x02",)], ["data"])
    with pytest.raises(Exception, match="multiple of 3"):
        Grayscale().transform(df).collect()
    with pytest.raises(ValueError, match="maxValue must be positive"):
        PixelVectorizer(inputCol="data", maxValue=0.0).transform(df)
    with pytest.raises(ValueError, match="features .hsv.: choose gray, rgb, patches"):
        feature_stages("hsv")


_WORKER = """
import sys
# What a Python worker must not need: pyspark.ml (0.9 s of imports) and pandas (0.5 s).
for name in ("pyspark.ml", "sparkvision.features.pixels", "sparkvision.models.ridge.stage"):
    sys.modules[name] = None
# pandas is checked at the end instead: blocked, pyarrow would quietly do without it
import json
import numpy as np, pyarrow as pa
from pyspark import cloudpickle
gray, pixels, vectors = (cloudpickle.loads(blob) for blob in np.load(sys.argv[1], allow_pickle=True))
# (pa.array on Python objects would itself look for pandas: build the input from buffers)
data = pa.Array.from_buffers(pa.binary(), 2, [None, pa.py_buffer(np.array([0, 30, 60], np.int32)),
                                              pa.py_buffer(np.arange(60, dtype=np.uint8))])
gray_bytes = gray(data)
as_vectors = vectors(gray_bytes).to_pylist()[1]  # VectorUDT's storage: type 1 (dense) and the values
assert "pandas" not in sys.modules, "a feature UDF imported pandas"
print(json.dumps([list(gray_bytes.to_pylist()[1]), pixels(gray_bytes).to_pylist()[1], as_vectors]))
"""


def test_feature_udfs_run_in_a_worker_without_pyspark_ml_or_pandas(tmp_path):
    """The UDF bodies come from a light module: a Python worker imports what a UDF's function
    needs, and pyspark.ml or pandas there cost seconds of every run's first task."""
    import json
    import subprocess
    import sys

    from pyspark import cloudpickle

    from sparkvision.features import pixels as features

    blobs = np.empty(3, dtype=object)
    blobs[:] = [cloudpickle.dumps(features._gray_udf.func), cloudpickle.dumps(features._pixel_udf(255.0).func),
                cloudpickle.dumps(features._pixel_vector_udf(255.0).func)]
    np.save(tmp_path / "udfs.npy", blobs, allow_pickle=True)
    out = subprocess.run([sys.executable, "-c", _WORKER, str(tmp_path / "udfs.npy")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    gray, pixels, vectors = json.loads(out.stdout)
    expected = rgb_to_gray(np.arange(30, 60, dtype=np.uint8))
    assert gray == expected.tolist()
    assert pixels == (expected / 255).tolist()
    assert vectors == {"type": 1, "size": None, "indices": None, "values": (expected / 255).tolist()}


def test_python_workers_are_warmed_by_a_job_of_their_own(spark):
    """``warm_python_workers`` runs one small job (its own job group) through the feature UDFs,
    which starts and imports their workers, and returns at once: the run goes on while it works."""
    from sparkvision.features.warmup import WARM_UP_GROUP, warm_python_workers

    thread = warm_python_workers(spark)
    thread.join(timeout=120)
    assert not thread.is_alive()
    tracker = spark.sparkContext.statusTracker()
    jobs = [tracker.getJobInfo(j) for j in tracker.getJobIdsForGroup(WARM_UP_GROUP)]
    assert jobs and all(job.status == "SUCCEEDED" for job in jobs)
