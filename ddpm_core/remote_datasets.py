"""The downloadable datasets: Fashion-MNIST, MNIST and CIFAR-10.

Where they come from (addresses and md5 sums from torchvision's dataset classes, so
they follow torchvision's mirror updates), where they are cached (`default_data_dir`),
fetching them with our own small downloader (`ddpm_core.download`), and reading their
files: MNIST-style idx files, and CIFAR-10's pickled batches through a restricted
unpickler that loads nothing but numpy arrays.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from .config import DataConfig
from .download import DownloadError, ProgressFn, download_file
from .errors import DataError
from .image_set import error_reason

# Human-readable titles, and rough download sizes (for the GUI's "will download" warning).
REMOTE_TITLES = {"fashion_mnist": "Fashion-MNIST", "mnist": "MNIST", "cifar10": "CIFAR-10"}
DOWNLOAD_SIZE_MB = {"fashion_mnist": 26, "mnist": 10, "cifar10": 163}
# (channels, size) the images come in: what a person choosing the dataset expects to train on.
NATIVE_SHAPE = {"fashion_mnist": (1, 28), "mnist": (1, 28), "cifar10": (3, 32)}


# ------------------------------------------------------------------------------------
# Where they come from, where they go
# ------------------------------------------------------------------------------------


def default_data_dir() -> Path:
    """$DDPM_STUDIO_DATA, else $XDG_CACHE_HOME/ddpm-studio/datasets, else ~/.cache/..."""
    explicit = os.environ.get("DDPM_STUDIO_DATA")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says to ignore relative paths; empty counts as unset.
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "ddpm-studio" / "datasets"
    return Path.home() / ".cache" / "ddpm-studio" / "datasets"


@dataclass(frozen=True)
class RemoteFile:
    filename: str
    md5: Optional[str]
    urls: tuple[str, ...]  # mirrors, tried in order


@dataclass(frozen=True)
class RemoteDataset:
    key: str  # "fashion_mnist", also the cache subfolder name
    title: str  # "Fashion-MNIST"
    files: tuple[RemoteFile, ...]
    class_names: tuple[str, ...] = ()  # empty: read from the files (CIFAR-10)


# Tests (or a packager with a local mirror) put entries here; they win over torchvision.
SOURCE_OVERRIDES: dict[str, RemoteDataset] = {}


def remote_dataset(name: str) -> RemoteDataset:
    """Where to download dataset `name` from (addresses and md5 sums from torchvision)."""
    if name in SOURCE_OVERRIDES:
        return SOURCE_OVERRIDES[name]
    if name not in ("fashion_mnist", "mnist", "cifar10"):
        raise DataError(f"dataset {name!r} is not downloadable: choose fashion_mnist, mnist or cifar10")
    try:
        # Imported lazily: torchvision.datasets takes ~1.5 s to import and is only
        # needed for these three datasets.
        from torchvision.datasets import CIFAR10, MNIST, FashionMNIST
    except Exception as e:  # ImportError, or a broken install raising something else
        raise DataError(
            f"cannot look up where to download {REMOTE_TITLES[name]} (torchvision is missing: {e}): "
            "install torchvision, or use the built-in 'shapes' dataset"
        ) from None
    if name == "cifar10":
        return RemoteDataset(
            key=name,
            title=REMOTE_TITLES[name],
            files=(RemoteFile(CIFAR10.filename, CIFAR10.tgz_md5, (CIFAR10.url,)),),
        )
    klass = FashionMNIST if name == "fashion_mnist" else MNIST
    # Only the training split: that is all we train on.
    files = tuple(
        RemoteFile(fname, md5, tuple(mirror + fname for mirror in klass.mirrors))
        for fname, md5 in klass.resources
        if fname.startswith("train-")
    )
    return RemoteDataset(key=name, title=REMOTE_TITLES[name], files=files, class_names=tuple(klass.classes))


def dataset_folder(name: str, data_dir: Optional[Path] = None) -> Path:
    return Path(data_dir if data_dir is not None else default_data_dir()) / name


def needs_download(cfg: DataConfig, data_dir: Optional[Path] = None) -> bool:
    """True when loading `cfg` would first download files (the GUI warns first)."""
    if cfg.dataset not in ("fashion_mnist", "mnist", "cifar10"):
        return False
    folder = dataset_folder(cfg.dataset, data_dir)
    if not folder.is_dir():
        return True  # answered without importing torchvision (slow) for the file names
    if cfg.dataset == "cifar10" and cifar_extracted_dir(folder) is not None:
        return False
    spec = remote_dataset(cfg.dataset)
    return any(_local_copy(folder, f.filename) is None for f in spec.files)


def _local_copy(folder: Path, filename: str) -> Optional[Path]:
    """The file if present; for .gz files the un-gzipped copy also counts."""
    p = folder / filename
    if p.is_file():
        return p
    if filename.endswith(".gz") and (folder / filename[:-3]).is_file():
        return folder / filename[:-3]
    return None


def cifar_extracted_dir(folder: Path) -> Optional[Path]:
    """torchvision's extracted layout, for users who already have it."""
    d = folder / "cifar-10-batches-py"
    return d if (d / "data_batch_1").is_file() else None


