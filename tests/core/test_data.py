"""Tests for ddpm_core.data and ddpm_core.download: no network, only files written here
and servers on 127.0.0.1."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import os
import pickle
import socket
import tarfile
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ddpm_core import data, memory, shapes
from ddpm_core.config import DataConfig
from ddpm_core.download import download_file
from ddpm_core.errors import DataError


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def http_dir(tmp_path):
    """A folder served over HTTP on 127.0.0.1; yields (folder, base_url)."""
    served = tmp_path / "served"
    served.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def _dead_url(name: str) -> str:
    """A URL on a localhost port nobody listens on: the connection is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/{name}"


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _write_idx_gz(path: Path, array: np.ndarray) -> Path:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))
    return path


def _fmnist_files(folder: Path, n: int = 5):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=(n,), dtype=np.uint8)
    img = _write_idx_gz(folder / "train-images-idx3-ubyte.gz", images)
    lbl = _write_idx_gz(folder / "train-labels-idx1-ubyte.gz", labels)
    return images, labels, img, lbl


def _fmnist_spec(img_urls, lbl_urls, img_md5, lbl_md5):
    return data.RemoteDataset(
        key="fashion_mnist",
        title="Fashion-MNIST",
        files=(
            data.RemoteFile("train-images-idx3-ubyte.gz", img_md5, tuple(img_urls)),
            data.RemoteFile("train-labels-idx1-ubyte.gz", lbl_md5, tuple(lbl_urls)),
        ),
        class_names=tuple(f"class{i}" for i in range(10)),
    )


def _no_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


class _Progress:
    def __init__(self):
        self.calls = []

    def __call__(self, done, total, message):
        assert isinstance(done, int) and (total is None or isinstance(total, int)) and isinstance(message, str)
        self.calls.append((done, total, message))


# ---------------------------------------------------------------------------------------
# built-in shapes
# ---------------------------------------------------------------------------------------


def test_shapes_deterministic_and_varied():
    a = data.make_shapes(400, 16, 1, seed=3)
    b = data.make_shapes(400, 16, 1, seed=3)
    c = data.make_shapes(400, 16, 1, seed=4)
    assert a.images.shape == (400, 1, 16, 16) and a.images.dtype == torch.uint8
    assert a.labels.dtype == torch.int64 and a.class_names == list(data.SHAPE_CLASSES)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)
    # Balanced classes, all images distinct, a dark background and a visible shape.
    assert torch.bincount(a.labels).tolist() == [100] * len(data.SHAPE_CLASSES)
    assert len({bytes(x.numpy()) for x in a.images}) == 400
    assert a.images[:, :, 0, 0].float().mean() < 5
    assert (a.images.flatten(1).amax(1) > 140).all()
    # Varied position, size and brightness.
    assert a.images.float().mean(dim=(1, 2, 3)).std() > 5
    assert a.images.flatten(1).amax(1).float().std() > 10


def test_shapes_colour_has_same_geometry():
    grey = data.make_shapes(64, 16, 1, seed=0)
    rgb = data.make_shapes(64, 16, 3, seed=0)
    assert rgb.images.shape == (64, 3, 16, 16)
    assert torch.equal(grey.labels, rgb.labels)
    assert torch.equal(grey.images[:, 0] > 0, rgb.images.amax(1) > 0)
    assert not torch.equal(rgb.images[:, 0], rgb.images[:, 2])  # really coloured


def test_load_dataset_shapes_default_and_limit():
    full = data.load_dataset(DataConfig())
    assert len(full) == data.SHAPES_COUNT and full.images.shape[1:] == (1, 16, 16)
    assert "8,000" in full.name
    part = data.load_dataset(DataConfig(limit=100))
    assert len(part) == 100 and torch.equal(part.images, full.images[:100])
    assert not data.needs_download(DataConfig())


def test_shapes_drawn_in_chunks_are_the_same_images(monkeypatch):
    whole = data.make_shapes(50, 16, 3, seed=1)
    seen = []
    monkeypatch.setattr(shapes, "CHUNK_PIXELS", 7 * 16 * 16)  # 7 images at a time
    chunked = data.make_shapes(50, 16, 3, seed=1, progress=lambda done, total, message: seen.append(done))
    assert torch.equal(chunked.images, whole.images) and torch.equal(chunked.labels, whole.labels)
    assert seen == list(range(0, 50, 7))  # between chunks, so a Stop can cancel
    prefix = data.make_shapes(50, 16, 3, seed=1, count=9)
    assert torch.equal(prefix.images, whole.images[:9]) and torch.equal(prefix.labels, whole.labels[:9])


