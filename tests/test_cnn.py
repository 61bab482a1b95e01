"""The CNN: a tiny run that learns, through real TorchDistributor (2 local processes, gloo),
save/load, predict_batch_udf against in-process torch, a killed run that resumes, and bad input.

Every run here is tiny (320 training images of the synthetic release, narrow widths, 64-image
batches): seconds, not minutes. Accuracy and speed on real data are benchmarks
(``benchmarks/cnn.py``), not tests.
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.ml import PipelineModel

from helpers import kill_when, run_cli
from sparkvision.cli import main
from sparkvision.models.cnn.inference import Predictor
from sparkvision.models.cnn.settings import (LEARNING_RATES, PRESETS, check_safetensors, cpu_has_native_bfloat16,
                                             parse_cnn_value, preset_name, resolve_precision)
from sparkvision.models.cnn.training import TrainJob, TrainSettings, lr_factor, progressive_sizes, train
from sparkvision.errors import BadDataError
from sparkvision.models.fitting import label_with_classes
from sparkvision.data.ingest import split_table

TINY = ["--model", "cnn", "--epochs", "4", "--param", "widths=16,32,32", "--param", "batchSize=64"]


def _argv(cifar_py: Path, base: Path) -> list[str]:
    # local[2] as the tests' shared session: a killed child run and its in-process rerun train with
    # the same number of processes on any machine (a checkpoint of another number is not resumed).
    return ["run", "--data", str(cifar_py), "--work-dir", str(base / "work"), "--out", str(base / "out"),
            "--master", "local[2]", *TINY]


@pytest.fixture(scope="module")
def cnn_run(spark, cifar_py, tmp_path_factory):
    """One tiny `sparkvision run --model cnn` in this process (2 torchrun processes), and what it printed."""
    base = tmp_path_factory.mktemp("cnn")
    status = main(_argv(cifar_py, base))
    assert status == 0
    return base, json.loads((base / "out" / "metrics.json").read_text())


def test_a_tiny_run_learns_and_records_its_curve(cnn_run):
    base, metrics = cnn_run
    assert metrics["accuracy"] > 0.3  # ten learnable classes, 320 images, 4 short epochs: chance is 0.1
    cnn = metrics["cnn"]
    assert [p["epoch"] for p in cnn["curve"]] == [1, 2, 3, 4]
    assert cnn["curve"][-1]["loss"] < cnn["curve"][0]["loss"]
    assert cnn["processes"] == 2 and cnn["threads_per_process"] == 1 and cnn["world_size"] == 2  # DDP over gloo
    assert cnn["weight_average"] is False  # 20 steps: too short for the lookahead average to pay
    assert cnn["precision"] == resolve_precision("auto", False) and cnn["device"] == "cpu"
    assert cnn["preset"] == preset_name(cnn["precision"], False) and cnn["preset"] in PRESETS
    # the preset: the first epochs train on smaller images (progressive resizing)
    assert [tuple(p["image_size"]) for p in cnn["curve"]] == progressive_sizes(4, 32, 32) != [(32, 32)] * 4
    assert metrics["config"]["model_params"]["widths"] == [16, 32, 32]
    # The checkpoints served their purpose once the model was saved.
    assert not any((base / "work" / "cnn").iterdir())


def test_the_saved_model_loads_and_gives_the_same_predictions(spark, cnn_run, cifar_py, tmp_path):
    base, metrics = cnn_run
    model = PipelineModel.load(str(base / "out" / "model"))
    stage = model.stages[-1]
    assert type(stage).__name__ == "CNNClassificationModel" and stage.getOrDefault("widths") == [16, 32, 32]
    table = spark.read.parquet(metrics["data"]["table"])
    _, test = split_table(label_with_classes(table, metrics["class_names"]), False, 0.2, 42)
    first = model.transform(test).select("id", "probability", "prediction", "rawPrediction").orderBy("id").collect()
    model.write().overwrite().save(str(tmp_path / "again"))
    second = PipelineModel.load(str(tmp_path / "again")).transform(test).select("id", "probability").orderBy("id").collect()
    assert [r.id for r in first] == [r.id for r in second]
    assert all(np.array_equal(a.probability.toArray(), b.probability.toArray()) for a, b in zip(first, second))
    accuracy = np.mean([r.prediction == lab for r, lab in zip(first, _labels(test))])
    assert accuracy == pytest.approx(metrics["accuracy"])

    # predict_batch_udf (one Python worker per task) against the same network in this process
    rows = test.select("id", "data").orderBy("id").collect()
    predictor = Predictor(stage._weights, stage.inference_config())
    images = np.stack([np.frombuffer(r.data, np.uint8).reshape(32, 32, 3) for r in rows])
    logits, probability = predictor.predict_images(images)
    spark_probability = np.stack([r.probability.toArray() for r in first])
    spark_raw = np.stack([r.rawPrediction.toArray() for r in first])
    np.testing.assert_allclose(spark_probability, probability, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(spark_raw, logits, rtol=1e-5, atol=1e-5)


def _labels(df) -> list[int]:
    return [r.label for r in df.select("id", "label").orderBy("id").collect()]


def test_predict_labels_images_with_both_engines_alike(spark, cnn_run, tmp_path):
    from PIL import Image

    from sparkvision.data.sources.synthetic import synthetic_images
    from sparkvision.inference.predict import predict, predict_local

    base, _ = cnn_run
    labels, data = synthetic_images(5, seed=7)
    for i in range(5):
        Image.fromarray(data[i].reshape(3, 32, 32).transpose(1, 2, 0)).save(tmp_path / f"img {i}.png")
    predict_local(str(base / "out"), [str(tmp_path)], out=str(tmp_path / "local.csv"), progress=False)
    predict(spark, str(base / "out"), [str(tmp_path)], out=str(tmp_path / "spark.csv"), progress=False)
    by_local, by_spark = (sorted((tmp_path / f"{e}.csv").read_text().splitlines()) for e in ("local", "spark"))
    assert len(by_local) == 6  # a header and five images
    for a, b in zip(by_local, by_spark):
        path_a, *values_a = a.split(",")
        path_b, *values_b = b.split(",")
        assert path_a == path_b and values_a[0::2] == values_b[0::2]  # the same labels in the same order
        if path_a != "path":
            np.testing.assert_allclose([float(v) for v in values_a[1::2]], [float(v) for v in values_b[1::2]],
                                       rtol=1e-5)


def test_a_run_killed_mid_training_resumes_after_its_last_finished_epoch(spark, cnn_run, cifar_py, tmp_path):
    argv = _argv(cifar_py, tmp_path)
    # kill -9 once the second epoch's line is out (its checkpoint is written before the line)
    status = kill_when(argv, lambda lines: any("epoch 2/4" in line for line in lines), hold_at="epoch-2")
    assert status == -signal.SIGKILL
    assert not (tmp_path / "out").exists()
    checkpoints = list((tmp_path / "work" / "cnn").glob("*/epochs/last-epoch.pt"))
    assert len(checkpoints) == 1
    assert main(argv) == 0  # the same command again: resumes (this process's session)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    # after epoch 2, where the run was held and killed (measured here); 3 is allowed should the training
    # processes, let go when the command died, write the third epoch's checkpoint before they go too
    assert metrics["cnn"]["resumed_after_epoch"] in (2, 3)
    assert [p["epoch"] for p in metrics["cnn"]["curve"]] == [1, 2, 3, 4]
    # the epochs after the resume trained at the sizes the uninterrupted run's did
    assert [tuple(p["image_size"]) for p in metrics["cnn"]["curve"]] == progressive_sizes(4, 32, 32)
    # The same data, order and augmentation as the uninterrupted run: the same accuracy, give or take.
    assert abs(metrics["accuracy"] - cnn_run[1]["accuracy"]) <= 0.1


@pytest.mark.parametrize("args, named", [
    (["--epochs", "0"], "epochs"),
    (["--param", "widths=64,128"], "widths"),
    (["--param", "widths=64,x,128"], "widths"),
    (["--param", "precision=float16"], "precision"),
    (["--param", "batchSize=0"], "batchSize"),
    (["--param", "optimizer=adam"], "optimizer"),
    (["--features", "patches"], "--features"),
])
def test_bad_params_are_refused_before_spark_starts(tmp_path, args, named):
    done = run_cli("run", "--data", str(tmp_path), "--model", "cnn", *args, "--out", str(tmp_path / "out"))
    assert done.returncode == 2, done.stderr
    assert named in done.stderr and "[1/5]" not in done.stderr  # no session was started
    assert not (tmp_path / "out").exists()


def test_without_torch_the_cnn_names_the_extra_to_install(tmp_path):
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['torch'] = None\n")
    done = run_cli("run", "--data", str(tmp_path), "--model", "cnn", env={"PYTHONPATH": str(tmp_path)})
    assert done.returncode == 2
    assert "sparkvision[torch]" in done.stderr and "[1/5]" not in done.stderr


def test_a_damaged_weights_file_is_named_with_exit_4(spark, cnn_run, tmp_path, capsys):
    base, _ = cnn_run
    model = tmp_path / "model"
    shutil.copytree(base / "out" / "model", model)
    (data,) = model.glob("stages/*CNNClassificationModel*/data")
    for part in data.glob("part-*"):
        part.unlink()
    pq.write_table(pa.table({"weights": pa.array([b"\x10\x00\x00\x00\x00\x00\x00\x00{not json"], pa.binary())}),
                   data / "part-00000.parquet")
    image = tmp_path / "one.png"
    from PIL import Image

    Image.new("RGB", (32, 32), (200, 10, 10)).save(image)
    for engine in ("local", "spark"):
        capsys.readouterr()
        assert main(["predict", str(model), str(image), "--engine", engine, "--quiet"]) == 4
        err = capsys.readouterr().err
        assert str(data) in err and "safetensors" in err and "unexpected" not in err


def test_safetensors_check_and_precision_choice():
    with pytest.raises(BadDataError, match="too short"):
        check_safetensors(b"abc", "w")
    with pytest.raises(BadDataError, match="outside the file"):
        check_safetensors(b"\x2a\x00\x00\x00\x00\x00\x00\x00" + b'{"a":{"data_offsets":[0,99]}}'.ljust(42), "w")
    assert cpu_has_native_bfloat16("flags\t: fpu avx2 amx_bf16 amx_tile\n")
    assert not cpu_has_native_bfloat16("flags\t: fpu avx2 fma\n")
    assert resolve_precision("auto", True) == "bfloat16" and resolve_precision("float32", True) == "float32"
    # bfloat16's epochs by what computes it: AMX tiles or a GPU 18, AVX512-BF16 alone 13
    amx, avx512 = "flags\t: avx512f avx512_bf16 amx_bf16 amx_tile\n", "flags\t: avx512f avx512_bf16\n"
    assert preset_name("bfloat16", False, amx) == preset_name("bfloat16", True, avx512) == "bfloat16"
    assert preset_name("bfloat16", False, avx512) == "bfloat16-avx512" and preset_name("float32", False, amx) == "float32"
    assert PRESETS["bfloat16"]["epochs"] > PRESETS["bfloat16-avx512"]["epochs"]
    # airbench's schedule: 0.2 at the start, 1 at 23 % of the steps, 0.07 at the end
    assert lr_factor(0, 100) == pytest.approx(0.2) and lr_factor(23, 100) == pytest.approx(1.0)
    assert lr_factor(100, 100) == pytest.approx(0.07)
    assert sys.modules.get("torch") is not None


def _shard(tmp_path: Path, n: int = 320) -> str:
    from sparkvision.data.sources.synthetic import synthetic_images

    labels, data = synthetic_images(n, seed=3)
    rgb = data.reshape(n, 3, 32, 32).transpose(0, 2, 3, 1).reshape(n, -1)
    path = tmp_path / "shard.parquet"
    pq.write_table(pa.table({"label": pa.array(labels, pa.int32()),
                             "data": pa.array([row.tobytes() for row in rgb], pa.binary())}), path)
    return str(path)


@pytest.mark.parametrize("optimizer,micro_batch,progressive", [("sgd", 16, False), ("muon", 16, True),
                                                               ("muon", 0, False)],
                         ids=["sgd-chunks", "muon-chunks-progressive", "muon-whole-batch"])
def test_both_update_rules_learn_with_batches_summed_over_chunks(tmp_path, optimizer, micro_batch, progressive):
    """In this process, without Spark: each update rule lowers the loss when a step's batch is
    summed over chunks (a CPU's way) or taken whole (a GPU's), with or without progressive
    resizing (its epochs train on the smaller images it names), and its checkpoint holds every
    optimizer's state, loadable without pickle."""
    import torch

    from sparkvision.models.cnn.training import CHECKPOINT_FILE

    settings = TrainSettings(epochs=3, widths=(8, 16, 16), batch_size=64, micro_batch=micro_batch,
                             optimizer=optimizer, lr=LEARNING_RATES[optimizer], progressive=progressive)
    job = TrainJob([_shard(tmp_path)], (32, 32, 3), str(tmp_path / "epochs"), str(tmp_path / "w.safetensors"),
                   settings.to_json(), progress=False)
    result = train(json.dumps(job.__dict__))
    losses = [p["loss"] for p in result["curve"]]
    assert len(losses) == 3 and losses[-1] < losses[0]
    sizes = [tuple(p["image_size"]) for p in result["curve"]]
    assert sizes == ([(16, 16), (20, 20), (32, 32)] if progressive else [(32, 32)] * 3)
    assert result["steps"] == 3 * (320 // 64)
    state = torch.load(tmp_path / "epochs" / CHECKPOINT_FILE, weights_only=True)
    assert set(state["optimizer"]) == ({"sgd", "muon"} if optimizer == "muon" else {"sgd"})
    assert all(len(opt["state"]) > 0 for opt in state["optimizer"].values())  # momentum buffers saved


def test_only_runs_long_enough_keep_the_weight_average(tmp_path, monkeypatch):
    """A run of fewer steps than LOOKAHEAD_MIN_STEPS saves its last weights; a longer one saves the
    lookahead average, so the same training, which repeats exactly, gives other weights (the
    threshold lowered here, so a 15-step run counts as long)."""
    import torch
    from safetensors.torch import load_file

    from sparkvision.models.cnn import training

    saved = {}
    for name, min_steps in (("short", 10 ** 6), ("short again", 10 ** 6), ("averaged", 1)):
        monkeypatch.setattr(training, "LOOKAHEAD_MIN_STEPS", min_steps)
        settings = TrainSettings(epochs=3, widths=(8, 16, 16), batch_size=64, micro_batch=16, optimizer="muon",
                                 lr=LEARNING_RATES["muon"], progressive=False)
        run = tmp_path / name
        run.mkdir()
        job = TrainJob([_shard(run)], (32, 32, 3), str(run / "epochs"), str(run / "w.safetensors"),
                       settings.to_json(), progress=False)
        result = train(json.dumps(job.__dict__))
        assert result["steps"] == 15 and result["weight_average"] is (min_steps == 1)
        saved[name] = load_file(run / "w.safetensors")
    short, again, averaged = saved["short"], saved["short again"], saved["averaged"]
    assert short.keys() == again.keys() == averaged.keys()
    assert all(torch.equal(short[k], again[k]) for k in short)
    assert not all(torch.equal(short[k], averaged[k]) for k in short)


def test_a_checkpoint_of_other_settings_is_named_and_not_resumed(spark, tmp_path):
    """A checkpointDir holding a checkpoint that this fit cannot resume (other widths, an older
    version's, a damaged file) is refused on the driver, naming the file, before any shard is
    written or torchrun starts; a checkpoint of the same settings resumes."""
    import torch

    from sparkvision.models.cnn.stages import CNNClassifier
    from sparkvision.models.cnn.training import CHECKPOINT_FILE, checkpoint_fingerprint, checkpoint_problem

    settings = TrainSettings(epochs=1, widths=(8, 16, 16), batch_size=64, micro_batch=16)
    job = TrainJob([_shard(tmp_path)], (32, 32, 3), str(tmp_path / "ckpt" / "epochs"),
                   str(tmp_path / "w.safetensors"), settings.to_json(), progress=False)
    train(json.dumps(job.__dict__))
    checkpoint = tmp_path / "ckpt" / "epochs" / CHECKPOINT_FILE
    assert checkpoint_problem(checkpoint, checkpoint_fingerprint(settings, 1)) is None
    resumed = train(json.dumps(job.__dict__))  # the same settings: nothing left to train
    assert resumed["resumed_after_epoch"] == 1 and len(resumed["curve"]) == 1

    rows = spark.read.parquet(job.shard_files[0])
    # The settings above but for the widths
    fit = CNNClassifier(epochs=1.0, widths=[16, 16, 16], batchSize=64, optimizer="sgd",
                        learningRate=settings.lr, precision="float32", progressive=False, numProcesses=1,
                        checkpointDir=str(tmp_path / "ckpt"))
    with pytest.raises(BadDataError) as err:
        fit.fit(rows)
    assert str(checkpoint) in str(err.value) and "widths [8, 16, 16] there, [16, 16, 16] here" in str(err.value)
    with pytest.raises(ValueError, match="other settings"):  # train() itself, for callers other than the stage
        train(json.dumps({**job.__dict__, "settings": {**settings.to_json(), "widths": [16, 16, 16]}}))

    state = torch.load(checkpoint, weights_only=True)
    del state["fingerprint"]
    torch.save(state, checkpoint)
    with pytest.raises(BadDataError, match="older sparkvision"):
        fit.fit(rows)
    checkpoint.write_bytes(b"not a checkpoint")
    with pytest.raises(BadDataError, match="cannot be read"):
        fit.fit(rows)
    assert checkpoint.read_bytes() == b"not a checkpoint"  # nothing of the user's was replaced
    assert not list((tmp_path / "ckpt").glob("shard-*"))  # refused before the shard was written

    # A folder that `sparkvision run` or `experiment` chose is theirs: a stale checkpoint is replaced.
    fit.replaceable_checkpoints = True
    model = fit.fit(rows)
    assert model.trainingSummary["resumed_after_epoch"] == 0 and len(model.trainingSummary["curve"]) == 1
    assert checkpoint_problem(checkpoint, checkpoint_fingerprint(
        TrainSettings.from_json({**settings.to_json(), "widths": [16, 16, 16]}), 1)) is None


def test_a_fit_that_cannot_train_says_which_setting_on_the_driver(spark, tmp_path):
    import torch

    from sparkvision.errors import ConfigError
    from sparkvision.models.cnn.stages import CNNClassifier

    rows = spark.read.parquet(_shard(tmp_path, n=40))
    tiny = dict(epochs=1.0, widths=[8, 8, 8], numProcesses=2)
    # A batch bigger than a process's share of the rows: refused before torchrun, its shard removed.
    fit = CNNClassifier(batchSize=100, checkpointDir=str(tmp_path / "big"), **tiny)
    with pytest.raises(ConfigError, match="batchSize=100: each of the 2 training process.* takes 50 images a step, "
                                          "but the smallest share of the training rows holds 20. Lower batchSize to at most 40"):
        fit.fit(rows)
    assert not list((tmp_path / "big").glob("shard-*"))
    if not torch.cuda.is_available():  # a GPU asked for where there is none: not TorchDistributor's trace
        with pytest.raises(ConfigError, match="gpu=true, but torch .* sees no CUDA GPU"):
            CNNClassifier(gpu=True, **tiny).fit(rows)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=f"checkpointDir={blocker / 'ck'}: cannot write there"):
        CNNClassifier(checkpointDir=str(blocker / "ck"), **tiny).fit(rows)