def download_dataset(name: str, progress: Optional[ProgressFn] = None, data_dir: Optional[Path] = None) -> dict[str, Path]:
    """Make sure the files of dataset `name` are in its cache folder; return their paths."""
    spec = remote_dataset(name)
    folder = dataset_folder(name, data_dir)
    names = ", ".join(f.filename for f in spec.files)
    paths: dict[str, Path] = {}
    for i, f in enumerate(spec.files, 1):
        local = _local_copy(folder, f.filename)
        if local is not None:
            paths[f.filename] = local
            continue
        label = spec.title if len(spec.files) == 1 else f"{spec.title} ({i}/{len(spec.files)}: {f.filename})"
        try:
            paths[f.filename] = download_file(f.urls, folder / f.filename, f.md5, progress, label=label)
        except DownloadError as e:
            fix = f"put the file(s) {names} in {folder}, or use the built-in 'shapes' dataset"
            if not e.reasons:  # a local problem (folder not writable, disk full)
                raise DataError(f"{e}: set DDPM_STUDIO_DATA to a writable folder, or {fix}") from None
            if e.checksum_failed:
                raise DataError(
                    f"could not download {spec.title}: {f.filename} arrived damaged (wrong md5 checksum); "
                    f"try again later, or {fix}"
                ) from None
            raise DataError(f"could not download {spec.title} (no network? {e.reason}): {fix}") from None
    return paths


# ------------------------------------------------------------------------------------
# MNIST / Fashion-MNIST: idx files
# ------------------------------------------------------------------------------------


