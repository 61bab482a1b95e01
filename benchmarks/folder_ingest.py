"""Class-folder ingestion and predict throughput, side by side with Spark's own `image` source.

    .venv/bin/python benchmarks/folder_ingest.py ROOT [--json FILE]

ROOT is a class-folder tree, e.g. the 50,000 CIFAR-10 JPEGs of ../shared/data extracted with
`tar -xzf cifar10-train-jpg.tar.gz` (ROOT/train/<class>/<n>.jpg). In one process and one
SparkSession (local[*], UI off), one after the other:

1. Spark's `image` source: `spark.read.format("image")` over the tree, written to Parquet.
2. sparkvision: `ingest_folder` (binaryFile, decode and resize in tasks, Parquet image table).
3. predict throughput: a random forest (10 trees, depth 5, gray) fitted on the table, then
   `sparkvision.inference.predict.predict` (the Spark engine) over the whole tree, streaming CSV to a file;
   then `predict_local` (the local engine: no JVM) over the same tree.
4. single-image latency: `sparkvision predict MODEL ONE.jpg` as a fresh process, wall time,
   median of 3: `--engine auto` (which takes the local engine) and `--engine spark` (JVM start
   included).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(fn):
    t = time.perf_counter()
    result = fn()
    return time.perf_counter() - t, result


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    from sparkvision.data.sources.folder import locate_folder
    from sparkvision.data.ingest import ingest_folder
    from sparkvision.runtime.session import SparkSettings, build_session

    source = locate_folder(args.root)
    n = source.num_files
    spark = build_session(SparkSettings(conf={"spark.ui.enabled": "false"}), show_progress=False)
    out: dict = {"images": n, "cores": spark.sparkContext.defaultParallelism}
    with tempfile.TemporaryDirectory(prefix="sv-folder-") as tmp:
        tmp = Path(tmp)
        print(f"{n:,} files under {args.root}; Spark's image source ...", file=sys.stderr, flush=True)
        image_df = spark.read.format("image").option("recursiveFileLookup", "true").load(str(args.root))
        secs, _ = timed(lambda: image_df.write.parquet(str(tmp / "image-source")))
        out["spark_image_source"] = {"seconds": secs, "images_per_s": n / secs,
                                     "tasks": image_df.rdd.getNumPartitions()}
        print("sparkvision ingest_folder ...", file=sys.stderr, flush=True)
        secs, table = timed(lambda: ingest_folder(spark, source, tmp / "work", progress=False))
        out["sparkvision_ingest"] = {"seconds": secs, "images_per_s": n / secs, "skipped": table.info.skipped,
                                     "tasks": table.df.rdd.getNumPartitions()}
        out["ingest_speedup"] = out["spark_image_source"]["seconds"] / secs

        print("fitting a model for predict ...", file=sys.stderr, flush=True)
        from sparkvision.models.registry import build_classifier
        from sparkvision.features.sets import feature_stages
        from sparkvision.models.fitting import fit_pipeline, label_with_classes
        from sparkvision.models.labels import LABELS_FILE
        from sparkvision.inference.predict import predict, predict_local

        model = fit_pipeline(feature_stages("gray") + [build_classifier("random_forest", seed=42)],
                             label_with_classes(table.df, table.info.class_names))
        model.write().save(str(tmp / "model"))
        (tmp / "model" / LABELS_FILE).write_text(json.dumps({"class_names": list(table.info.class_names),
                                                             "image_size": 32}))
        print("predict over the whole tree (Spark engine) ...", file=sys.stderr, flush=True)
        secs, res = timed(lambda: predict(spark, str(tmp / "model"), [str(args.root)], out=str(tmp / "p.csv"),
                                          progress=False))
        out["predict_folder"] = {"seconds": secs, "images_per_s": res["predicted"] / secs,
                                 "predicted": res["predicted"]}
        spark.stop()
        print("predict over the whole tree (local engine, no JVM) ...", file=sys.stderr, flush=True)
        secs, res = timed(lambda: predict_local(str(tmp / "model"), [str(args.root)], out=str(tmp / "q.csv"),
                                                progress=False))
        out["predict_folder_local"] = {"seconds": secs, "images_per_s": res["predicted"] / secs,
                                       "predicted": res["predicted"]}
        one = next(args.root.rglob("*.jpg"))
        for engine in ("auto", "spark"):
            print(f"single-image predict in a fresh process (--engine {engine}) ...", file=sys.stderr, flush=True)
            times = []
            for _ in range(3):
                secs, proc = timed(lambda: subprocess.run(
                    [sys.executable, "-m", "sparkvision", "predict", str(tmp / "model"), str(one), "--quiet",
                     "--engine", engine, "--conf", "spark.ui.enabled=false"], capture_output=True, text=True,
                    check=True))
                times.append(secs)
                time.sleep(2)  # a Spark run's JVM exits after its Python: let it go before the next
            out[f"predict_one_image_{engine}_s"] = sorted(times)[1]

    print(f"\nimages: {n:,} on {out['cores']} cores")
    for key in ("spark_image_source", "sparkvision_ingest", "predict_folder", "predict_folder_local"):
        r = out[key]
        print(f"{key:<20} {r['seconds']:7.1f} s  {r['images_per_s']:8,.0f} images/s")
    print(f"ingest speed-up over Spark's image source: {out['ingest_speedup']:.1f}x")
    print(f"single image, fresh process, median of 3: local engine (auto) {out['predict_one_image_auto_s']:.2f} s, "
          f"Spark engine (JVM start, model load, predict) {out['predict_one_image_spark_s']:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