@pytest.mark.parametrize("values", [{"learningRate": float("nan")}, {"weightDecay": float("inf")},
                                    {"epochs": float("inf")}, {"epochs": float("nan")}])
def test_values_that_are_not_finite_are_refused(values):
    from sparkvision.models.cnn.settings import check_cnn_params

    with pytest.raises(ValueError, match=next(iter(values))):
        check_cnn_params(values)


@pytest.mark.parametrize("given, text", [("true", "true"), ("false", "false"), ('"true"', "true"), ("auto", "auto")])
def test_gpu_reads_true_and_false_as_the_command_line_and_toml_give_them(given, text):
    # `--param gpu=true` arrives as JSON's true (a bool), as TOML's `gpu = true` does: both mean "true".
    from sparkvision.cli.commands import param_value
    from sparkvision.models.registry import build_classifier, check_params

    value = parse_cnn_value("gpu", param_value(given))
    check_params("cnn", {"gpu": value})
    assert value == text and build_classifier("cnn", gpu=value).getOrDefault("gpu") == text
    assert build_classifier("cnn", gpu=param_value(given)).getOrDefault("gpu") == text  # the Python API too
    with pytest.raises(ValueError, match="gpu must be one of auto, true, false, not 'maybe'"):
        check_params("cnn", {"gpu": "maybe"})


