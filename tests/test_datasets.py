"""Users' data: .npy arrays, CIFAR-10 python batches, image folders (small files written here)."""

from __future__ import annotations

import importlib.util
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from emulator.datasets import (
    CIFAR10_CLASSES,
    check_inputs,
    check_labels,
    load_cifar10,
    load_cifar10_batch,
    load_image_folder,
    load_npy,
)
from learning.errors import HalutError

HAVE_PIL = importlib.util.find_spec("PIL") is not None


def _raises_one_line(needle: str, fn: object, *args: object, **kwargs: object) -> str:
    with pytest.raises(HalutError) as exc:
        fn(*args, **kwargs)  # type: ignore[operator]
    msg = str(exc.value)
    assert "\n" not in msg and needle in msg, msg
    return msg


# ---- .npy ------------------------------------------------------------------------------------

def _save(path: Path, arr: np.ndarray) -> Path:
    np.save(path, arr)
    return path


def test_npy_inputs_and_labels_load_as_float32_and_int64(tmp_path: Path) -> None:
    X = np.random.default_rng(0).standard_normal((5, 1, 4, 4))
    xp = _save(tmp_path / "X.npy", X)  # float64 is accepted and rounded once
    yp = _save(tmp_path / "y.npy", np.array([0, 3, 2, 1, 3], dtype=np.int32))
    Xl, yl = load_npy(xp, yp, num_classes=4, sample_shape=(1, 4, 4))
    assert Xl.dtype == np.float32 and Xl.flags.c_contiguous and Xl.shape == (5, 1, 4, 4)
    np.testing.assert_array_equal(Xl, X.astype(np.float32))
    assert yl is not None and yl.dtype == np.int64 and yl.tolist() == [0, 3, 2, 1, 3]
    X2, y2 = load_npy(xp)
    assert y2 is None and X2.shape == X.shape


@pytest.mark.parametrize(("x", "y", "kwargs", "needle"), [
    (np.zeros((4, 3), np.float32), np.zeros(5, np.int64), {}, "holds 5 labels for 4 samples"),
    (np.zeros((4, 3), np.float32), np.array([0, 1, 2, 3]), {"num_classes": 3},
     "holds label 3 at sample 3, outside [0, 3) for 3 classes"),
    (np.zeros((4, 3), np.float32), np.array([0, -1, 0, 0]), {}, "negative label -1 at sample 1"),
    (np.zeros((4, 3), np.float32), np.zeros(4, np.float32), {},
     "must hold integer class labels, got dtype float32"),
    (np.zeros((4, 3), np.float32), np.zeros((4, 1), np.int64), {},
     "must be a vector (N,) of labels, got shape (4, 1)"),
    (np.zeros((4, 3), np.uint8), np.zeros(4, np.int64), {},
     "must hold float32 inputs, got dtype uint8"),
    (np.zeros(4, np.float32), np.zeros(4, np.int64), {}, "at least 2 dims, got shape (4,)"),
    (np.zeros((0, 3), np.float32), np.zeros(0, np.int64), {}, "holds no samples"),
    (np.array([[0.0, 1.0], [np.nan, 0.0]], np.float32), np.zeros(2, np.int64), {},
     "holds NaN at sample 1 (index (1, 0))"),
    (np.array([[0.0, -np.inf]], np.float32), np.zeros(1, np.int64), {},
     "holds inf at sample 0 (index (0, 1))"),
    (np.array([[0.0, 1e300]]), np.zeros(1, np.int64), {},
     "holds a value beyond the float32 range at sample 0"),
    (np.zeros((2, 3, 4), np.float32), np.zeros(2, np.int64), {"sample_shape": (3, 5)},
     "holds samples of shape (3, 4), the model takes (3, 5)"),
])
def test_bad_npy_files_are_one_line_each(tmp_path: Path, x: np.ndarray, y: np.ndarray,
                                         kwargs: dict, needle: str) -> None:
    xp, yp = _save(tmp_path / "X.npy", x), _save(tmp_path / "y.npy", y)
    msg = _raises_one_line(needle, load_npy, xp, yp, **kwargs)
    assert "X.npy" in msg or "y.npy" in msg


