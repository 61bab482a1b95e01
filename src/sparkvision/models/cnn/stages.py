"""The CNN as pyspark.ml stages: :class:`CNNClassifier` (Estimator) and :class:`CNNClassificationModel`.

``CNNClassifier.fit`` writes the training rows (``label``, ``data``) to Parquet under its
checkpoint folder, one file per process, and hands :func:`sparkvision.models.cnn.training.train` to
PySpark's ``TorchDistributor``: torchrun on the driver when the master is local, barrier tasks
on a cluster. Rank 0 writes the weights (safetensors); the driver reads them back and returns
the model. Nothing is collected to the driver but the weights and the training curve.

``CNNClassificationModel.transform`` runs the network through ``predict_batch_udf``: the
weights travel with the UDF, the network is built once per Python worker, and the output has
MLlib's classifier columns (``rawPrediction``, ``probability`` as vectors, ``prediction``), so the
evaluator, experiments and ``predict`` take it as they take a forest. Saved inside a
PipelineModel, the weights go to the stage's ``data/`` folder as safetensors bytes: loading
never runs code from the file.

torch is imported only inside the functions that need it: the CLI checks for it before Spark
starts (:func:`require_torch`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from pyspark import keyword_only
from pyspark.ml import Estimator, Model
from pyspark.ml.functions import array_to_vector, predict_batch_udf
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import (HasLabelCol, HasPredictionCol, HasProbabilityCol, HasRawPredictionCol,
                                     HasSeed)
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsReader, MLReadable, MLWritable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DoubleType, FloatType, StructField, StructType

from sparkvision.models.cnn.settings import (CNN_DEFAULTS, check_cnn_params, check_safetensors, gpu_choice,
                                             preset_name, require_torch, resolve_precision, with_preset)
from sparkvision.errors import BadDataError, ConfigError
from sparkvision.models.fitting import num_classes
from sparkvision.runtime.connect import master, parallelism
from sparkvision.runtime.fs import atomic_output
from sparkvision.runtime.stage_io import ParamsWriter

PREDICT_BATCH = 256  # images per predict_batch_udf call: big enough for the convolutions, small in memory


def _gpu_text(value: object) -> str:
    """The ``gpu`` Param's converter: ``gpu=True`` (Python, or a boolean read from ``--param``/TOML) is "true"."""
    return TypeConverters.toString(gpu_choice(value))