@pytest.mark.parametrize("name", ["augment", "tta", "progressive"])
def test_switches_that_are_not_true_or_false_are_refused(name):
    from sparkvision.models.cnn.settings import check_cnn_params

    with pytest.raises(ValueError, match=f"{name} must be true or false, not 'sometimes'"):
        check_cnn_params({name: "sometimes"})
    check_cnn_params({name: False})


@pytest.mark.parametrize("channels,side,method", [(32, 3, "transposed"), (32, 2, "transposed"),
                                                  (128, 6, "taps"), (128, 5, "taps"), (16, 8, "onednn")])
def test_the_bfloat16_weight_gradient_paths_match_onednns(channels, side, method):
    """Each weight-gradient path of the network's bfloat16 convolutions gives the gradients of
    oneDNN's own backward pass (up to bfloat16's rounding), for the input and the filters alike."""
    import torch

    from sparkvision.models.cnn import weight_grad
    from sparkvision.models.cnn.network import Conv

    # the images are side × (side + 1): the path is picked by their pixels
    assert weight_grad.weight_grad_method(channels, side, side + 1) == method
    torch.manual_seed(0)
    conv = Conv(channels, 24).to(memory_format=torch.channels_last)
    x = torch.randn(6, channels, side, side + 1).contiguous(memory_format=torch.channels_last)
    target = torch.randn(6, 24, side, side + 1)

    def grads(enabled: bool):
        weight_grad.ENABLED = enabled
        try:
            conv.zero_grad(set_to_none=True)
            inp = x.clone().requires_grad_()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = conv(inp)
            (out.float() * target).sum().backward()
            return out.float(), inp.grad, conv.weight.grad, out.grad_fn.name()
        finally:
            weight_grad.ENABLED = True

    out, grad_x, grad_w, fn = grads(True)
    ref_out, ref_x, ref_w, ref_fn = grads(False)
    assert "_Conv3x3" in fn and "_Conv3x3" not in ref_fn  # the path under test ran, and the reference did not
    assert torch.equal(out, ref_out)
    for got, want in ((grad_x, ref_x), (grad_w, ref_w)):
        assert got.shape == want.shape and got.dtype == torch.float32
        assert float((got - want).norm() / want.norm()) < 1e-2