def test_a_dataset_larger_than_free_memory_is_refused_before_it_is_made(monkeypatch, tmp_path):
    # 8,000 shapes at 512×512 take 2 GB: with 3 GB free that is more than half of it. The
    # refusal comes before anything is drawn or read (the kernel would otherwise kill
    # the process once the pages were touched).
    monkeypatch.setattr(memory, "available_bytes", lambda: 3 * 2**30)
    with monkeypatch.context() as m, pytest.raises(DataError) as e:
        m.setattr(shapes, "_draw", lambda *a: pytest.fail("drew shapes that do not fit"))
        data.load_dataset(DataConfig(image_size=512))
    message = str(e.value)
    assert "8,000 images at 512×512 would take 2.0 GB" in message and "3.0 GB" in message
    assert "smaller image size" in message and "\n" not in message
    # A limit that fits passes.
    assert len(data.load_dataset(DataConfig(image_size=32, limit=10))) == 10
    # A folder is checked from its file count, before a file is read.
    for i in range(3):
        _striped().save(tmp_path / f"{i}.png")
    monkeypatch.setattr(memory, "available_bytes", lambda: 1000)
    with pytest.raises(DataError, match="3 images at 32×32 would take 3.0 KB"):
        data.load_folder(tmp_path, 32, 1)
    assert len(data.load_folder(tmp_path, 8, 1)) == 3  # 192 bytes fit
    monkeypatch.setattr(memory, "available_bytes", lambda: None)  # unknown: not checked
    assert len(data.load_folder(tmp_path, 32, 1)) == 3


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are a POSIX feature")
def test_named_pipes_named_like_images_are_never_read(tmp_path):
    # Opening a named pipe waits for a writer, for ever: in a dataset folder it is left
    # out, opened as an image it is refused.
    _striped().save(tmp_path / "a.png")
    os.mkfifo(tmp_path / "b.png")
    assert [p.name for p in data.list_image_files(tmp_path)] == ["a.png"]
    assert len(data.load_folder(tmp_path, 8, 1)) == 1
    with pytest.raises(DataError, match="is not a regular file"):
        data.load_image(tmp_path / "b.png", 8, 1)


# ---------------------------------------------------------------------------------------
# batching
# ---------------------------------------------------------------------------------------


def test_to_model_range():
    x = torch.tensor([0, 127, 255], dtype=torch.uint8)
    y = data.to_model_range(x)
    assert y.dtype == torch.float32
    assert y[0] == -1.0 and y[2] == 1.0 and abs(y[1].item() - (127 / 127.5 - 1)) < 1e-6
    s = data.to_model_range(data.make_shapes(50, 16, 3).images)
    assert s.min() >= -1.0 and s.max() <= 1.0
    with pytest.raises(TypeError):
        data.to_model_range(torch.zeros(3))


