"""predict's local engine (no JVM) against the Spark engine: same files, labels and probabilities.

Models are fitted once per module on a few dozen synthetic pictures and saved as ``sparkvision
run`` saves them; both engines then label the same folder, which holds broken files and names
Spark's listing skips.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from sparkvision.cli import main
from sparkvision.inference.predict import choose_engine, predict, predict_local

CLASSES = ("cats", "dogs", "fish")
COLOURS = {"cats": (200, 40, 40), "dogs": (40, 40, 200), "fish": (40, 200, 40)}


def _picture(rng, colour, height, width) -> Image.Image:
    pixels = np.clip(rng.normal(colour, 45, size=(height, width, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    """A folder to label: three formats and sizes per class, broken files, and names Spark skips."""
    root = tmp_path_factory.mktemp("to-label")
    rng = np.random.default_rng(3)
    for cls, colour in COLOURS.items():
        (root / cls).mkdir()
        for i in range(6):
            _picture(rng, colour, 28 + 5 * i, 40).save(root / cls / f"{i}.{('jpg', 'png', 'bmp')[i % 3]}")
    _picture(rng, COLOURS["cats"], 32, 32).save(root / "cats" / "UPPER.JPG", "JPEG")
    _picture(rng, COLOURS["dogs"], 32, 32).convert("L").save(root / "dogs" / "gray.png")
    (root / "cats" / "notes.jpg").write_bytes(b"this is not a picture")
    good = (root / "dogs" / "1.png").read_bytes()
    (root / "dogs" / "cut.png").write_bytes(good[: len(good) // 3])
    for skipped in (".hidden.jpg", "_underscore.jpg", "Mixed.Jpg"):  # Spark's listing leaves these out
        _picture(rng, COLOURS["fish"], 32, 32).save(root / "fish" / skipped, "JPEG")
    return root


@pytest.fixture(scope="module")
def models(spark, tmp_path_factory):
    """Saved models: forest, tree and naive Bayes on gray, logistic regression on RGB (multinomial,
    and binomial on two classes), ridge on patch features, and a perceptron (which the local
    engine does not evaluate)."""
    from sparkvision.api import save_model
    from sparkvision.models.registry import build_classifier
    from sparkvision.features.patches import PatchFeatures
    from sparkvision.features.sets import feature_stages
    from sparkvision.models.fitting import fit_pipeline, label_with_classes
    from sparkvision.models.ridge.stage import RidgeClassifier

    rng = np.random.default_rng(5)
    rows = [(np.asarray(_picture(rng, COLOURS[c], 32, 32)).tobytes(), float(k))
            for k, c in enumerate(CLASSES) for _ in range(16)]
    train = label_with_classes(spark.createDataFrame(rows, ["data", "label"]), CLASSES).cache()
    two = label_with_classes(train.filter("label < 2"), CLASSES[:2])
    base = tmp_path_factory.mktemp("local-models")
    specs = {
        "forest": (feature_stages("gray") + [build_classifier("random_forest", seed=42, numTrees=5, maxDepth=4)],
                   train, CLASSES),
        "tree": (feature_stages("gray") + [build_classifier("decision_tree", seed=42, maxDepth=4)], train, CLASSES),
        "logistic": (feature_stages("rgb") + [build_classifier("logistic_regression", maxIter=5)], train, CLASSES),
        "binomial": (feature_stages("rgb") + [build_classifier("logistic_regression", maxIter=5, regParam=0.1)
                                              .setFamily("binomial")], two, CLASSES[:2]),
        "patches": ([PatchFeatures(inputCol="data", outputCol="features", k=16, numPatches=1000, maxIter=2, seed=42),
                     RidgeClassifier(regParam=1e-3)], train, CLASSES),
        "bayes": (feature_stages("gray") + [build_classifier("naive_bayes")], train, CLASSES),
        "mlp": (feature_stages("gray") + [build_classifier("mlp", num_features=1024, num_classes=3, hidden=[4],
                                                           maxIter=3, seed=42)], train, CLASSES),
    }

    def fit_and_save(name):  # small fits are mostly waiting on Spark's scheduling: three at a time
        stages, data, classes = specs[name]
        return name, str(save_model(fit_pipeline(stages, data), base / name, classes))

    with ThreadPoolExecutor(3) as pool:
        saved = dict(pool.map(fit_and_save, specs))
    train.unpersist()
    return saved


def _read(path):
    with open(path, newline="") as f:
        return {row["path"]: row for row in csv.DictReader(f)}


def _both(spark, model, folder, tmp_path, k):
    a = predict(spark, model, [str(folder)], top_k=k, out=str(tmp_path / "spark.csv"), progress=False)
    b = predict_local(model, [str(folder)], top_k=k, out=str(tmp_path / "local.csv"), progress=False)
    return a, b, _read(tmp_path / "spark.csv"), _read(tmp_path / "local.csv")


# rtol per model: 0 means bit-identical. Logistic regression, naive Bayes: Spark's gemv adds the
# products in another order, Java's exp and log may differ from C's in the last bit (measured:
# 4e-15). Ridge: float32 scores, whose last bits depend on BLAS's code path (Spark's own values
# move by as much with how rows fall into Arrow batches; measured here: 7e-6).
@pytest.mark.parametrize("name, rtol", [("forest", 0.0), ("tree", 0.0), ("logistic", 1e-12),
                                        ("binomial", 1e-12), ("bayes", 1e-12), ("patches", 1e-4)])
def test_local_engine_matches_spark(spark, models, pictures, tmp_path, name, rtol):
    k = 2 if name == "binomial" else 3
    spark_result, local_result, by_spark, by_local = _both(spark, models[name], pictures, tmp_path, k)
    assert spark_result["engine"] == "spark" and local_result["engine"] == "local"
    assert local_result["predicted"] == spark_result["predicted"] == len(by_local) == 20
    assert set(by_local) == set(by_spark)  # the same files: .hidden, _underscore and .Jpg left out by both
    assert sorted(map(str, local_result["skipped"])) == sorted(map(str, spark_result["skipped"]))
    assert {s["path"].rsplit("/", 1)[1] for s in local_result["skipped"]} == {"notes.jpg", "cut.png"}
    labels = [f"label_{i}" for i in range(1, k + 1)]
    probs = [f"probability_{i}" for i in range(1, k + 1)]
    for path, row in by_spark.items():
        assert [by_local[path][c] for c in labels] == [row[c] for c in labels], path
        got = np.array([float(by_local[path][c]) for c in probs])
        want = np.array([float(row[c]) for c in probs])
        if rtol:
            np.testing.assert_allclose(got, want, rtol=rtol, atol=0, err_msg=path)
        else:
            assert got.tolist() == want.tolist(), path
    if name != "binomial":  # the models learned something (a sanity check, not the point): chance is 1/3
        assert sum(row["label_1"] == path.split("/")[-2] for path, row in by_local.items()) > len(by_local) / 2


def test_without_top_k_a_two_class_model_gives_both_labels(models, pictures, tmp_path, capsys):
    """The default --top-k (3) asks for no more labels than a model has; a number given is checked."""
    out = tmp_path / "two.csv"
    assert main(["predict", models["binomial"], str(pictures / "cats"), "--engine", "local", "--out", str(out),
                 "--quiet"]) == 0
    rows = _read(out)
    assert rows and all(set(row) >= {"label_1", "label_2"} and "label_3" not in row for row in rows.values())
    assert main(["predict", models["binomial"], str(pictures / "cats"), "--engine", "local", "--top-k", "3"]) == 2
    assert "--top-k must be between 1 and 2, not 3" in capsys.readouterr().err


def test_save_model_refuses_what_would_not_load_and_writes_nothing_half_way(models, tmp_path, monkeypatch):
    """Public API: a folder that exists, class names load_model refuses or that do not match the
    classes the model predicts are refused before anything is written; a good save leaves no
    temporary beside it and loads back."""
    from sparkvision.api import load_model, save_model
    from sparkvision.errors import ConfigError
    from sparkvision.models import persistence

    model, names = load_model(models["forest"])
    assert len(names) == 3
    taken = tmp_path / "taken"
    taken.mkdir()
    for target, class_names, size, message in [
        (taken, names, 32, "already exists"),
        (tmp_path / "a", ["a", "a", "b"], 32, "class a named twice"),
        (tmp_path / "b", ["a", "", "b"], 32, "class_names must be a list of names"),
        (tmp_path / "c", names, 0, "image_size must be a whole number of pixels from 1 to 1024"),
        (tmp_path / "d", names[:2], 32, "2 class names, but the model predicts 3 classes"),
    ]:
        with pytest.raises(ConfigError, match=message):
            save_model(model, target, class_names, size)
    # the patch features record the size they were fitted on: another would be refused by load_model
    patches, _ = load_model(models["patches"])
    with pytest.raises(ConfigError, match=r"image_size=64, but stage PatchFeatures\w* takes 32×32 images"):
        save_model(patches, tmp_path / "e", names, 64)
    # a save that fails half way (here the labels file) leaves neither the model nor its temporary
    with monkeypatch.context() as patch:
        patch.setattr(persistence, "write_labels", lambda *a: (_ for _ in ()).throw(OSError(28, "No space left")))
        with pytest.raises(ConfigError, match=f"save_model: cannot write {tmp_path / 'f'} \\(No space left\\)"):
            save_model(model, tmp_path / "f", names)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"] and not list(taken.iterdir())
    saved = save_model(model, tmp_path / "good", names)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good", "taken"]
    assert load_model(saved)[1] == names


def test_local_engine_refuses_an_unsupported_model_by_name(models, pictures, capsys):
    code = main(["predict", models["mlp"], str(pictures / "cats" / "0.jpg"), "--engine", "local"])
    err = capsys.readouterr().err
    assert code == 2 and "2_MultilayerPerceptronClassifier_" in err and "--engine spark" in err
    engine, why = choose_engine("auto", models["mlp"], [str(pictures / "cats" / "0.jpg")])
    assert engine == "spark" and "MultilayerPerceptronClassificationModel" in why
    assert choose_engine("auto", models["forest"], [str(pictures)], master_given=True)[0] == "spark"


def test_auto_labels_one_image_locally_without_importing_pyspark(models, pictures, tmp_path):
    out = tmp_path / "one.jsonl"
    code = ("import sys; from sparkvision.cli import main; code = main(sys.argv[1:]); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pyspark', 'py4j')))")
    done = subprocess.run([sys.executable, "-c", code, "predict", models["patches"], str(pictures / "fish" / "2.bmp"),
                           "--out", str(out), "--top-k", "2"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"  # neither pyspark nor py4j was imported
    assert "labelled 1 image(s)" in done.stderr and "local engine" in done.stderr
    line = json.loads(out.read_text())
    assert line["path"].endswith("fish/2.bmp") and [t["label"] for t in line["top"]][0] == "fish"
    assert len(line["top"]) == 2 and line["top"][0]["probability"] >= line["top"][1]["probability"]


def test_matrices_and_vectors_read_as_spark_stores_them():
    from pyspark.ml.linalg import DenseMatrix, MatrixUDT, SparseMatrix, Vectors, VectorUDT

    from sparkvision.inference.local import _matrix, _vector

    fields = ("type", "numRows", "numCols", "colPtrs", "rowIndices", "values", "isTransposed")
    a = np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 3.0]])
    for m in (DenseMatrix(2, 3, a.T.ravel().tolist()), DenseMatrix(2, 3, a.ravel().tolist(), isTransposed=True),
              SparseMatrix(2, 3, [0, 1, 1, 3], [0, 0, 1], [1.0, 2.0, 3.0]),
              SparseMatrix(2, 3, [0, 2, 3], [0, 2, 2], [1.0, 2.0, 3.0], isTransposed=True)):
        assert np.array_equal(m.toArray(), a)
        assert np.array_equal(_matrix(dict(zip(fields, MatrixUDT().serialize(m)))), a)
    for v in (Vectors.dense([0.0, 4.0, 5.0]), Vectors.sparse(3, [1, 2], [4.0, 5.0])):
        stored = dict(zip(("type", "size", "indices", "values"), VectorUDT().serialize(v)))
        assert _vector(stored).tolist() == [0.0, 4.0, 5.0]


def test_master_given_means_spark_and_the_summary_says_so(spark, models, pictures, tmp_path, capsys):
    one = str(pictures / "fish" / "2.bmp")
    args = ["predict", models["forest"], one, "--top-k", "3", "--conf", "spark.ui.enabled=false"]
    assert main([*args, "--master", "local[2]", "--out", str(tmp_path / "spark.csv")]) == 0
    assert "(csv; Spark: --master given)" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "local.csv")]) == 0
    assert "(csv; local engine: 1 image(s), every stage supported)" in capsys.readouterr().err
    assert (tmp_path / "spark.csv").read_text() == (tmp_path / "local.csv").read_text()
    assert main([*args, "--engine", "local", "--master", "local[2]"]) == 2
    assert "--engine local runs without Spark" in capsys.readouterr().err


def test_the_announced_count_is_of_the_files_spark_reads(pictures):
    """`labelling N image(s)` counts what is read: 20 labelled and 2 unreadable here, not the
    hidden, underscore and odd-case names that Spark's listing leaves out."""
    from sparkvision.inference.predict import expand_inputs

    assert expand_inputs([str(pictures)])[1] == 22
    paths, count = expand_inputs([str(pictures / "fish" / "*")])  # a glob: given files, same rules
    assert count == 6 and all("Mixed" not in p and "_underscore" not in p for p in paths)