class _CNNParams(HasLabelCol, HasPredictionCol, HasProbabilityCol, HasRawPredictionCol, HasSeed):
    """Params shared by :class:`CNNClassifier` and its model."""

    inputCol = Param(Params._dummy(), "inputCol", "image bytes (RGB, height × width × channels)",
                     typeConverter=TypeConverters.toString)
    epochs = Param(Params._dummy(), "epochs", "passes over the training images (fractions allowed; unset: "
                   "this hardware's preset)",
                   typeConverter=TypeConverters.toFloat)
    widths = Param(Params._dummy(), "widths", "channels of the three conv groups (unset: this hardware's preset)",
                   typeConverter=TypeConverters.toListInt)
    batchSize = Param(Params._dummy(), "batchSize", "training images per step, all processes together "
                      "(unset: this hardware's preset)",
                      typeConverter=TypeConverters.toInt)
    learningRate = Param(Params._dummy(), "learningRate", "peak learning rate: per 1024 images (airbench's units) "
                         "for sgd, the conv filters' step for muon (unset: the update rule's)",
                         typeConverter=TypeConverters.toFloat)
    optimizer = Param(Params._dummy(), "optimizer", "update rule: sgd (airbench94's Nesterov SGD and weight "
                      "averaging) or muon (airbench94_muon's Muon on the conv filters; unset: this hardware's "
                      "preset)",
                      typeConverter=TypeConverters.toString)
    weightDecay = Param(Params._dummy(), "weightDecay", "weight decay (airbench's units)",
                        typeConverter=TypeConverters.toFloat)
    labelSmoothing = Param(Params._dummy(), "labelSmoothing", "label smoothing of the cross-entropy, in [0, 1)",
                           typeConverter=TypeConverters.toFloat)
    augment = Param(Params._dummy(), "augment", "train on alternating flips and 2-pixel translations",
                    typeConverter=TypeConverters.toBoolean)
    tta = Param(Params._dummy(), "tta", "predict with test-time augmentation (mirror and 1-pixel shifts, 6 views)",
                typeConverter=TypeConverters.toBoolean)
    progressive = Param(Params._dummy(), "progressive", "progressive resizing: the first 60 % of the epochs train "
                        "on images scaled down to 1/2, 5/8 and 3/4 of their size, which costs less (unset: this "
                        "hardware's preset)", typeConverter=TypeConverters.toBoolean)
    precision = Param(Params._dummy(), "precision", "auto (bfloat16 where the CPU has AMX or AVX512-BF16, or "
                      "on a GPU), float32 or bfloat16", typeConverter=TypeConverters.toString)
    numProcesses = Param(Params._dummy(), "numProcesses", "training processes (0: one per core of a local "
                         "master, or per task slot of a cluster)", typeConverter=TypeConverters.toInt)
    gpu = Param(Params._dummy(), "gpu", "auto (when torch sees CUDA), true or false",
                typeConverter=_gpu_text)
    checkpointDir = Param(Params._dummy(), "checkpointDir", "where the training shard and each finished epoch's "
                          "checkpoint are kept; a fit with the same folder resumes there (empty: a temporary "
                          "folder, removed after the fit)", typeConverter=TypeConverters.toString)
    numClasses = Param(Params._dummy(), "numClasses", "classes (from the label's metadata, else its maximum + 1)",
                       typeConverter=TypeConverters.toInt)
    imageShape = Param(Params._dummy(), "imageShape", "height, width, channels of the images (from the data)",
                       typeConverter=TypeConverters.toListInt)

    _DEFAULTS = dict(inputCol="data", labelCol="label", predictionCol="prediction", probabilityCol="probability",
                     rawPredictionCol="rawPrediction", seed=42, checkpointDir="", **CNN_DEFAULTS)

    def getInputCol(self) -> str:
        """The image bytes column."""
        return self.getOrDefault(self.inputCol)

    def _cnn_values(self) -> dict[str, Any]:
        """The training Params (those :func:`check_cnn_params` knows) with their current values."""
        return {name: self.getOrDefault(self.getParam(name)) for name in CNN_DEFAULTS}


