"""MovieLens from GroupLens: fetched, checked against the published checksum, unpacked into a cache.

GroupLens publishes each archive at ``https://files.grouplens.org/datasets/movielens/NAME.zip``
with its MD5 beside it (``NAME.zip.md5``). The archives are updated from time to time, so the
checksum is read from that file each time, never written into this package.

The cache is ``~/.cache/tfrs-pipeline/`` (``$XDG_CACHE_HOME/tfrs-pipeline`` where that is set),
or the folder in ``TFRS_PIPELINE_CACHE``. A data set lands there as ``NAME/`` only once it is
whole: the download and the unpacking happen beside it under temporary names that are removed
whatever happens, so an interrupted or failed download leaves nothing that looks like data.

Examples:
    >>> download_movielens("ml-latest-small")   # doctest: +SKIP
    PosixPath('/home/me/.cache/tfrs-pipeline/ml-latest-small')

    Then ``--data movielens:ml-latest-small`` (or ``load_data("movielens:ml-latest-small")``)
    reads the cached copy.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

from tfrs_pipeline.errors import DataError

#: Where GroupLens publishes the archives (``NAME.zip`` and ``NAME.zip.md5``).
GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens"

#: The archives ``download_movielens`` knows, and what each holds (ratings).
ARCHIVES = {
    "ml-latest-small": "about 100,000 ratings by 610 users, ratings.csv layout",
    "ml-100k": "100,000 ratings by 943 users, with demographics",
    "ml-1m": "about 1 million ratings by 6,040 users, with demographics",
    "ml-10m": "about 10 million ratings",
    "ml-20m": "about 20 million ratings by 138,493 users",
    "ml-25m": "about 25 million ratings",
    "ml-32m": "about 32 million ratings",
    "ml-latest": "the newest full data set (its size changes with each update)",
}

#: Seconds a connection may stay silent before the download is given up.
TIMEOUT_S = 60.0

_CHUNK = 1 << 20


def cache_dir() -> Path:
    """The folder downloaded data sets are kept in (``TFRS_PIPELINE_CACHE``, else the user's cache)."""
    if os.environ.get("TFRS_PIPELINE_CACHE"):
        return Path(os.environ["TFRS_PIPELINE_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "tfrs-pipeline"


def cached_movielens(name: str) -> Path | None:
    """The cached copy of a downloaded archive (``ml-latest-small``), or None where there is none."""
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name) or name in (".", ".."):
        return None
    folder = cache_dir() / name
    return folder if folder.is_dir() else None


def not_found_hint(path: str) -> str:
    """What to say after "no such folder" for a ``movielens:`` path: how to fetch it, where that applies."""
    if path in ARCHIVES:
        return f"; `tfrs-pipeline data download {path}` fetches it from GroupLens into {cache_dir()}"
    return (f"; give a MovieLens folder or .zip, or fetch one with `tfrs-pipeline data download NAME` "
            f"({', '.join(ARCHIVES)}) and use movielens:NAME")


def download_movielens(name: str, cache: str | Path | None = None, *, base_url: str = GROUPLENS_URL,
                       force: bool = False, log: Callable[[str], None] = print) -> Path:
    """Fetches a MovieLens archive, checks its MD5 against the one published beside it, and unpacks it.

    Args:
        name: one of :data:`ARCHIVES` (``ml-latest-small``, ``ml-100k``, ``ml-1m``, ``ml-20m``, ...).
        cache: the folder it is unpacked into, as ``cache/name`` (default: :func:`cache_dir`).
        base_url: where ``name.zip`` and ``name.zip.md5`` are (default: GroupLens).
        force: fetch again even when the cache already holds it.
        log: where progress lines go.

    Returns:
        The folder holding the data set's files.

    Raises:
        DataError: an unknown name, an unreachable or failing server, a transfer cut short, a
            checksum that does not match, or a damaged archive. Nothing is left in the cache then.
    """
    if name not in ARCHIVES:
        raise DataError(f"unknown MovieLens archive {name!r}; expected one of {', '.join(ARCHIVES)}")
    cache = Path(cache).expanduser() if cache is not None else cache_dir()
    target = cache / name
    if target.is_dir() and not force:
        log(f"{name}: already in {target} (--force fetches it again)")
        return target
    cache.mkdir(parents=True, exist_ok=True)
    url = f"{base_url.rstrip('/')}/{name}.zip"
    expected = _published_md5(f"{url}.md5")
    work = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=cache))
    try:
        archive = work / f"{name}.zip"
        digest = _fetch(url, archive, log)
        if digest != expected:
            raise DataError(f"{url}: MD5 {digest} does not match the published {expected} (from {url}.md5); "
                            "the download was damaged or the archive changed while it was fetched: run the "
                            "command again")
        unpacked = _unpack(archive, work / "unpacked", url)
        if target.exists():
            shutil.rmtree(target)
        unpacked.rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"{name}: unpacked into {target}")
    return target


def _open(url: str):
    try:
        return urllib.request.urlopen(url, timeout=TIMEOUT_S)  # noqa: S310 (https or a URL the user gave)
    except urllib.error.HTTPError as error:
        raise DataError(f"{url}: the server answered {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DataError(f"{url}: could not connect ({reason}); check the network, or download the archive "
                        "yourself and pass --data movielens:PATH") from None


def _published_md5(url: str) -> str:
    """The MD5 in GroupLens' checksum file (one 32-digit hexadecimal number in it)."""
    with _open(url) as response:
        try:
            text = response.read(4096).decode("ascii", errors="replace")
        except (OSError, http.client.HTTPException) as error:
            raise DataError(f"{url}: the transfer broke off ({error}); run the command again") from None
    found = set(re.findall(r"\b[0-9a-fA-F]{32}\b", text))
    if len(found) != 1:
        raise DataError(f"{url}: expected one MD5 checksum (32 hexadecimal digits), found {len(found)}")
    return found.pop().lower()


def _fetch(url: str, path: Path, log: Callable[[str], None]) -> str:
    """Writes ``url`` to ``path`` with progress every 10%; returns the content's MD5."""
    md5 = hashlib.md5(usedforsecurity=False)
    with _open(url) as response, path.open("wb") as out:
        total = int(response.headers.get("Content-Length") or 0)
        size = f"{total / 2**20:.1f} MiB" if total else "size unknown"
        log(f"downloading {url} ({size})")
        done, shown = 0, 0
        try:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                md5.update(chunk)
                done += len(chunk)
                if total and done * 10 // total > shown:
                    shown = done * 10 // total
                    log(f"  {done / 2**20:.1f} of {total / 2**20:.1f} MiB ({min(shown * 10, 100)}%)")
        except (TimeoutError, OSError, http.client.HTTPException) as error:
            raise DataError(f"{url}: the transfer broke off after {done:,} bytes ({error!r}); run the command again") from None
    if total and done != total:
        raise DataError(f"{url}: the transfer broke off after {done:,} of {total:,} bytes; run the command again")
    return md5.hexdigest()


def _unpack(archive: Path, into: Path, url: str) -> Path:
    """Unpacks the archive; returns its one top folder (GroupLens' layout), or ``into`` without one."""
    try:
        with zipfile.ZipFile(archive) as opened:
            for member in opened.namelist():
                parts = Path(member).parts
                if Path(member).is_absolute() or ".." in parts:
                    raise DataError(f"{url}: the archive names a file outside its folder ({member!r}); not unpacked")
            opened.extractall(into)  # member names checked above
    except (zipfile.BadZipFile, EOFError) as error:
        raise DataError(f"{url}: not a readable zip archive ({error}); run the command again") from None
    entries = list(into.iterdir())
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else into