def test_an_image_reached_several_ways_is_labelled_once_by_both_engines(spark, models, pictures, tmp_path):
    """A file given twice, again through its folder and through a glob: one row, in both engines."""
    one = str(pictures / "dogs" / "0.jpg")
    inputs = [one, one, str(pictures / "dogs"), str(pictures / "dogs" / "0.*")]
    a = predict(spark, models["forest"], inputs, top_k=1, out=str(tmp_path / "spark.csv"), progress=False)
    b = predict_local(models["forest"], inputs, top_k=1, out=str(tmp_path / "local.csv"), progress=False)
    for result, out in ((a, "spark.csv"), (b, "local.csv")):
        with open(tmp_path / out, newline="") as f:
            paths = [row["path"] for row in csv.DictReader(f)]
        assert result["predicted"] == len(paths) == len(set(paths)) == 7  # the folder's six numbered images and gray.png (cut.png is skipped)
        assert paths.count(one) == 1

def test_a_bad_out_or_labels_file_fails_before_any_labelling(models, pictures, tmp_path, capsys):
    model = models["forest"]
    argv = ["predict", model, str(pictures), "--engine", "local", "--quiet"]
    assert main([*argv, "--out", str(tmp_path)]) == 2
    assert "is a folder; give the name of the file" in capsys.readouterr().err
    assert main([*argv, "--out", str(tmp_path / "no" / "such" / "labels.csv")]) == 2
    assert "does not exist; create it first" in capsys.readouterr().err
    # a file named for one format holding the other, or for a compression it would not have
    assert main([*argv, "--format", "jsonl", "--out", str(tmp_path / "a.csv")]) == 2
    assert "--format jsonl and --out" in capsys.readouterr().err
    assert main([*argv, "--out", str(tmp_path / "a.csv.gz")]) == 2
    assert "not .gz compressed" in capsys.readouterr().err
    assert main([*argv, "--out", str(tmp_path / "upper.JSONL")]) == 0 and capsys.readouterr()
    assert (tmp_path / "upper.JSONL").read_text().startswith("{")  # the suffix's case does not matter
    (tmp_path / "upper.JSONL").unlink()
    assert list(tmp_path.iterdir()) == []  # no temporary file left anywhere
    # A damaged class list beside the model: the file is named, no traceback.
    import shutil

    copy = shutil.copytree(model, tmp_path / "copy")
    labels = next(copy.rglob("sparkvision-labels.json"))
    labels.write_text('{"class_names": ')
    assert main(["predict", str(copy), str(pictures), "--quiet"]) == 4
    err = capsys.readouterr().err
    assert str(labels) in err and "not a readable class list" in err and "Traceback" not in err