class CNNClassifier(Estimator, _CNNParams, DefaultParamsReadable, MLWritable):
    """airbench's convolutional network trained with TorchDistributor (see the module's docstring).

    Examples
    --------
    >>> CNNClassifier(epochs=2, widths=[16, 32, 32]).getOrDefault("widths")
    [16, 32, 32]
    """

    reads_input_once = True  # fitting.fit_pipeline: the fit writes its input to Parquet once, no cache
    progress = True          # one line per epoch on stderr (not a Param: it changes nothing computed)
    # Set by `sparkvision run` and `experiment` for the checkpoint folders they choose themselves: a
    # checkpoint there that cannot be resumed (another master's number of processes, an older
    # version's) is theirs to replace, said on stderr. A checkpointDir the user gave is never
    # overwritten: the fit is refused, naming the file.
    replaceable_checkpoints = False

    @keyword_only
    def __init__(self, *, inputCol: str = "data", labelCol: str = "label", predictionCol: str = "prediction",
                 probabilityCol: str = "probability", rawPredictionCol: str = "rawPrediction",
                 epochs: float | None = None, widths: list[int] | None = None, batchSize: int | None = None,
                 learningRate: float | None = None, weightDecay: float | None = None,
                 optimizer: str | None = None, labelSmoothing: float | None = None,
                 augment: bool | None = None, tta: bool | None = None, progressive: bool | None = None,
                 precision: str | None = None, numProcesses: int | None = None, gpu: str | None = None,
                 seed: int = 42, checkpointDir: str = "") -> None:
        super().__init__()
        self._setDefault(**self._DEFAULTS)
        self.setParams(**self._input_kwargs)

    @keyword_only
    def setParams(self, *, inputCol: str = "data", labelCol: str = "label", predictionCol: str = "prediction",
                  probabilityCol: str = "probability", rawPredictionCol: str = "rawPrediction",
                  epochs: float | None = None, widths: list[int] | None = None, batchSize: int | None = None,
                  learningRate: float | None = None, weightDecay: float | None = None,
                  optimizer: str | None = None, labelSmoothing: float | None = None,
                  augment: bool | None = None, tta: bool | None = None, progressive: bool | None = None,
                  precision: str | None = None, numProcesses: int | None = None, gpu: str | None = None,
                  seed: int = 42, checkpointDir: str = "") -> "CNNClassifier":
        """Set this stage's parameters; returns the stage."""
        return self._set(**{k: v for k, v in self._input_kwargs.items() if v is not None})

    def setSeed(self, value: int) -> "CNNClassifier":
        return self._set(seed=value)

    def setLabelCol(self, value: str) -> "CNNClassifier":
        return self._set(labelCol=value)

    def setCheckpointDir(self, value: str) -> "CNNClassifier":
        return self._set(checkpointDir=value)

    def write(self) -> ParamsWriter:
        """An MLWriter that saves the Params."""
        return ParamsWriter(self)

    # -- fitting ------------------------------------------------------------------------------

    def _image_shape(self, dataset: DataFrame) -> list[int]:
        if {"height", "width", "nChannels"} <= set(dataset.columns):
            first = dataset.select("height", "width", "nChannels").head()
            if first is None:
                raise ValueError("CNNClassifier cannot fit on an empty dataset")
            return [int(first[0]), int(first[1]), int(first[2])]
        return [32, 32, 3]

    def _processes(self, spark, use_gpu: bool) -> tuple[int, int, bool]:
        """(processes, threads per process, local mode) for this session's master."""
        local = master(spark).startswith("local")
        cores = parallelism(spark)
        wanted = self.getOrDefault(self.numProcesses)
        if use_gpu:
            import torch

            processes = wanted or max(1, torch.cuda.device_count())
            return processes, 1, local
        processes = wanted or cores
        threads = max(1, cores // processes) if local else max(1, int(spark.conf.get("spark.task.cpus", "1")))
        return processes, threads, local

    def _fit(self, dataset: DataFrame) -> "CNNClassificationModel":
        require_torch()
        import torch
        from pyspark.ml.torch.distributor import TorchDistributor

        from pyspark import cloudpickle

        from sparkvision.runtime.cluster import ship_package
        from sparkvision.models.cnn import launch
        from sparkvision.models.cnn.training import (CHECKPOINT_FILE, TrainJob, TrainSettings, WEIGHTS_FILE,
                                                     checkpoint_fingerprint, checkpoint_problem)

        values = self._cnn_values()
        check_cnn_params(values)
        spark = dataset.sparkSession
        gpu = values["gpu"]
        use_gpu = gpu == "true" or (gpu == "auto" and torch.cuda.is_available())
        precision = resolve_precision(values["precision"], use_gpu)
        preset = preset_name(precision, use_gpu)
        values = with_preset(values, preset, {name for name in values if self.isSet(self.getParam(name))})
        processes, threads, local = self._processes(spark, use_gpu)
        if use_gpu and local and not torch.cuda.is_available():  # else TorchDistributor: "GPUs were unable to be found"
            raise ConfigError(f"gpu=true, but torch {torch.__version__} sees no CUDA GPU on this machine. Use gpu=auto "
                              "(the default: a GPU when there is one) or gpu=false.")
        classes = num_classes(dataset, self.getLabelCol(), "CNNClassifier")
        shape = self._image_shape(dataset)
        given = self.getOrDefault(self.checkpointDir)
        folder = Path(given).resolve() if given else Path(tempfile.mkdtemp(prefix="sparkvision-cnn-"))
        if given:  # Spark's tasks write the shard there: say it here, not as a task's IOException
            try:
                folder.mkdir(parents=True, exist_ok=True)
                writable = os.access(folder, os.W_OK | os.X_OK)
                why = "permission denied"
            except OSError as exc:
                writable, why = False, exc.strerror
            if not writable:
                raise ConfigError(f"checkpointDir={given}: cannot write there ({why}); give a folder this user can "
                                  "write to, or leave it empty for a temporary one.")
        started = time.perf_counter()
        try:
            settings = TrainSettings.from_params(values, precision=precision, num_classes=classes,
                                                 seed=int(self.getOrDefault(self.seed)), threads=threads,
                                                 use_gpu=use_gpu)
            epochs_dir = folder / "epochs"
            checkpoint = epochs_dir / CHECKPOINT_FILE
            problem = checkpoint.is_file() and checkpoint_problem(checkpoint, checkpoint_fingerprint(settings, processes))
            if problem and not self.replaceable_checkpoints:  # said on the driver, not as a trace from torchrun
                raise BadDataError(f"{checkpoint}: {problem}. Nothing was trained. To train from the start, delete "
                                   f"that file, or give CNNClassifier another checkpointDir.")
            if problem:
                if self.progress:
                    print(f"  {checkpoint}: {problem}; training from the start", file=sys.stderr, flush=True)
                checkpoint.unlink()
            shard_files = _write_shard(dataset.select(F.col(self.getLabelCol()).cast("int").alias("label"),
                                                      F.col(self.getInputCol()).alias("data")),
                                       folder / f"shard-{processes}", processes)
            _check_batch_fits(shard_files, settings.batch_size, processes)
            shard_s = time.perf_counter() - started
            weights_path = folder / WEIGHTS_FILE
            job = TrainJob(shard_files=shard_files, image_shape=tuple(shape), checkpoint_dir=str(epochs_dir),
                           weights_path=str(weights_path), settings=settings.to_json(),
                           progress=self.progress)
            distributor = TorchDistributor(num_processes=processes, local_mode=local, use_gpu=use_gpu)
            package = None if local else ship_package(spark)  # torchrun's processes on the executors need it
            if package:
                cloudpickle.register_pickle_by_value(launch)
            # TorchDistributor echoes the processes' output on stdout; the epochs' progress lines belong
            # with the rest of the progress, on stderr (stdout is the command's summary).
            started = time.perf_counter()
            with contextlib.ExitStack() as stack:
                sink = sys.stderr if job.progress else stack.enter_context(open(os.devnull, "w"))
                stack.enter_context(contextlib.redirect_stdout(sink))
                result = distributor.run(launch.run_training, json.dumps({**job.__dict__, "image_shape": list(shape)}),
                                         package)
            distributor_s = time.perf_counter() - started
            weights = weights_path.read_bytes()
            result = training_result(result)
        finally:
            if not given:
                shutil.rmtree(folder, ignore_errors=True)
        model = CNNClassificationModel()
        model._set(**{p.name: self.getOrDefault(p) for p in self.params if self.isDefined(p)
                      and model.hasParam(p.name)})
        model._set(precision=precision, numClasses=classes, imageShape=shape, widths=list(values["widths"]),
                   epochs=float(values["epochs"]), batchSize=int(values["batchSize"]),
                   optimizer=values["optimizer"], learningRate=float(values["learningRate"]),
                   progressive=bool(values["progressive"]))
        model._weights = weights
        model.trainingSummary = {**result, "precision": precision, "preset": preset, "device": settings.device,
                                 "processes": processes, "threads_per_process": threads,
                                 "shard_seconds": round(shard_s, 3), "distributor_seconds": round(distributor_s, 3)}
        return model


def training_result(result: Any) -> dict[str, Any]:
    """What the training processes returned (their curve and timings), checked on the driver. A
    run whose weights were written but whose summary did not come back (TorchDistributor keeps one
    process's return value) still gives its model; it is said on stderr, even in a quiet run, and
    the summary records ``summary_missing``, so metrics.json shows the curve is absent, not empty.

    >>> training_result({"curve": [{"epoch": 1}], "steps": 40})["steps"]
    40
    >>> training_result(None)
    {'summary_missing': True}
    """
    if isinstance(result, dict) and isinstance(result.get("curve"), list):
        return result
    got = f"{type(result).__name__}{' without a curve' if isinstance(result, dict) else ''}"
    print(f"  warning: the training processes saved the weights but returned no training summary (got {got}): "
          "metrics.json will hold no training curve or timings for this fit.", file=sys.stderr, flush=True)
    return {"summary_missing": True}


def _check_batch_fits(shard_files: list[str], batch_size: int, processes: int) -> None:
    """Refuse, on the driver, a batch bigger than a process's shard (each process takes batchSize /
    processes images a step): said here as an option to change, not as a trace from torchrun."""
    import pyarrow.parquet as pq

    smallest = min(pq.ParquetFile(f).metadata.num_rows for f in shard_files)
    per_process = max(1, batch_size // processes)
    if smallest < per_process:
        folder = Path(shard_files[0]).parent
        shutil.rmtree(folder, ignore_errors=True)  # its key is of these settings, which cannot train
        raise ConfigError(f"batchSize={batch_size}: each of the {processes} training process(es) takes "
                          f"{per_process} images a step, but the smallest share of the training rows holds "
                          f"{smallest}. Lower batchSize to at most {smallest * processes}, or train on more images.")


def _write_shard(rows: DataFrame, folder: Path, processes: int) -> list[str]:
    """Write ``rows`` as ``processes`` Parquet files of near-equal size (round-robin), once: a
    folder already written (by a killed fit with the same checkpoint folder) is reused."""
    done = folder / "_SUCCESS"
    if not done.exists():
        shutil.rmtree(folder, ignore_errors=True)
        with atomic_output(folder) as tmp:
            rows.repartition(processes).write.parquet(str(tmp))
    files = sorted(str(p) for p in folder.glob("part-*.parquet"))
    if len(files) != processes:  # an empty partition writes no file: fewer rows than processes
        raise ValueError(f"the training rows filled {len(files)} of {processes} shard files; "
                         "train on more images or with fewer processes")
    return files


# ---------------------------------------------------------------------------------------------
# The model


class _WeightsWriter(ParamsWriter):
    def saveImpl(self, path: str) -> None:
        super().saveImpl(path)
        frame = self.sparkSession.createDataFrame([(bytearray(self.instance._weights),)], "weights binary")
        frame.coalesce(1).write.parquet(path.rstrip("/") + "/data")


class _WeightsReader(DefaultParamsReader):
    def load(self, path: str):
        instance = super().load(path)
        where = path.rstrip("/") + "/data"
        row = self.sparkSession.read.parquet(where).head()
        if row is None or "weights" not in row.asDict():
            raise BadDataError(f"{where}: no weights in the model's data; train again, or copy the model folder again.")
        check_safetensors(bytes(row.weights), where)
        instance._weights = bytes(row.weights)
        return instance


class CNNClassificationModel(Model, _CNNParams, MLReadable, MLWritable):
    """A trained :class:`CNNClassifier`: its Params, the weights (safetensors bytes) and, after a
    fit, ``trainingSummary`` (the curve and timings; not saved)."""

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(**self._DEFAULTS, numClasses=10, imageShape=[32, 32, 3])
        self._weights: bytes = b""
        self.trainingSummary: dict[str, Any] = {}

    def write(self) -> _WeightsWriter:
        """An MLWriter that saves the Params and the weights."""
        return _WeightsWriter(self)

    @classmethod
    def read(cls) -> _WeightsReader:
        """An MLReader that loads what :meth:`write` saved."""
        return _WeightsReader(cls)

    def _transform(self, dataset: DataFrame) -> DataFrame:
        if not self._weights:
            raise ValueError("CNNClassificationModel has no weights: fit CNNClassifier or load a saved model")
        require_torch()
        weights, config = self._weights, self.inference_config()
        out = StructType([StructField("raw", ArrayType(FloatType(), False)),
                          StructField("prob", ArrayType(FloatType(), False)),
                          StructField("pred", DoubleType())])

        def make_predict_fn():  # runs once per Python worker (predict_batch_udf caches it)
            from sparkvision.models.cnn.inference import Predictor

            predictor = Predictor(weights, config, threads=1)  # one Spark task, one core

            def predict(data: np.ndarray) -> dict[str, np.ndarray]:
                logits, prob = predictor.predict_bytes(data)
                return {"raw": logits, "prob": prob, "pred": prob.argmax(axis=1).astype(np.float64)}
            return predict

        udf = predict_batch_udf(make_predict_fn, return_type=out, batch_size=PREDICT_BATCH)
        tmp = "__cnn_output"
        scored = dataset.withColumn(tmp, udf(F.col(self.getInputCol())))
        return (scored.withColumn(self.getRawPredictionCol(), array_to_vector(F.col(f"{tmp}.raw")))
                .withColumn(self.getProbabilityCol(), array_to_vector(F.col(f"{tmp}.prob")))
                .withColumn(self.getPredictionCol(), F.col(f"{tmp}.pred"))
                .drop(tmp))

    def inference_config(self) -> dict[str, Any]:
        """What inference needs besides the weights (``cnn.inference.Predictor``'s config)."""
        return {"widths": list(self.getOrDefault(self.widths)), "numClasses": int(self.getOrDefault(self.numClasses)),
                "imageShape": list(self.getOrDefault(self.imageShape)), "tta": bool(self.getOrDefault(self.tta)),
                "precision": self.getOrDefault(self.precision)}
