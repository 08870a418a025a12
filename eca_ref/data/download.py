"""Download an official CIFAR-10 archive, verify its size and MD5, and only then move it into place.

The archive is streamed into a temporary file beside its final name (``.cifar-10-binary.tar.gz.XXXX.part``)
while its MD5 is computed; only when the byte count and the MD5 both match is it renamed to its final
name (an atomic ``os.replace``). An interrupted or failed download therefore never leaves a file that
looks complete, and the temporary file is removed on every error. A second call finds the archive,
checks it again, and does nothing.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import NamedTuple

from eca_ref.data.archive import extract_members
from eca_ref.data.formats import CIFAR_PAGE, OFFICIAL_BASE_URL, get_format
from eca_ref.data.load import file_md5, resolve_root
from eca_ref.errors import DataError

CHUNK = 1 << 20


class DownloadResult(NamedTuple):
    path: Path  # the verified archive
    downloaded: bool  # False: it was already there and verified (nothing done)
    extracted: Path | None  # the extracted folder, if extract=True


def _by_hand(archive: str, dest: Path, md5: str) -> str:
    return (f"To place it by hand: download {archive} from {CIFAR_PAGE} (MD5 {md5}) on a machine with network, "
            f"copy it to {dest}, and check it with `eca-ref data info --root {dest.parent}`; or point "
            "--data-dir / $ECA_REF_DATA at a copy you already have")


def _progress(enabled: bool):
    from rich.console import Console
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                               TransferSpeedColumn)

    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), console=Console(stderr=True), disable=not enabled)


def download_cifar10(root=None, *, format: str = "binary", base_url: str = OFFICIAL_BASE_URL,
                     md5: str | None = None, size: int | None = None, progress: bool = True,
                     timeout: float = 60.0, extract: bool = False) -> DownloadResult:
    """Download the official CIFAR-10 archive into ``root`` and verify it.

    Args:
        root: target folder (see :func:`~eca_ref.data.resolve_root`), created if needed.
        format: "binary" (cifar-10-binary.tar.gz) or "python" (cifar-10-python.tar.gz).
        base_url: where the archive is fetched from, ``base_url + "/" + archive name``; the official
            CIFAR-10 page by default (pass a mirror's URL here).
        md5: expected MD5 hex digest; default the official archive's.
        size: expected size in bytes; default the official archive's when ``md5`` is the default,
            else unchecked (the MD5 still is, and so is the server's Content-Length).
        progress: show a rich progress bar (bytes, speed, ETA) on stderr.
        timeout: seconds to wait for the server before giving up.
        extract: also extract the archive's batch folder next to it (safely; see
            :mod:`eca_ref.data.archive`), unless that folder already exists.

    Returns:
        DownloadResult(path, downloaded, extracted).

    Raises:
        DataError: network failure (with how to place the archive by hand), a cut-off transfer, a size
        or MD5 mismatch (nothing is left behind), or an existing file at the target that fails the check.
    """
    fmt = get_format(format)
    if md5 is None:
        md5, size = fmt.md5, (fmt.size if size is None else size)
    md5 = md5.lower()
    root = resolve_root(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the data folder {root}: {exc.strerror or exc}") from None
    dest = root / fmt.archive
    url = base_url.rstrip("/") + "/" + fmt.archive
    if dest.exists():
        _check_existing(dest, md5, size)
        downloaded = False
    else:
        _fetch(url, dest, md5, size, progress, timeout, fmt.archive)
        downloaded = True
    extracted = None
    if extract:
        extracted = root / fmt.folder
        if not extracted.exists():
            extract_members(dest, fmt.folder, fmt.expected_files(), root)
    return DownloadResult(dest, downloaded, extracted)


def _check_existing(dest: Path, md5: str, size: int | None) -> None:
    have = dest.stat().st_size
    if size is not None and have != size:
        raise DataError(f"{dest} exists but has {have} bytes, expected {size}: delete it to download again")
    got = file_md5(dest)
    if got != md5:
        raise DataError(f"{dest} exists but its MD5 is {got}, expected {md5}: delete it to download again")


def _fetch(url: str, dest: Path, md5: str, size: int | None, progress: bool, timeout: float, archive: str) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                response = urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 (http(s) URL we built)
            except urllib.error.HTTPError as exc:
                raise DataError(f"download of {url} failed: HTTP {exc.code} {exc.reason}. "
                                f"{_by_hand(archive, dest, md5)}") from None
            except (urllib.error.URLError, OSError, ValueError) as exc:
                reason = getattr(exc, "reason", exc)
                raise DataError(f"could not download {url}: {reason}. {_by_hand(archive, dest, md5)}") from None
            with response:
                length = response.headers.get("Content-Length")
                length = int(length) if length and length.isdigit() else None
                total = size if size is not None else length
                h = hashlib.md5(usedforsecurity=False)
                got = 0
                with _progress(progress) as bar:
                    task = bar.add_task(archive, total=total)
                    try:
                        while block := response.read(CHUNK):
                            out.write(block)
                            h.update(block)
                            got += len(block)
                            bar.update(task, advance=len(block))
                    except (OSError, ValueError, http.client.HTTPException) as exc:  # reset, timeout, ...
                        raise DataError(f"download of {url} was interrupted after {got} bytes "
                                        f"({type(exc).__name__}); nothing was saved, run it again. "
                                        f"{_by_hand(archive, dest, md5)}") from None
        if length is not None and got != length:
            raise DataError(f"download of {url} was cut off after {got} of {length} bytes; nothing was saved, "
                            f"run it again. {_by_hand(archive, dest, md5)}")
        if size is not None and got != size:
            raise DataError(f"downloaded {got} bytes from {url}, expected {size}; nothing was saved "
                            "(a different or damaged file)")
        digest = h.hexdigest()
        if digest != md5:
            raise DataError(f"downloaded file from {url} has MD5 {digest}, expected {md5}; nothing was saved "
                            "(a damaged transfer or a different file)")
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