def read_idx(path: str | Path, ndim: Optional[int] = None) -> np.ndarray:
    """Read an idx file (optionally gzipped, detected by content) of unsigned bytes.

    Format: 2 zero bytes, a type byte (0x08 = uint8), a byte with the number of
    dimensions, each dimension as a big-endian uint32, then the data.
    """
    path = Path(path)
    fix = f"delete {path} so it is downloaded again, or use the built-in 'shapes' dataset"
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"cannot read {path} ({error_reason(e)}): {fix}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path} is not an idx file (bad header): {fix}")
    if raw[2] != 0x08:
        raise DataError(f"{path} holds idx type 0x{raw[2]:02x}, only unsigned bytes (0x08) are supported: {fix}")
    nd = raw[3]
    if ndim is not None and nd != ndim:
        raise DataError(f"{path} has {nd} dimensions where {ndim} were expected: {fix}")
    header = 4 + 4 * nd
    if len(raw) < header:
        raise DataError(f"{path} is truncated (header): {fix}")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(nd))
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    if len(raw) - header != count:
        raise DataError(f"{path} should hold {count} bytes of data for shape {shape} but holds {len(raw) - header}: {fix}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


# ------------------------------------------------------------------------------------
# CIFAR-10: pickled batches, read with a restricted unpickler
# ------------------------------------------------------------------------------------


def _safe_codecs_encode(text, encoding="utf-8", errors="strict"):
    # Python 3 pickles bytes (protocol < 3) as _codecs.encode(str, "latin1"); allow only
    # that use, not arbitrary codecs.
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError("refusing _codecs.encode with anything but latin1 text")
    return text.encode("latin1", errors)


def _allowed_globals() -> dict[tuple[str, str], object]:
    # Take the functions numpy's own pickles reference from numpy itself, so the table is
    # right for numpy 1.x (numpy.core) and 2.x (numpy._core) without importing either.
    reconstruct = np.zeros(1, dtype=np.uint8).__reduce__()[0]
    allowed: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _safe_codecs_encode,
    }
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = reconstruct
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays; refuses every other global.

    CIFAR-10 batches are pickles, and unpickling can call any importable function
    (`os.system` included). A batch only needs dicts, lists, strings, ints and numpy
    uint8 arrays, so only numpy's array reconstruction (`_reconstruct`, `ndarray`,
    `dtype`) and a latin1-only `_codecs.encode` (bytes in protocol-2 pickles written by
    Python 3) are resolvable; no builtins at all.
    """

    _ALLOWED = _allowed_globals()

    def find_class(self, module: str, name: str):
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: only numpy arrays are allowed in a dataset file"
            ) from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refusing persistent references in a dataset file")


def restricted_load(fileobj) -> object:
    """Unpickle a Python 2 era dataset pickle safely (see RestrictedUnpickler)."""
    # latin1: how Python 2 str data (numpy's raw bytes) must be decoded.
    return RestrictedUnpickler(fileobj, encoding="latin1").load()


def _decode_keys(d: object, what: str) -> dict:
    if not isinstance(d, dict):
        raise ValueError(f"{what} is not a dictionary")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in d.items()}


def _parse_cifar_batch(blob: bytes, what: str) -> tuple[np.ndarray, np.ndarray]:
    d = _decode_keys(restricted_load(io.BytesIO(blob)), what)
    data = d.get("data")
    labels = d.get("labels", d.get("fine_labels"))
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{what} has no (N, 3072) 'data' array")
    if labels is None or len(labels) != len(data):
        raise ValueError(f"{what} has no label per image")
    # Rows are 1024 red, 1024 green, 1024 blue values of a 32x32 image.
    images = np.ascontiguousarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32)
    return images, np.asarray(labels, dtype=np.int64)


def read_cifar10(source: str | Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Training images (N,3,32,32) uint8, labels (N,), class names from
    cifar-10-python.tar.gz (read in one streaming pass, nothing extracted) or from an
    extracted cifar-10-batches-py folder."""
    source = Path(source)
    fix = f"delete {source} so it is downloaded again, or use the built-in 'shapes' dataset"
    wanted = {f"data_batch_{i}" for i in range(1, 6)} | {"batches.meta"}
    blobs: dict[str, bytes] = {}
    try:
        if source.is_dir():
            for name in wanted:
                p = source / name
                if p.is_file():
                    blobs[name] = p.read_bytes()
        else:
            # Streaming mode ("r|gz"): one sequential pass; random access into a .gz
            # would decompress the archive again for every member.
            with tarfile.open(source, mode="r|gz") as tar:
                for member in tar:
                    base = member.name.rsplit("/", 1)[-1]
                    if member.isfile() and base in wanted:
                        f = tar.extractfile(member)
                        if f is not None:
                            blobs[base] = f.read()
        missing = sorted(wanted - blobs.keys() - {"batches.meta"})
        if missing:
            raise ValueError(f"it lacks {', '.join(missing)}")
        parts = [_parse_cifar_batch(blobs[f"data_batch_{i}"], f"data_batch_{i}") for i in range(1, 6)]
        names: list[str] = []
        if "batches.meta" in blobs:
            meta = _decode_keys(restricted_load(io.BytesIO(blobs["batches.meta"])), "batches.meta")
            names = [str(x) for x in meta.get("label_names", [])]
    except (OSError, EOFError, zlib.error, tarfile.TarError, pickle.UnpicklingError, ValueError,
            KeyError, TypeError, AttributeError, IndexError, MemoryError) as e:
        # (The unpickler's own errors for malformed data are among the last few.)
        raise DataError(f"cannot read CIFAR-10 from {source} ({error_reason(e)}): {fix}") from None
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    n_classes = int(labels.max()) + 1 if len(labels) else 0
    if len(names) < n_classes:
        names = names + [str(i) for i in range(len(names), n_classes)]
    return images, labels, names