def test_a_closed_pipe_ends_predict_quietly(models, pictures):
    """`sparkvision predict … | head -1`: the reader leaving is not an error to report."""
    proc = subprocess.Popen([sys.executable, "-m", "sparkvision", "predict", models["forest"], str(pictures),
                             "--engine", "local", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # before the first row is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and "Traceback" not in err and "error" not in err


def test_both_engines_list_empty_files_links_and_other_formats_alike(spark, models, tmp_path):
    """Spark's reader drops empty files and links to nothing without a word: both engines list them
    (from the listing), and the files that are not images to read, the same way."""
    folder = tmp_path / "odd [set]"  # brackets: Spark would read the path as a glob pattern
    folder.mkdir()
    rng = np.random.default_rng(7)
    _picture(rng, COLOURS["cats"], 32, 32).save(folder / "good one.png")
    _picture(rng, COLOURS["cats"], 32, 32).save(folder / "scan.tiff", "TIFF")
    (folder / "empty.png").write_bytes(b"")
    (folder / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    a = predict(spark, models["forest"], [str(folder)], out=str(tmp_path / "spark.csv"), progress=False)
    b = predict_local(models["forest"], [str(folder)], out=str(tmp_path / "local.csv"), progress=False)
    assert a["predicted"] == b["predicted"] == 1
    assert _read(tmp_path / "spark.csv") == _read(tmp_path / "local.csv")
    assert sorted(map(str, a["skipped"])) == sorted(map(str, b["skipped"]))
    assert {s["path"]: s["reason"] for s in b["skipped"]} == {
        str(folder / "empty.png"): "empty file (0 bytes)",
        str(folder / "gone.jpg"): f"a symbolic link to {tmp_path / 'nowhere.jpg'}, which does not exist"}
    assert a["ignored"] == b["ignored"] == [{"path": str(folder / "scan.tiff"), "reason": "not a supported image "
                                             "format (.tiff); sparkvision reads .jpg, .jpeg, .png, .gif, .bmp, .webp"}]


def test_every_skipped_and_ignored_file_is_counted_beyond_the_first_thousand_listed(spark, models, tmp_path, capsys):
    """Both lists stop at 1,000 entries; their counts do not (they said 1,000 of 1,003 before)."""
    folder = tmp_path / "many"
    folder.mkdir()
    _picture(np.random.default_rng(9), COLOURS["dogs"], 32, 32).save(folder / "good.png")
    (folder / "not a picture.jpg").write_text("text")  # found by decoding, not by the listing
    for i in range(1002):
        (folder / f"e{i}.png").write_bytes(b"")
        (folder / f"n{i}.txt").write_text("")
    a = predict(spark, models["forest"], [str(folder)], out=str(tmp_path / "spark.csv"), progress=False)
    assert (a["predicted"], a["skipped_count"], len(a["skipped"]), a["ignored_count"], len(a["ignored"])) == \
        (1, 1003, 1000, 1002, 1000)
    assert main(["predict", models["forest"], str(folder), "--engine", "local", "--quiet",
                 "--out", str(tmp_path / "local.csv")]) == 0
    err = capsys.readouterr().err
    assert "skipped 1,003 unreadable file(s) (the first 1,000 listed):" in err
    assert "ignored 1,002 file(s) that are not images to read (the first 1,000 listed):" in err
    assert len([line for line in err.splitlines() if line.startswith("  ")]) == 2000


@pytest.mark.parametrize("name, features", [("forest", 1024), ("logistic", 3072), ("bayes", 1024), ("mlp", 1024)])
def test_a_labels_file_whose_image_size_the_pixel_classifier_cannot_take_is_named(models, pictures, tmp_path,
                                                                                    capsys, name, features):
    """Pixel stages record no image size, their classifier a feature count: a labels file saying 16
    where the model was fitted on 32 is named before any output (it failed mid-output with exit 2)."""
    import json
    import shutil

    copy = shutil.copytree(models[name], tmp_path / "copy")
    labels = next(copy.rglob("sparkvision-labels.json"))
    labels.write_text(json.dumps({**json.loads(labels.read_text()), "image_size": 16}))
    assert main(["predict", str(copy), str(pictures), "--quiet"]) == 4
    out, err = capsys.readouterr()
    assert out == "" and str(labels) in err and f"takes {features}" in err and "Traceback" not in err