def test_make_batch_flips_about_half():
    n = 2000
    # Images whose mirror image differs: a single bright pixel in the left column.
    images = torch.zeros(n, 1, 4, 4, dtype=torch.uint8)
    images[:, 0, 1, 0] = 255
    index = torch.arange(n)
    plain = data.make_batch(images, index, flip=False, generator=torch.Generator().manual_seed(0))
    assert torch.equal(plain, data.to_model_range(images))
    batch = data.make_batch(images, index, flip=True, generator=torch.Generator().manual_seed(0))
    flipped = batch[:, 0, 1, 3] == 1.0
    assert torch.equal(flipped, batch[:, 0, 1, 0] == -1.0)  # each image is exactly one of the two
    assert 0.45 < flipped.float().mean().item() < 0.55
    again = data.make_batch(images, index, flip=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(batch, again)  # flips come from the generator only
    # Selecting by index, and no generator at all.
    some = data.make_batch(images, torch.tensor([5, 1]), flip=True, generator=None)
    assert some.shape == (2, 1, 4, 4)


def test_epoch_permutation():
    p = data.epoch_permutation(1000, seed=7, epoch=3)
    assert p.dtype == torch.int64
    assert torch.equal(torch.sort(p).values, torch.arange(1000))
    assert torch.equal(p, data.epoch_permutation(1000, seed=7, epoch=3))
    assert not torch.equal(p, data.epoch_permutation(1000, seed=7, epoch=4))
    assert not torch.equal(p, data.epoch_permutation(1000, seed=8, epoch=3))
    assert data.epoch_permutation(0, 0, 0).numel() == 0


# ---------------------------------------------------------------------------------------
# image folders
# ---------------------------------------------------------------------------------------


def _striped(width=40, height=20):
    """Grey 100 in the middle, white where a squash (instead of a crop) would show."""
    a = np.full((height, width, 3), 100, np.uint8)
    a[:, :10] = 255
    a[:, 30:] = 255
    return Image.fromarray(a, "RGB")


def _make_tree(root: Path) -> Path:
    (root / "cats" / "sub").mkdir(parents=True)
    (root / "dogs").mkdir()
    _striped().save(root / "cats" / "wide.png")
    Image.new("RGB", (12, 12), (255, 0, 0)).save(root / "cats" / "sub" / "red.JPG", quality=95)
    Image.new("L", (9, 30), 200).save(root / "dogs" / "tall.bmp")
    Image.new("RGBA", (8, 8), (255, 255, 255, 0)).save(root / "dogs" / "clear.webp", lossless=True)
    Image.new("L", (8, 8), 50).save(root / "top.gif")
    (root / "dogs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (root / "notes.txt").write_text("not an image")
    Image.new("L", (8, 8), 255).save(root / "._ignored.png")  # macOS metadata name: not listed
    return root


def test_folder_labels_conversion_and_skips(tmp_path):
    root = _make_tree(tmp_path / "pics")
    progress = _Progress()
    s = data.load_folder(root, 8, 1, progress=progress)
    assert s.images.shape == (5, 1, 8, 8) and s.images.dtype == torch.uint8
    assert s.skipped == 1  # broken.png
    assert s.name == "Folder 'pics' (5 images, 1 unreadable file left out)"  # said wherever the run is shown
    assert progress.calls[-1][2] == "read 5 images, 1 unreadable file left out"
    assert s.class_names == ["", "cats", "dogs"]
    # Sorted walk: cats/sub/red.JPG, cats/wide.png, dogs/clear.webp, dogs/tall.bmp, top.gif
    assert [s.class_names[i] for i in s.labels] == ["cats", "cats", "dogs", "dogs", ""]
    red, wide, clear, tall, top = s.images[:, 0]
    assert abs(red.float().mean().item() - 76) < 4  # luminance of pure red
    assert (clear == 0).all()  # transparency composited onto black
    assert (tall == 200).all() and (top == 50).all()
    # Wide image: shorter side -> 8 (16x8), then the centre 8 columns: no white edges.
    assert (wide[:, 1:7].float() - 100).abs().max() <= 3
    assert wide.max() < 200
    assert progress.calls and progress.calls[-1][0] == progress.calls[-1][1]

    rgb = data.load_folder(root, 8, 3)
    assert rgb.images.shape == (5, 3, 8, 8)
    r, g, b = rgb.images[0].float().mean(dim=(1, 2))
    assert r > 240 and g < 15 and b < 15
    assert torch.equal(rgb.images[3], torch.full((3, 8, 8), 200, dtype=torch.uint8))  # grey -> RGB

    limited = data.load_dataset(DataConfig(dataset="folder", root=str(root), image_size=8, limit=2))
    assert len(limited) == 2 and torch.equal(limited.images, s.images[:2])


def test_folder_flat_gets_empty_label(tmp_path):
    for i in range(3):
        Image.new("L", (6, 6), 10 * i).save(tmp_path / f"{i}.PNG")
    s = data.load_folder(tmp_path, 4, 1)
    assert s.class_names == [""] and s.labels.tolist() == [0, 0, 0] and s.skipped == 0


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        data.load_folder(tmp_path / "nope", 8, 1)
    f = tmp_path / "file.png"
    Image.new("L", (4, 4)).save(f)
    with pytest.raises(DataError, match="is a file, not a folder"):
        data.load_folder(f, 8, 1)
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "readme.txt").write_text("x")
    with pytest.raises(DataError, match="no images found"):
        data.load_folder(empty, 8, 1)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"garbage")
    (bad / "b.png").write_bytes(b"")
    with pytest.raises(DataError, match="none of the 2 image files") as e:
        data.load_folder(bad, 8, 1)
    assert "\n" not in str(e.value)


