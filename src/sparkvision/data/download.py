"""Downloading a CIFAR release's archive (verified by md5, idempotent) and extracting its batch
files (only the expected members, never a path from the archive)."""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

from sparkvision.data.sources.cifar import CIFAR10, RELEASES, CifarRelease, extra_batch_names, how_to_pass
from sparkvision.errors import BadDataError, DownloadError
from sparkvision.runtime.fs import atomic_output


def file_md5(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """The md5 hex digest of a file, read in chunks."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()



def _progress_line(done: int, total: int | None, started: float) -> str:
    rate = done / max(time.perf_counter() - started, 1e-6) / 1e6
    if total:
        bar = "#" * int(30 * done / total)
        return f"\r  [{bar:<30}] {done / 1e6:6.1f}/{total / 1e6:.1f} MB {rate:5.1f} MB/s"
    return f"\r  {done / 1e6:6.1f} MB {rate:5.1f} MB/s"



def download(release: CifarRelease, dest_dir: str | os.PathLike, *, url: str | None = None,
             progress: bool = True, timeout: float = 30.0) -> Path:
    """Download the release archive into ``dest_dir`` and verify its md5; return its path.

    Idempotent: a verified archive already there is reused. The download goes to a temporary
    name and is renamed only once complete and verified, so a partial or corrupt file is never
    used. ``url`` overrides the release's (the SPARKVISION_CIFAR_URL variable does too).
    """
    mirror = None if url else os.environ.get("SPARKVISION_CIFAR_URL")
    url = url or mirror or release.url
    # where the URL came from, said with every failure: a mirror set long ago is easily forgotten
    source = f" (from SPARKVISION_CIFAR_URL; unset it to use {release.url})" if mirror else ""
    dest = Path(dest_dir)
    target = dest / release.filename
    if target.is_file():
        if file_md5(target) == release.tgz_md5:
            if progress:
                print(f"  using the verified download {target}", file=sys.stderr)
            return target
        target.unlink()  # corrupt or from an older attempt: never used
    dest.mkdir(parents=True, exist_ok=True)
    if progress:
        print(f"  downloading {url}", file=sys.stderr)
    try:
        with atomic_output(target) as part:
            _fetch(url, part, release, timeout, progress)
        return target
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"Download of {url}{source} failed: the server answered {exc.code} {exc.reason}. "
                            f"{how_to_pass(release, auto=False)}") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        # ValueError: a URL urllib cannot parse (a local path given as the mirror), a bad header
        reason = getattr(exc, "reason", exc)
        raise DownloadError(
            f"Could not download {url}{source} ({reason}). If this machine is offline, get {release.filename} "
            f"elsewhere and pass --data PATH (the archive, or the folder it unpacks to)."
        ) from exc


def _fetch(url: str, part: Path, release: CifarRelease, timeout: float, progress: bool) -> None:
    """Stream ``url`` into ``part``; DownloadError when it stops short or its md5 is not the release's."""
    h, done, started = hashlib.md5(), 0, time.perf_counter()
    with urllib.request.urlopen(url, timeout=timeout) as resp, open(part, "wb") as out:
        length = resp.headers.get("Content-Length") or ""
        total = int(length) if length.isdigit() and int(length) > 0 else None  # a bad header: size unknown
        while block := resp.read(1 << 20):
            out.write(block)
            h.update(block)
            done += len(block)
            if progress:
                print(_progress_line(done, total, started), end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    if total is not None and done != total:
        raise DownloadError(f"Download of {url} stopped after {done} of {total} bytes; run again to retry.")
    if h.hexdigest() != release.tgz_md5:
        raise DownloadError(f"Download of {url} is corrupt: md5 {h.hexdigest()}, expected "
                            f"{release.tgz_md5}. Run again to retry, or pass --data with a good copy.")



def extract_archive(archive: Path, dest_root: str | os.PathLike, release: CifarRelease = CIFAR10) -> Path:
    """Extract the release's batch files from ``archive`` once; return the batches folder.

    Only the expected members are written (no path from the archive is trusted), into a
    temporary folder renamed when complete; the next call with the same archive reuses it. An
    archive without every training batch, or with a file named like a batch that is not one of the
    release's (which would be left unread), raises :class:`BadDataError` naming it, and nothing is kept.
    """
    st = archive.stat()
    key = hashlib.sha256(f"{archive.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    final = Path(dest_root) / f"{release.name}-{key}"
    if final.exists():
        if not _missing_batches(final / release.base_folder, release):
            return final / release.base_folder
        shutil.rmtree(final, ignore_errors=True)  # an incomplete extraction older versions kept: never reused
    wanted = {f"{release.base_folder}/{n}": n for n in release.train_list + release.test_list + (release.meta,)}
    Path(dest_root).mkdir(parents=True, exist_ok=True)
    try:
        with atomic_output(final) as tmp:
            _extract(archive, release, wanted, tmp)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise BadDataError(f"{archive}: not a complete .tar.gz archive ({type(exc).__name__}: {exc}). "
                           "Download it again, or pass the extracted folder with --data.") from exc
    return final / release.base_folder


def _extract(archive: Path, release: CifarRelease, wanted: dict[str, str], tmp: Path) -> None:
    """Write the ``wanted`` members of ``archive`` into ``tmp``; BadDataError when training batches are missing."""
    (tmp / release.base_folder).mkdir(parents=True)
    tops = set()  # the archive's top-level folders, to say what it holds when it is not this release
    beside = []   # other files in the batches folder: one named like a batch would be left unread
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            path = member.name.lstrip("./")
            tops.add(path.split("/")[0])
            name = wanted.get(path)
            if name and member.isfile():
                with tar.extractfile(member) as src, open(tmp / release.base_folder / name, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
            elif member.isfile() and path.startswith(release.base_folder + "/"):
                beside.append(path[len(release.base_folder) + 1:])
    missing = _missing_batches(tmp / release.base_folder, release)
    if missing:
        raise _not_this_release(archive, release, tops, missing)
    extra = extra_batch_names(beside, release)
    if extra:
        raise BadDataError(
            f"{archive}: {', '.join(f'{release.base_folder}/{n}' for n in extra)} inside "
            f"{'is' if len(extra) == 1 else 'are'} not part of the {release.name} release, and sparkvision reads "
            "only the release's batches, so its images would be left out. Make the archive without "
            f"{'it' if len(extra) == 1 else 'them'}, or give a folder of class folders with --data instead "
            "(README: your own images).")


def _missing_batches(folder: Path, release: CifarRelease) -> list[str]:
    return [n for n in release.train_list if not (folder / n).is_file()]



def _not_this_release(archive: Path, release: CifarRelease, tops: set[str], missing: list[str]) -> BadDataError:
    """The error for an archive without the release's training batches: what it holds instead, what to do."""
    binary = sorted(tops & {r.bin_folder for r in RELEASES.values()})
    if binary:  # archives are read in the python layout only; the binary layout is read from a folder
        return BadDataError(
            f"{archive}: holds the binary layout ({binary[0]}/), but an archive is read only in the python "
            f"layout ({release.filename}). Extract it (tar xzf {archive}) and pass the folder {binary[0]} "
            "it makes with --data.")
    other = next((r for r in RELEASES.values() if r.base_folder in tops and r.base_folder != release.base_folder), None)
    hint = f"it holds the {other.name} release: pass --dataset {other.name}" if other else \
        f"download {release.filename} again, or pass the extracted batches folder with --data"
    return BadDataError(
        f"{archive}: no {release.base_folder}/{missing[0]} inside ({len(missing)} of the {len(release.train_list)} "
        f"training batches missing), so this is not a complete {release.name} python release; {hint}.")