def test_unreadable_npy_files_are_one_line(tmp_path: Path) -> None:
    _raises_one_line("no such file", load_npy, tmp_path / "absent.npy")
    (tmp_path / "junk.npy").write_bytes(b"\x93NUMPY garbage")
    _raises_one_line("is not a readable .npy file", load_npy, tmp_path / "junk.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    _raises_one_line("holds Python objects", load_npy, tmp_path / "obj.npy")
    np.savez(tmp_path / "arch.npz", x=np.zeros(3))
    _raises_one_line("is an .npz archive", load_npy, tmp_path / "arch.npz")


def test_in_memory_checks_share_the_rules() -> None:
    assert check_inputs(np.ones((2, 2), np.float16)).dtype == np.float32
    assert check_labels(np.array([1, 2], np.uint8), num_classes=3).dtype == np.int64
    _raises_one_line("num_classes must be a positive int", check_labels, np.array([0]),
                     num_classes=0)
    _raises_one_line("got dtype bool", check_labels, np.array([True, False]))


# ---- CIFAR-10 --------------------------------------------------------------------------------

def _cifar_batch(path: Path, n: int, seed: int, protocol: int = 2, **override: object
                 ) -> tuple[np.ndarray, np.ndarray]:
    """A batch in the cifar-10-batches-py format (bytes keys, as Python 2 wrote them)."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n).tolist()
    batch = {b"batch_label": b"training batch 1 of 5", b"labels": labels, b"data": data,
             b"filenames": [f"img_{i}.png".encode() for i in range(n)]}
    batch.update({k.encode(): v for k, v in override.items()})
    with open(path, "wb") as fh:
        pickle.dump(batch, fh, protocol=protocol)
    return data, np.asarray(labels)


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_a_cifar10_batch_loads_as_nchw_float_in_unit_range(tmp_path: Path,
                                                           protocol: int) -> None:
    data, labels = _cifar_batch(tmp_path / "data_batch_1", 3, seed=0, protocol=protocol)
    X, y = load_cifar10_batch(tmp_path / "data_batch_1")
    assert X.shape == (3, 3, 32, 32) and X.dtype == np.float32 and y.dtype == np.int64
    assert X.min() >= 0.0 and X.max() <= 1.0
    np.testing.assert_array_equal(y, labels)
    # channel planes: the first 1024 bytes are red, row-major
    assert X[1, 0, 0, 1] == np.float32(data[1, 1]) / np.float32(255.0)
    assert X[2, 2, 31, 31] == np.float32(data[2, 3071]) / np.float32(255.0)


def test_the_cifar10_folder_joins_the_train_batches_and_reads_the_test_batch(
        tmp_path: Path) -> None:
    _, l1 = _cifar_batch(tmp_path / "data_batch_1", 2, seed=1)
    _, l2 = _cifar_batch(tmp_path / "data_batch_2", 3, seed=2)
    _, lt = _cifar_batch(tmp_path / "test_batch", 4, seed=3)
    X, y = load_cifar10(tmp_path, "train")
    assert X.shape == (5, 3, 32, 32) and y.tolist() == l1.tolist() + l2.tolist()
    X, y = load_cifar10(tmp_path, "test")
    assert X.shape[0] == 4 and y.tolist() == lt.tolist()
    assert len(CIFAR10_CLASSES) == 10
    _raises_one_line("split must be 'train' or 'test'", load_cifar10, tmp_path, "val")
    (tmp_path / "empty").mkdir()
    _raises_one_line("has no data_batch_1..5", load_cifar10, tmp_path / "empty")
    _raises_one_line("test_batch: no such file", load_cifar10, tmp_path / "empty", "test")


def _py2_string(b: bytes) -> bytes:
    """A Python 2 ``str`` as cPickle wrote it (SHORT_BINSTRING / BINSTRING)."""
    return b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b


def _py2_batch(data: np.ndarray, labels: list[int]) -> bytes:
    """The bytes of a batch as the CIFAR-10 authors' Python 2 cPickle (protocol 2) wrote it:
    ``numpy.core.multiarray._reconstruct``, a dtype built from ``'u1'`` and str data."""
    n = data.shape[0]
    return (b"\x80\x02}q\x00(" + _py2_string(b"data")
            + b"cnumpy.core.multiarray\n_reconstruct\nq\x01cnumpy\nndarray\nq\x02K\x00\x85"
            + _py2_string(b"b") + b"\x87Rq\x03(K\x01K" + bytes([n]) + b"M\x00\x0c\x86"
            + b"cnumpy\ndtype\nq\x04" + _py2_string(b"u1") + b"K\x00K\x01\x87Rq\x05(K\x03"
            + _py2_string(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89"
            + _py2_string(data.tobytes()) + b"tb" + _py2_string(b"labels") + b"]q\x06("
            + b"".join(b"K" + bytes([v]) for v in labels) + b"eu.")


def test_a_batch_written_by_python2_cpickle_loads(tmp_path: Path) -> None:
    data = np.random.default_rng(4).integers(0, 256, size=(2, 3072), dtype=np.uint8)
    (tmp_path / "data_batch_1").write_bytes(_py2_batch(data, [3, 9]))
    X, y = load_cifar10_batch(tmp_path / "data_batch_1")
    assert y.tolist() == [3, 9]
    np.testing.assert_array_equal(X, data.reshape(2, 3, 32, 32).astype(np.float32) / 255)


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str, ...]]:
        return (os.system, ("touch pwned",))


def test_a_pickle_with_other_globals_is_refused_before_anything_runs(tmp_path: Path) -> None:
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": _Evil(), b"labels": [0]}, protocol=2))
    msg = _raises_one_line("is not a CIFAR-10 python batch", load_cifar10_batch, path)
    assert "references posix.system" in msg or "references os.system" in msg
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


@pytest.mark.parametrize(("override", "needle"), [
    ({"labels": [0, 1, 10]}, "holds label 10 at sample 2, outside [0, 10)"),
    ({"labels": [0, 1]}, "holds 2 labels for 3 samples"),
    ({"data": np.zeros((3, 1024), np.uint8)}, "'data' must be (N, 3072) uint8, got (3, 1024)"),
    ({"data": np.zeros((3, 3072), np.float32)}, "got (3, 3072) float32"),
    ({"data": [1, 2]}, "no 'data' array"),
])
def test_bad_cifar10_batches_are_one_line(tmp_path: Path, override: dict, needle: str) -> None:
    _cifar_batch(tmp_path / "b", 3, seed=0, **override)
    _raises_one_line(needle, load_cifar10_batch, tmp_path / "b")


def test_other_files_are_not_cifar10_batches(tmp_path: Path) -> None:
    (tmp_path / "text").write_text("hello")
    _raises_one_line("is not a CIFAR-10 python batch (UnpicklingError", load_cifar10_batch,
                     tmp_path / "text")
    (tmp_path / "list").write_bytes(pickle.dumps([1, 2], protocol=2))
    _raises_one_line("it holds a list, not a dict", load_cifar10_batch, tmp_path / "list")
    (tmp_path / "c100").write_bytes(pickle.dumps({b"data": np.zeros((1, 3072), np.uint8),
                                                  b"fine_labels": [3]}, protocol=2))
    _raises_one_line("no 'labels' entry (a CIFAR-100 batch?)", load_cifar10_batch,
                     tmp_path / "c100")
    _raises_one_line("no such file", load_cifar10_batch, tmp_path / "absent")


# ---- image folders ---------------------------------------------------------------------------

def _write_images(root: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls, names in (("dog", ["b.png", "a.jpg"]), ("cat", ["x.PNG"])):
        (root / cls).mkdir(parents=True)
        for name in names:
            arr = rng.integers(0, 256, size=(6, 10, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / cls / name)
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()


@pytest.mark.skipif(not HAVE_PIL, reason="Pillow is not installed")
def test_an_image_folder_loads_sorted_classes_resized(tmp_path: Path) -> None:
    _write_images(tmp_path)
    X, y, classes = load_image_folder(tmp_path, (4, 5))
    assert classes == ("cat", "dog") and y.tolist() == [0, 1, 1]
    assert X.shape == (3, 3, 4, 5) and X.dtype == np.float32
    assert X.min() >= 0.0 and X.max() <= 1.0
    Xg, yg, _ = load_image_folder(tmp_path, 8, color="gray")
    assert Xg.shape == (3, 1, 8, 8) and yg.tolist() == [0, 1, 1]
    # the dog images in file-name order: a.jpg before b.png (both resized from 6x10)
    from PIL import Image

    with Image.open(tmp_path / "dog" / "b.png") as img:
        ref = np.asarray(img.convert("L").resize((8, 8), Image.BILINEAR), np.float32) / 255
    np.testing.assert_array_equal(Xg[2, 0], ref)


@pytest.mark.skipif(not HAVE_PIL, reason="Pillow is not installed")
def test_bad_image_folders_are_one_line(tmp_path: Path) -> None:
    _raises_one_line("no such folder", load_image_folder, tmp_path / "absent", 4)
    _raises_one_line("has no class sub-folders", load_image_folder, tmp_path, 4)
    (tmp_path / "empty_class").mkdir()
    _raises_one_line("class 'empty_class' has no .png/.jpg/.jpeg files", load_image_folder,
                     tmp_path, 4)
    (tmp_path / "empty_class" / "broken.png").write_bytes(b"not a png")
    _raises_one_line("cannot read image", load_image_folder, tmp_path, 4)
    _raises_one_line("color must be 'rgb' or 'gray'", load_image_folder, tmp_path, 4, "bgr")
    _raises_one_line("image size must be positive ints", load_image_folder, tmp_path, (0, 4))


def test_a_missing_pillow_is_named_in_one_line(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_pil(name: str, *args: object, **kwargs: object) -> object:
        if name == "PIL" or name.startswith("PIL."):
            raise ImportError("No module named 'PIL'")
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    (tmp_path / "cls").mkdir()
    monkeypatch.setattr(builtins, "__import__", no_pil)
    _raises_one_line("needs Pillow, which is not installed (pip install pillow)",
                     load_image_folder, tmp_path, 4)