def test_load_image(tmp_path):
    p = tmp_path / "x.png"
    _striped().save(p)
    t = data.load_image(p, 8, 3)
    assert t.shape == (3, 8, 8) and t.dtype == torch.float32
    assert t.min() >= -1 and t.max() <= 1
    assert data.load_image(p, 8, 1).shape == (1, 8, 8)
    with pytest.raises(DataError, match="does not exist"):
        data.load_image(tmp_path / "missing.png", 8, 1)
    with pytest.raises(DataError, match="is a folder"):
        data.load_image(tmp_path, 8, 1)
    text = tmp_path / "fake.png"
    text.write_text("hello")
    with pytest.raises(DataError, match="cannot read .* as an image"):
        data.load_image(text, 8, 1)


# ---------------------------------------------------------------------------------------
# idx files and downloads
# ---------------------------------------------------------------------------------------


def test_read_idx(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    p = _write_idx_gz(tmp_path / "a.gz", arr)
    assert np.array_equal(data.read_idx(p, ndim=3), arr)
    raw = tmp_path / "a-raw"
    raw.write_bytes(gzip.decompress(p.read_bytes()))  # un-gzipped works too
    assert np.array_equal(data.read_idx(raw), arr)
    raw.write_bytes(gzip.decompress(p.read_bytes())[:-1])
    with pytest.raises(DataError, match="should hold 24 bytes"):
        data.read_idx(raw)
    raw.write_bytes(b"PK\x03\x04junk")
    with pytest.raises(DataError, match="not an idx file"):
        data.read_idx(raw)
    with pytest.raises(DataError, match="dimensions"):
        data.read_idx(p, ndim=1)


def test_download_dataset_over_http(tmp_path, http_dir, monkeypatch):
    served, base = http_dir
    images, labels, img, lbl = _fmnist_files(served)
    # The first mirror is dead, the second works: mirrors are tried in order.
    spec = _fmnist_spec(
        [_dead_url(img.name), base + img.name], [base + lbl.name], _md5(img), _md5(lbl)
    )
    monkeypatch.setitem(data.SOURCE_OVERRIDES, "fashion_mnist", spec)
    cache = tmp_path / "cache"
    cfg = DataConfig(dataset="fashion_mnist", image_size=16)
    assert data.needs_download(cfg, cache)

    progress = _Progress()
    s = data.load_dataset(cfg, progress=progress, data_dir=cache)
    assert s.images.shape == (5, 1, 16, 16) and s.labels.tolist() == labels.tolist()
    assert s.class_names[0] == "class0" and "Fashion-MNIST" in s.name
    assert not data.needs_download(cfg, cache)
    assert _no_leftovers(cache / "fashion_mnist") == sorted([img.name, lbl.name])  # no .part files
    assert (cache / "fashion_mnist" / img.name).read_bytes() == img.read_bytes()
    sizes = {img.stat().st_size, lbl.stat().st_size}
    finals = [(d, t) for d, t, m in progress.calls if m.startswith("downloaded")]
    assert len(finals) == 2 and {d for d, _ in finals} == sizes and all(d == t for d, t in finals)
    assert any(m.startswith("downloading") for _, _, m in progress.calls)

    # Native size and 3 channels: the pixels are the file's pixels, repeated.
    s28 = data.load_dataset(DataConfig(dataset="fashion_mnist", image_size=28, channels=3, limit=3), data_dir=cache)
    assert s28.images.shape == (3, 3, 28, 28)
    assert torch.equal(s28.images[:, 1], torch.from_numpy(images[:3]))

    # Once cached, no network is needed.
    monkeypatch.setitem(
        data.SOURCE_OVERRIDES, "fashion_mnist",
        _fmnist_spec([_dead_url(img.name)], [_dead_url(lbl.name)], None, None),
    )
    assert len(data.load_dataset(cfg, data_dir=cache)) == 5


@pytest.mark.parametrize("shape", [(0, 28, 28), (5, 0, 0)], ids=["no-images", "zero-pixels"])
def test_a_downloaded_file_without_images_is_told_to_be_fetched_again(tmp_path, monkeypatch, shape):
    # Well-formed idx files holding nothing to train on: a ZeroDivisionError before.
    cache = tmp_path / "cache"
    folder = cache / "fashion_mnist"
    folder.mkdir(parents=True)
    img = _write_idx_gz(folder / "train-images-idx3-ubyte.gz", np.zeros(shape, dtype=np.uint8))
    _write_idx_gz(folder / "train-labels-idx1-ubyte.gz", np.zeros(shape[:1], dtype=np.uint8))
    spec = _fmnist_spec([_dead_url(img.name)], [_dead_url("labels")], None, None)
    monkeypatch.setitem(data.SOURCE_OVERRIDES, "fashion_mnist", spec)
    with pytest.raises(DataError, match="holds (no images|images of 0×0 pixels): delete it so that it is downloaded"):
        data.load_dataset(DataConfig(dataset="fashion_mnist"), data_dir=cache)


def test_download_file_url_and_checksum(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(300_000))  # several chunks
    dest_dir = tmp_path / "dl"
    progress = _Progress()
    out = download_file([src.as_uri()], dest_dir / "f.bin", _md5(src), progress)
    assert out.read_bytes() == src.read_bytes()
    assert progress.calls[0] == (0, 300_000, "downloading f.bin")
    assert progress.calls[-1] == (300_000, 300_000, "downloaded f.bin")
    assert _no_leftovers(dest_dir) == ["f.bin"]

    with pytest.raises(DataError, match="wrong checksum"):
        download_file([src.as_uri()], dest_dir / "g.bin", "0" * 32)
    assert _no_leftovers(dest_dir) == ["f.bin"]  # neither g.bin nor a temp file


def test_download_md5_mismatch_via_load_dataset(tmp_path, http_dir, monkeypatch):
    served, base = http_dir
    _, _, img, lbl = _fmnist_files(served)
    spec = _fmnist_spec([base + img.name], [base + lbl.name], "f" * 32, _md5(lbl))
    monkeypatch.setitem(data.SOURCE_OVERRIDES, "fashion_mnist", spec)
    with pytest.raises(DataError, match="wrong md5 checksum") as e:
        data.load_dataset(DataConfig(dataset="fashion_mnist"), data_dir=tmp_path / "cache")
    assert "\n" not in str(e.value)
    assert _no_leftovers(tmp_path / "cache" / "fashion_mnist") == []


def test_no_network_error(tmp_path, monkeypatch):
    spec = _fmnist_spec(
        [_dead_url("a"), _dead_url("b")], [_dead_url("c")], None, None
    )
    monkeypatch.setitem(data.SOURCE_OVERRIDES, "fashion_mnist", spec)
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as e:
        data.load_dataset(DataConfig(dataset="fashion_mnist"), data_dir=cache)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("could not download Fashion-MNIST (no network?")
    assert "train-images-idx3-ubyte.gz" in msg and str(cache / "fashion_mnist") in msg and "'shapes'" in msg
    assert _no_leftovers(cache / "fashion_mnist") == []


class _Cancelled(Exception):
    pass


def test_cancel_and_truncated_downloads_leave_nothing(tmp_path, http_dir):
    served, base = http_dir
    (served / "big.bin").write_bytes(os.urandom(200_000))
    dest = tmp_path / "dl" / "big.bin"

    def cancel(done, total, message):
        if done > 0:
            raise _Cancelled()

    with pytest.raises(_Cancelled):  # the callback's exception propagates unchanged
        download_file([base + "big.bin"], dest, None, cancel)
    assert _no_leftovers(dest.parent) == []

    # A server that promises more bytes than it sends.
    class Short(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"x" * 1000)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Short)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        with pytest.raises(DataError, match="could not download"):
            download_file([f"http://127.0.0.1:{server.server_address[1]}/x"], dest, None)
    finally:
        server.shutdown()
        server.server_close()
    assert _no_leftovers(dest.parent) == []


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("DDPM_STUDIO_DATA", str(tmp_path / "d"))
    assert data.default_data_dir() == tmp_path / "d"
    monkeypatch.delenv("DDPM_STUDIO_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.default_data_dir() == tmp_path / "xdg" / "ddpm-studio" / "datasets"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert data.default_data_dir() == Path.home() / ".cache" / "ddpm-studio" / "datasets"


def test_torchvision_sources_are_used():
    spec = data.remote_dataset("mnist")
    names = [f.filename for f in spec.files]
    assert names == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    assert all(len(f.md5) == 32 and f.urls and f.urls[0].endswith(f.filename) for f in spec.files)
    assert len(spec.class_names) == 10
    cifar = data.remote_dataset("cifar10")
    assert cifar.files[0].filename.endswith(".tar.gz") and len(cifar.files[0].md5) == 32


# ---------------------------------------------------------------------------------------
# CIFAR-10 and the restricted unpickler
# ---------------------------------------------------------------------------------------


def _cifar_tar(path: Path, per_batch: int = 3, evil_batch: bytes | None = None):
    rng = np.random.default_rng(1)
    all_images, all_labels = [], []
    with tarfile.open(path, "w:gz") as tar:

        def add(name, blob):
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))

        for i in range(1, 6):
            imgs = rng.integers(0, 256, size=(per_batch, 3, 32, 32), dtype=np.uint8)
            labels = [int(x) for x in rng.integers(0, 10, size=per_batch)]
            all_images.append(imgs)
            all_labels += labels
            # Protocol 2, as the real (Python 2) files use.
            batch = {"batch_label": f"training batch {i} of 5", "labels": labels,
                     "data": imgs.reshape(per_batch, -1), "filenames": [f"{j}.png" for j in range(per_batch)]}
            blob = evil_batch if (evil_batch is not None and i == 1) else pickle.dumps(batch, protocol=2)
            add(f"data_batch_{i}", blob)
        add("batches.meta", pickle.dumps({"label_names": [f"c{k}" for k in range(10)], "num_vis": 3072}, protocol=2))
    return np.concatenate(all_images), np.array(all_labels)


