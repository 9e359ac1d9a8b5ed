"""apt and dpkg for the Debian source: which version the archive has, downloading it, reading its pages.

Nothing is installed: `apt-get download` fetches the .deb into the cache folder, and
`dpkg-deb --fsys-tarfile` streams its file tree so that only the pages are kept, in memory (the
images that make up most of the help packages are never written). The callers decide what to do
when apt is missing or the network is down (`debian._build_meta`).
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import tarfile
import tempfile
from pathlib import Path

from mer.data.corpus import DataError
from mer.files.atomic import publish_file

# One logger for the whole source, the one its users know (mer.data.sources.debian).
log = logging.getLogger("mer.data.sources.debian")

APT_TOOLS = ("apt-get", "apt-cache", "dpkg-deb")
"""The programs this source runs; without them only cached text can be used."""

_MAN_FILE = re.compile(r"\.[0-9][a-z0-9_]*(\.gz)?$")
_HTML_FILE = re.compile(r"\.(x?html?)(\.gz)?$")


class DownloadError(DataError):
    """apt-get download failed (network, archive changed): an older cache of the same configuration may do."""


def candidate_versions(packages: list[str]) -> dict[str, str | None]:
    """Version apt would download of each package; None when the archive has no such (real) package.

    One `apt-cache policy` call for all of them (each apt call spends ~0.4 s loading its cache).
    """
    proc = subprocess.run(["apt-cache", "policy", *packages], capture_output=True, text=True, check=False,
                          env={**os.environ, "LC_ALL": "C"})
    found: dict[str, str | None] = {}
    current = None
    for line in proc.stdout.splitlines():
        if line and not line[0].isspace() and line.endswith(":"):
            current = line[:-1].split(":", 1)[0]  # "name:" or "name:arch:"
        elif current is not None and line.strip().startswith("Candidate:"):
            version = line.split(":", 1)[1].strip()
            found[current] = None if version == "(none)" else version
            current = None
    return {p: found.get(p) for p in packages}


def deb_path(debs_dir: Path, package: str, version: str) -> Path:
    """Where the .deb of `package` at `version` is kept in `debs_dir` (an epoch's ':' written '%3a', as apt does)."""
    return debs_dir / f"{package}_{version.replace(':', '%3a')}_all.deb"


def apt_get_download(package: str, version: str, debs_dir: Path) -> Path:
    """Download `package=version` into `debs_dir` (nothing installed) and return the .deb's path."""
    debs_dir.mkdir(parents=True, exist_ok=True)
    target = deb_path(debs_dir, package, version)
    with tempfile.TemporaryDirectory(dir=debs_dir, prefix=".download-") as tmp:
        cmd = ["apt-get", "download", "-q", f"{package}={version}"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # As root apt drops to the _apt user, who cannot write into our folder: it warns, then
            # downloads as root anyway. Say so up front instead of printing a warning every time.
            cmd[1:1] = ["-o", "APT::Sandbox::User=root"]
        log.info("debian: downloading %s %s", package, version)
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, check=False)
        debs = sorted(Path(tmp).glob("*.deb"))
        if proc.returncode != 0 or len(debs) != 1:
            raise DownloadError(
                f"debian: `{' '.join(cmd)}` failed (exit {proc.returncode}): "
                f"{(proc.stderr or proc.stdout).strip()[-800:]}\n"
                "Check the network access to the Debian archive and run `apt-get update`."
            )
        publish_file(debs[0], target)
    return target


def deb_files(deb: Path, prefix: str) -> list[tuple[str, bytes, str]]:
    """(path inside the package, bytes, "html" | "man") of the pages under `prefix`, sorted by path.

    Streams `dpkg-deb --fsys-tarfile` (the package's file tree, as `dpkg-deb -x` would write it)
    and keeps only the pages: nothing is written to disk, and the images that make up most of the
    help packages are never stored. Symbolic links (aliases of other pages) are left out.
    """
    proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    files = []
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                rel = member.name.removeprefix("./")
                if not rel.startswith(prefix):
                    continue
                name = rel.rsplit("/", 1)[-1]
                if _HTML_FILE.search(name):
                    kind = "html"
                elif "/man/" in f"/{rel}" and _MAN_FILE.search(name):
                    kind = "man"
                else:
                    continue
                f = tar.extractfile(member)
                if f is not None:
                    files.append((rel, f.read(), kind))
    except tarfile.TarError as e:
        proc.kill()
        proc.wait()
        raise DataError(f"debian: cannot read {deb} ({e}); delete that file so that it is downloaded again") from e
    finally:
        stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        rc = proc.wait()
    if rc != 0:
        raise DataError(
            f"debian: `dpkg-deb --fsys-tarfile {deb}` failed: {stderr.strip()[-800:]}; "
            "delete that file so that it is downloaded again"
        )
    return sorted(files)
