"""How cost grows with data: `sparkvision run` at 10k, 50k and 250k images, on local[1] and local[2].

    .venv/bin/python benchmarks/scaling.py /tmp/cifar [--sizes 10000,50000,250000]
        [--masters local[1],local[2]] [--json scaling.json] [--plot scaling.png]
        [--scratch DIR] [--driver-memory M] [--executor-memory M]

DATA is a folder holding the real cifar-10-batches-py (make it from ../shared/data with
``make_cifar_batches.py``). The default sizes are 10000,50000,250000; each must be a multiple of
5 (a release has five training batches). Linux only (memory is read from /proc).

Data. For each size N a python-layout release of N images is written to the scratch folder
before anything is timed: the first N real images when N ≤ 50,000, else the 50,000 real images
tiled with variants of themselves, labels kept: tile 0 is the original, then the mirror image,
then 2-pixel shifts (pad by edge, crop back to 32 × 32, as the usual CIFAR augmentation does),
each with and without the mirror, so no two tiles repeat.

Runs. Each (size, master) is one ``sparkvision run`` in a child process with a fresh work
directory (so ingestion is paid), the UI off, the default model (random forest, 10 trees, depth
5, gray features) and seed 42. Measured for each:

- **wall**: the whole child process (Python and JVM start included);
- **phases** from its metrics.json; **work** = ingest + fit (features and forest) + evaluate,
  the part that should grow with N; **images/s** = N / work;
- **driver peak memory**: the largest sum, over samples every 0.2 s, of the resident memory
  (RSS) of the child's Python process and of its JVM. In local mode that JVM is the executor as
  well, so it holds the cached features; a cluster master (``--masters spark://…``) leaves only
  the driver there, since executors are not the child's descendants. The Python workers (the
  executor's, in local mode) are reported apart. RSS sums count pages shared by forked workers
  more than once.

Printed: a table, local[2] against local[1], and the two targets: time linear in size (work per
image at every size within ±15 % of that at the smallest size) and driver peak memory flat
(within 20 % of the smallest size's). Written: ``--json`` (every figure) and ``--plot``.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

DEFAULT_SIZES = (10_000, 50_000, 250_000)
DEFAULT_MASTERS = ("local[1]", "local[2]")
BATCHES = 5           # data_batch_1 … data_batch_5
LINEAR_TOLERANCE = 0.15
FLAT_TOLERANCE = 0.20
SAMPLE_EVERY = 0.2    # seconds between memory samples
SHIFTS = ((0, 0), (2, 0), (0, 2), (-2, 0), (0, -2), (2, 2), (-2, -2), (2, -2), (-2, 2))


# ── Data ─────────────────────────────────────────────────────────────────────────────────────

def load_real(data: Path) -> tuple[np.ndarray, np.ndarray]:
    """(labels int64[n], images uint8[n, 3, 32, 32] as R,G,B planes) of the real release at ``data``."""
    from sparkvision.data.ingest import locate_cifar as locate
    from sparkvision.data.sources.cifar import CIFAR10, parse_python_batch

    source = locate(data, tempfile.mkdtemp(prefix="sv-scaling-"), CIFAR10, progress=False)
    if source.layout != "python":
        raise SystemExit(f"{data}: needs the python batches (cifar-10-batches-py), found the binary ones")
    parts = [parse_python_batch(Path(f.path).read_bytes(), f.path) for f in source.files if f.split == "train"]
    labels = np.concatenate([p[0] for p in parts])
    return labels, np.concatenate([p[1] for p in parts]).reshape(-1, 3, 32, 32)


def variant(images: np.ndarray, tile: int) -> np.ndarray:
    """Tile ``tile`` of ``images`` (n, 3, 32, 32): 0 is the original; odd tiles are mirrored;
    tile // 2 picks a shift of up to 2 pixels (edge-padded, cropped back to 32 × 32)."""
    if tile // 2 >= len(SHIFTS):
        raise ValueError(f"at most {2 * len(SHIFTS)} tiles: {2 * len(SHIFTS) * len(images):,} images")
    out = images[..., ::-1] if tile % 2 else images
    dx, dy = SHIFTS[tile // 2]
    if dx or dy:
        padded = np.pad(out, ((0, 0), (0, 0), (2, 2), (2, 2)), mode="edge")
        out = padded[:, :, 2 + dy:34 + dy, 2 + dx:34 + dx]
    return np.ascontiguousarray(out)


def write_release(labels: np.ndarray, images: np.ndarray, n: int, root: Path) -> Path:
    """Write a python-layout release of ``n`` images (tiled from the real ones) under ``root``."""
    from sparkvision.data.sources.cifar import CIFAR10

    folder = root / CIFAR10.base_folder
    folder.mkdir(parents=True, exist_ok=True)
    per_batch, real = n // BATCHES, len(labels)
    for b, name in enumerate(CIFAR10.train_list):
        idx = np.arange(b * per_batch, (b + 1) * per_batch)
        tiles, rows = idx // real, idx % real
        data = np.empty((per_batch, 3, 32, 32), np.uint8)
        for tile in np.unique(tiles):  # one variant at a time: only this batch is in memory
            sel = tiles == tile
            data[sel] = variant(images[rows[sel]], int(tile))
        batch = {b"batch_label": f"{name} (scaling benchmark)".encode(), b"labels": [int(v) for v in labels[rows]],
                 b"data": data.reshape(per_batch, -1), b"filenames": [f"{name}_{i}.png".encode() for i in idx]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=4)
    meta = {b"num_cases_per_batch": per_batch, b"num_vis": 3072,
            b"label_names": [n.encode() for n in CIFAR10.label_names]}
    (folder / CIFAR10.meta).write_bytes(pickle.dumps(meta, protocol=4))
    return root


# ── Memory sampling (Linux /proc) ────────────────────────────────────────────────────────────

def _processes() -> dict[int, tuple[int, str, int]]:
    """pid → (parent pid, command name, RSS bytes) for every process we can read."""
    page = os.sysconf("SC_PAGE_SIZE")
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
            rss_pages = int(Path(f"/proc/{entry.name}/statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue  # it ended while we looked
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        found[int(entry.name)] = (ppid, name, rss_pages * page)
    return found


class MemorySampler:
    """Samples a process tree's RSS: the root (the driver's Python), its JVM, and the other
    Python processes under them (the Python workers). Keeps each one's peak, and the peak of
    driver = Python + JVM."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.peak = {"driver": 0, "driver_python": 0, "driver_jvm": 0, "python_workers": 0}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def sample(self) -> None:
        procs = _processes()
        children: dict[int, list[int]] = {}
        for pid, (ppid, _, _) in procs.items():
            children.setdefault(ppid, []).append(pid)
        tree, todo = [], [self.root]
        while todo:
            pid = todo.pop()
            if pid in procs:
                tree.append(pid)
                todo += children.get(pid, [])
        now = {"driver_python": procs[self.root][2] if self.root in procs else 0,
               "driver_jvm": sum(procs[p][2] for p in tree if procs[p][1] == "java"),
               "python_workers": sum(procs[p][2] for p in tree if p != self.root and procs[p][1].startswith("python"))}
        now["driver"] = now["driver_python"] + now["driver_jvm"]
        for key, value in now.items():
            self.peak[key] = max(self.peak[key], value)
        self.samples += 1

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY):
            self.sample()

    def __enter__(self) -> "MemorySampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# ── One run ──────────────────────────────────────────────────────────────────────────────────

def run_once(data: Path, n: int, master: str, scratch: Path, spark_args: list[str]) -> dict:
    """``sparkvision run`` on ``data`` with ``master`` in a child process; its measured figures."""
    work, out = scratch / "work", scratch / f"out-{n}-{master.replace('[', '').replace(']', '').replace('/', '_')}"
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    argv = [sys.executable, "-m", "sparkvision", "run", "--data", str(data), "--master", master, "--seed", "42",
            "--work-dir", str(work), "--out", str(out), "--conf", "spark.ui.enabled=false", "--quiet", *spark_args]
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    with MemorySampler(proc.pid) as mem:
        stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"sparkvision run failed ({n:,} images, {master}):\n{stderr}")
    metrics = json.loads((out / "metrics.json").read_text())
    shutil.rmtree(work, ignore_errors=True)  # the table: up to 750 MB at 250k images
    secs = metrics["seconds"]
    work_s = secs["ingest"] + secs["fit"] + secs["evaluate"]
    return {"images": n, "master": master, "wall": wall, "seconds": secs, "work": work_s, "images_per_s": n / work_s,
            "peak_bytes": mem.peak, "memory_samples": mem.samples, "accuracy": metrics["accuracy"],
            "num_images": metrics["data"]["num_images"], "driver_memory": metrics["config"]["spark"]["driver_memory"]}


# ── Verdicts, table, plot ────────────────────────────────────────────────────────────────────

def verdicts(results: list[dict]) -> dict[str, dict]:
    """Per master: work per image against the smallest size's, and driver peak against the smallest's."""
    out = {}
    for master in dict.fromkeys(r["master"] for r in results):
        rows = sorted((r for r in results if r["master"] == master), key=lambda r: r["images"])
        base = rows[0]
        per_image = [(r["work"] / r["images"]) / (base["work"] / base["images"]) for r in rows]
        memory = [r["peak_bytes"]["driver"] / base["peak_bytes"]["driver"] for r in rows]
        out[master] = {
            "sizes": [r["images"] for r in rows], "work_per_image_vs_smallest": per_image,
            "driver_peak_vs_smallest": memory,
            "linear": all(abs(x - 1) <= LINEAR_TOLERANCE for x in per_image),
            "flat_memory": all(abs(x - 1) <= FLAT_TOLERANCE for x in memory),
        }
    return out


def print_table(results: list[dict], verdict: dict[str, dict]) -> None:
    mb = 1 << 20
    print(f"\n{'images':>8} {'master':<9} {'wall s':>7} {'session':>7} {'ingest':>7} {'fit':>7} {'eval':>6} "
          f"{'save':>6} {'work s':>7} {'img/s':>7} {'driver MB':>9} {'(py':>6} {'+ jvm)':>7} {'workers MB':>10} "
          f"{'accuracy':>8}")
    for r in results:
        s, p = r["seconds"], r["peak_bytes"]
        print(f"{r['images']:>8,} {r['master']:<9} {r['wall']:7.1f} {s['session']:7.1f} {s['ingest']:7.1f} "
              f"{s['fit']:7.1f} {s['evaluate']:6.1f} {s['save']:6.1f} {r['work']:7.1f} {r['images_per_s']:7.0f} "
              f"{p['driver'] / mb:9.0f} {p['driver_python'] / mb:6.0f} {p['driver_jvm'] / mb:7.0f} "
              f"{p['python_workers'] / mb:10.0f} {r['accuracy']:8.2%}")
    masters = list(verdict)
    if len(masters) == 2:
        a, b = masters
        print()
        for n in verdict[a]["sizes"]:
            ra = next(r for r in results if r["master"] == a and r["images"] == n)
            rb = next((r for r in results if r["master"] == b and r["images"] == n), None)
            if rb:
                print(f"{n:>8,} images: {b} is {ra['work'] / rb['work']:.2f}x as fast as {a} (work seconds)")
    print()
    for master, v in verdict.items():
        ratios = ", ".join(f"{n:,}: {x:.2f}" for n, x in zip(v["sizes"], v["work_per_image_vs_smallest"]))
        mem = ", ".join(f"{n:,}: {x:.2f}" for n, x in zip(v["sizes"], v["driver_peak_vs_smallest"]))
        print(f"{master}: work per image / smallest size's  {ratios}  -> linear within "
              f"±{LINEAR_TOLERANCE:.0%}: {'met' if v['linear'] else 'NOT met'}")
        print(f"{master}: driver peak / smallest size's     {mem}  -> flat within "
              f"{FLAT_TOLERANCE:.0%}: {'met' if v['flat_memory'] else 'NOT met'}")


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for master in dict.fromkeys(r["master"] for r in results):
        rows = sorted((r for r in results if r["master"] == master), key=lambda r: r["images"])
        sizes = [r["images"] for r in rows]
        line, = axes[0].plot(sizes, [r["work"] for r in rows], "o-", label=f"{master}")
        # the line a perfectly linear cost would follow, through the smallest size's point
        axes[0].plot(sizes, [rows[0]["work"] / sizes[0] * n for n in sizes], ":", color=line.get_color(),
                     label=f"{master}, proportional to the smallest")
        axes[1].plot(sizes, [r["images_per_s"] for r in rows], "o-", color=line.get_color(), label=master)
        axes[2].plot(sizes, [r["peak_bytes"]["driver"] / 2**20 for r in rows], "o-", color=line.get_color(),
                     label=f"{master}: driver (Python + JVM)")
        axes[2].plot(sizes, [r["peak_bytes"]["driver_python"] / 2**20 for r in rows], "s--", color=line.get_color(),
                     alpha=0.6, label=f"{master}: driver Python alone")
    titles = ("work seconds (ingest + fit + evaluate)", "images per second of work", "driver peak RSS (MB)")
    for ax, title in zip(axes, titles):
        ax.set_title(title)
        ax.set_xlabel("images")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_ylim(bottom=0)
    fig.suptitle("sparkvision run: cost against data size")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ── Main ─────────────────────────────────────────────────────────────────────────────────────

def _sizes(text: str) -> list[int]:
    sizes = sorted({int(s.replace("_", "")) for s in text.split(",") if s.strip()})
    bad = [n for n in sizes if n < BATCHES or n % BATCHES]
    if bad:
        raise argparse.ArgumentTypeError(f"sizes must be positive multiples of {BATCHES}: {bad}")
    return sizes


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="folder holding the real cifar-10-batches-py")
    ap.add_argument("--sizes", type=_sizes, default=list(DEFAULT_SIZES),
                    help="comma-separated image counts (default 10000,50000,250000)")
    ap.add_argument("--masters", default=",".join(DEFAULT_MASTERS),
                    help="comma-separated Spark masters (default local[1],local[2])")
    ap.add_argument("--scratch", type=Path, default=None,
                    help="where the generated releases and tables go (default: a temporary folder, removed)")
    ap.add_argument("--driver-memory", default=None, help="passed to sparkvision run (default: its own, sized "
                    "from the machine)")
    ap.add_argument("--executor-memory", default=None, help="passed to sparkvision run (cluster masters)")
    ap.add_argument("--json", type=Path, default=Path("scaling.json"), help="results (default scaling.json)")
    ap.add_argument("--plot", type=Path, default=Path("scaling.png"), help="the plot (default scaling.png)")
    args = ap.parse_args(argv)
    masters = [m.strip() for m in args.masters.split(",") if m.strip()]
    spark_args = [a for flag, value in (("--driver-memory", args.driver_memory),
                                        ("--executor-memory", args.executor_memory)) if value for a in (flag, value)]

    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="sv-scaling-"))
    scratch.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        print(f"reading the real images from {args.data} ...", file=sys.stderr, flush=True)
        labels, images = load_real(args.data)
        for n in args.sizes:
            release = scratch / f"cifar-{n}"
            shutil.rmtree(release, ignore_errors=True)
            print(f"writing {n:,} images to {release} ...", file=sys.stderr, flush=True)
            write_release(labels, images, n, release)
            for master in masters:
                print(f"  sparkvision run, {n:,} images, {master} ...", file=sys.stderr, flush=True)
                r = run_once(release, n, master, scratch, spark_args)
                assert r["num_images"] == n, (r["num_images"], n)
                print(f"    work {r['work']:.1f} s, {r['images_per_s']:.0f} images/s, driver peak "
                      f"{r['peak_bytes']['driver'] / 2**20:.0f} MB", file=sys.stderr, flush=True)
                results.append(r)
            shutil.rmtree(release, ignore_errors=True)
    finally:
        if args.scratch is None:
            shutil.rmtree(scratch, ignore_errors=True)

    verdict = verdicts(results)
    print_table(results, verdict)
    report = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": f"{platform.node()} {os.cpu_count()} cores {platform.machine()}, "
                         f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB",
              "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
              "results": results, "verdicts": verdict}
    args.json.write_text(json.dumps(report, indent=2))
    plot(results, args.plot)
    print(f"\nwrote {args.json} and {args.plot}")
    return report


if __name__ == "__main__":
    main()