def test_cifar_download_and_parse(tmp_path, monkeypatch):
    src = tmp_path / "cifar-10-python.tar.gz"
    images, labels = _cifar_tar(src)
    spec = data.RemoteDataset("cifar10", "CIFAR-10", (data.RemoteFile(src.name, _md5(src), (src.as_uri(),)),))
    monkeypatch.setitem(data.SOURCE_OVERRIDES, "cifar10", spec)
    cache = tmp_path / "cache"
    assert data.needs_download(DataConfig(dataset="cifar10", channels=3), cache)
    s = data.load_dataset(DataConfig(dataset="cifar10", image_size=32, channels=3), data_dir=cache)
    assert torch.equal(s.images, torch.from_numpy(images)) and s.labels.tolist() == labels.tolist()
    assert s.class_names == [f"c{k}" for k in range(10)]
    grey = data.load_dataset(DataConfig(dataset="cifar10", image_size=16, channels=1, limit=4), data_dir=cache)
    assert grey.images.shape == (4, 1, 16, 16) and grey.images.dtype == torch.uint8


def test_restricted_unpickler_refuses_code(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    payload = pickle.dumps({"data": Evil()}, protocol=2)
    assert b"system" in payload
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        data.restricted_load(io.BytesIO(payload))
    # Builtins that could run code are refused too.
    with pytest.raises(pickle.UnpicklingError):
        data.restricted_load(io.BytesIO(pickle.dumps(eval, protocol=2)))
    # ...and inside a CIFAR archive it becomes a one-line DataError.
    src = tmp_path / "evil.tar.gz"
    _cifar_tar(src, evil_batch=payload)
    with pytest.raises(DataError, match="cannot read CIFAR-10"):
        data.read_cifar10(src)
    assert not marker.exists()
    # A valid batch still loads.
    ok = data.restricted_load(io.BytesIO(pickle.dumps({"data": np.arange(6, dtype=np.uint8)}, protocol=2)))
    assert ok["data"].tolist() == list(range(6))
