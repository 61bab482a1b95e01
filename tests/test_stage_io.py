"""Saving models: sparkvision's direct metadata writes give what pyspark.ml's own writers give."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.functions import vector_to_array

from sparkvision.features.sets import feature_stages
from sparkvision.runtime.stage_io import is_local_path, save_metadata, save_pipeline_model


@pytest.mark.parametrize("path, default_fs, local", [
    ("/tmp/run/model", "file:///", True),
    ("runs/x/model", "file:///", True),
    ("file:///tmp/run/model", "file:///", True),
    ("file:/tmp/run/model", "hdfs://namenode:8020", True),
    ("/user/me/model", "hdfs://namenode:8020", False),  # no scheme: Hadoop's default file system
    ("hdfs://namenode:8020/user/me/model", "file:///", False),
    ("s3a://bucket/model", "file:///", False),
])
def test_local_paths_are_told_from_other_file_systems(path, default_fs, local):
    assert is_local_path(path, default_fs) is local


def _files(root: Path) -> list[str]:
    names = (str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    return sorted(n.rsplit("part-", 1)[0] + "part" if "/part-" in "/" + n else n for n in names)


def _metadata(folder: Path) -> dict:
    [part] = [p for p in (folder / "metadata").iterdir() if p.name.startswith("part-")]
    meta = json.loads(part.read_text().splitlines()[0])
    meta.pop("timestamp")
    return meta


@pytest.fixture(scope="module")
def fitted(spark):
    rows = [(float(i % 2), bytes([(i * 37 + k) % 256 for k in range(12)])) for i in range(40)]
    df = spark.createDataFrame(rows, ["label", "data"])
    stages = feature_stages("gray", shape=(2, 2, 3)) + [LogisticRegression(maxIter=3)]
    return Pipeline(stages=stages).fit(df), df


def test_a_pipeline_saves_as_pyspark_saves_it_and_loads_back(spark, fitted, tmp_path):
    model, df = fitted
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    save_pipeline_model(model, str(ours), spark)
    model.write().save(str(theirs))
    # The same files (Spark names its part files with a job id), the same metadata but for the
    # time it was written; the classifier is saved by the JVM in both.
    assert _files(ours) == _files(theirs)
    assert (ours / "metadata" / "part-00000").is_file()  # written directly, not by a Spark job
    assert _metadata(ours) == _metadata(theirs)
    stage_dirs = sorted(p.name for p in (ours / "stages").iterdir())
    assert stage_dirs == sorted(p.name for p in (theirs / "stages").iterdir())
    for name in stage_dirs:
        assert _metadata(ours / "stages" / name) == _metadata(theirs / "stages" / name)
    again = PipelineModel.load(str(ours))
    col = vector_to_array("probability").alias("p")
    assert again.transform(df).select(col).collect() == model.transform(df).select(col).collect()


def test_metadata_is_not_written_over(spark, fitted, tmp_path):
    model, _ = fitted
    save_metadata(model.stages[0], str(tmp_path / "stage"), spark)
    with pytest.raises(FileExistsError):
        save_metadata(model.stages[0], str(tmp_path / "stage"), spark)