_EACH_RANK = """
import json, os, sys
from sparkvision.models.cnn.training import train
result = train(open(sys.argv[1]).read())
with open(os.path.join(sys.argv[2], f"rank-{os.environ['RANK']}.json"), "w") as f:
    json.dump(result, f)
"""


def test_every_torchrun_process_returns_the_training_summary(tmp_path):
    """Real torchrun, two processes: each returns rank 0's curve and timings. TorchDistributor
    keeps the return value of whichever process writes it last; a run whose rank 1 ended last
    once lost its curve (CI, 2026-12-05)."""
    import subprocess

    settings = TrainSettings(epochs=2, widths=(8, 16, 16), batch_size=64, micro_batch=16, optimizer="muon",
                             lr=LEARNING_RATES["muon"], progressive=False, threads=1)
    for i in range(2):
        (tmp_path / f"s{i}").mkdir()
    shards = [_shard(tmp_path / f"s{i}", 160) for i in range(2)]
    job = TrainJob(shards, (32, 32, 3), str(tmp_path / "epochs"), str(tmp_path / "w.safetensors"),
                   settings.to_json(), progress=False)
    (tmp_path / "job.json").write_text(json.dumps(job.__dict__))
    (tmp_path / "each_rank.py").write_text(_EACH_RANK)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
                           "--nproc_per_node=2", str(tmp_path / "each_rank.py"), str(tmp_path / "job.json"),
                           str(tmp_path)], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    first, second = (json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in (0, 1))
    assert first == second
    assert [p["epoch"] for p in first["curve"]] == [1, 2] and first["world_size"] == 2
    assert (tmp_path / "w.safetensors").is_file()


@pytest.mark.parametrize("returned, said", [(None, "got NoneType"), ({}, "got dict without a curve"),
                                            ({"curve": "lost"}, "got dict without a curve")])
def test_a_missing_training_summary_is_said_not_passed_on_as_empty(capsys, returned, said):
    """Should TorchDistributor hand back no summary again, the driver says so and records it, where it
    once printed "? epochs, 0 images/s" and wrote metrics.json without the curve, unexplained."""
    from sparkvision.models.cnn.stages import training_result

    assert training_result(returned) == {"summary_missing": True}
    err = capsys.readouterr().err
    assert "warning: the training processes saved the weights but returned no training summary" in err and said in err
    good = {"curve": [{"epoch": 1, "images_per_s": 10.0}], "epochs_run": 1}
    assert training_result(good) is good and capsys.readouterr().err == ""
