"""Classical codecs behind one small interface, for baselines measured on the same images.

Each adapter is a :class:`Codec`: a stable ``name`` (what ``lic eval --codecs`` takes), a list of
``settings`` chosen to span roughly 0.1-1.5 bpp on Kodak, ``encode(image, setting) -> bytes``,
``decode(bytes) -> image``, ``version()`` and the ``threads`` it was told to use. Every encoder
writes its whole, ordinary file (container included: JFIF, RIFF, JP2 codestream, HEIF, JXL
codestream, raw HEVC Annex B); the file's length is what the rate counts.

A codec whose library is missing is not an error: :func:`make_codecs` returns it among the
skipped ones with a note saying why, and the report prints that note.

Threads: every adapter honours ``threads`` where its library lets us choose (AVIF, JPEG XL, HEVC);
libjpeg-turbo, libwebp (as Pillow drives it) and OpenJPEG (as Pillow drives it) always run on one
thread, and say so.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import io
import re
import shutil
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import PIL
from PIL import Image, features


class CodecUnavailable(RuntimeError):
    """The library or program a codec needs is not installed (the message says what)."""


class Codec(ABC):
    """One codec at several settings. Subclasses fill in the class attributes and methods."""

    #: Stable id used on the command line and as the results file name (``jpeg-420.json``).
    name: str = ""
    #: Legend text.
    label: str = ""
    #: ``"classical"`` or ``"learned"`` (plots draw learned codecs more prominently).
    kind: str = "classical"
    #: What a setting means, for the report ("quality", "compression ratio", "QP", ...).
    setting_name: str = "quality"
    #: Settings in the order they are run (usually from low to high rate).
    settings: Sequence[float] = ()
    #: ``lic eval --high``: settings spanning roughly 1.5-5 bpp (37-48 dB) on Kodak, from the
    #: top of ``settings`` up (session 29, docs/residual.md)
    high_settings: Sequence[float] = ()

    def __init__(self, threads: int = 1) -> None:
        self.threads = max(1, int(threads))

    @abstractmethod
    def encode(self, image: Image.Image, setting: float) -> bytes:
        """Encode an 8-bit RGB image at ``setting`` into the codec's file bytes."""

    @abstractmethod
    def decode(self, data: bytes) -> Image.Image:
        """Decode file bytes into a fully loaded 8-bit RGB image."""

    @abstractmethod
    def version(self) -> str:
        """Versions of the libraries that did the work."""

    @abstractmethod
    def describe(self) -> str:
        """The exact encoder options used (everything but the setting)."""

    @property
    def threads_used(self) -> int:
        """Threads the codec actually runs on (1 for libraries that cannot be told otherwise)."""
        return self.threads

    def meta(self) -> dict[str, Any]:
        """What the results file records about how this codec was run."""
        return {"codec": self.name, "kind": self.kind, "version": self.version(),
                "options": self.describe(), "setting_name": self.setting_name,
                "settings": list(self.settings), "threads": self.threads_used}


def _pillow_save(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **options)
    return buf.getvalue()


def _pillow_open(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return im.convert("RGB") if im.mode != "RGB" else im.copy()


@contextlib.contextmanager
def _module_attr(module: Any, attr: str, value: Any) -> Iterator[None]:
    """Temporarily set a plugin's module-level knob (decoder thread counts live there)."""
    old = getattr(module, attr)
    setattr(module, attr, value)
    try:
        yield
    finally:
        setattr(module, attr, old)


def _require_pillow_feature(kind: str, name: str) -> None:
    ok = features.check_codec(name) if kind == "codec" else features.check_module(name)
    if not ok:
        raise CodecUnavailable(f"this Pillow ({PIL.__version__}) was built without {name}")


# ---- JPEG ----------------------------------------------------------------------------------------

class JpegCodec(Codec):
    """JPEG (libjpeg-turbo via Pillow): baseline, optimized Huffman tables, one chroma subsampling."""

    setting_name = "quality"
    settings = (3, 5, 8, 12, 18, 25, 35, 50, 65, 75)
    high_settings = (85, 90, 94, 97)

    def __init__(self, threads: int = 1, subsampling: str = "4:2:0") -> None:
        super().__init__(threads)
        _require_pillow_feature("codec", "jpg")
        if subsampling not in ("4:2:0", "4:4:4"):
            raise ValueError(f"unsupported subsampling {subsampling!r}")
        self.subsampling = subsampling
        self.name = "jpeg-" + subsampling.replace(":", "")[:3]
        self.label = f"JPEG {subsampling}"

    def encode(self, image: Image.Image, setting: float) -> bytes:
        return _pillow_save(image, "JPEG", quality=int(setting), optimize=True, progressive=False,
                            subsampling=self.subsampling)

    def decode(self, data: bytes) -> Image.Image:
        return _pillow_open(data)

    def version(self) -> str:
        turbo = features.version_feature("libjpeg_turbo")
        lib = f"libjpeg-turbo {turbo}" if turbo else f"libjpeg {features.version_codec('jpg')}"
        return f"Pillow {PIL.__version__}, {lib}"

    def describe(self) -> str:
        return (f"Pillow save(format='JPEG', quality=Q, subsampling='{self.subsampling}', "
                "optimize=True, progressive=False); libjpeg-turbo defaults otherwise "
                "(islow DCT, standard quant tables scaled by Q)")

    @property
    def threads_used(self) -> int:
        return 1  # libjpeg-turbo has no threading


# ---- WebP ----------------------------------------------------------------------------------------

class WebpCodec(Codec):
    """Lossy WebP (libwebp via Pillow) at method 6, its slowest and best."""

    name = "webp"
    label = "WebP"
    setting_name = "quality"
    settings = (0, 5, 15, 30, 45, 60, 70, 78, 85)
    high_settings = (85, 90, 95, 98)

    def __init__(self, threads: int = 1) -> None:
        super().__init__(threads)
        _require_pillow_feature("module", "webp")

    def encode(self, image: Image.Image, setting: float) -> bytes:
        return _pillow_save(image, "WEBP", quality=int(setting), method=6, lossless=False, exact=False)

    def decode(self, data: bytes) -> Image.Image:
        return _pillow_open(data)

    def version(self) -> str:
        return f"Pillow {PIL.__version__}, libwebp {features.version_module('webp')}"

    def describe(self) -> str:
        return ("Pillow save(format='WEBP', quality=Q, method=6, lossless=False); libwebp defaults "
                "otherwise (4:2:0, no sharp YUV, default filter and segments)")

    @property
    def threads_used(self) -> int:
        return 1  # Pillow does not turn on libwebp's thread_level


# ---- JPEG 2000 -----------------------------------------------------------------------------------

class Jpeg2000Codec(Codec):
    """JPEG 2000 (OpenJPEG via Pillow): 9/7 irreversible wavelet with the RGB->YCbCr transform.

    A setting is a compression ratio (raw 24-bit RGB size / file size), so ``24 / ratio`` is the
    target bpp; OpenJPEG's rate control lands close to it.
    """

    name = "jpeg2000"
    label = "JPEG 2000"
    setting_name = "compression ratio"
    settings = (240, 160, 120, 80, 60, 40, 30, 24, 16)
    high_settings = (16, 12, 9, 7, 5.5)

    def __init__(self, threads: int = 1) -> None:
        super().__init__(threads)
        _require_pillow_feature("codec", "jpg_2000")

    def encode(self, image: Image.Image, setting: float) -> bytes:
        return _pillow_save(image, "JPEG2000", irreversible=True, mct=1, quality_mode="rates",
                            quality_layers=[float(setting)], no_jp2=True)

    def decode(self, data: bytes) -> Image.Image:
        return _pillow_open(data)

    def version(self) -> str:
        return f"Pillow {PIL.__version__}, OpenJPEG {features.version_codec('jpg_2000')}"

    def describe(self) -> str:
        return ("Pillow save(format='JPEG2000', irreversible=True, mct=1, quality_mode='rates', "
                "quality_layers=[ratio], no_jp2=True): raw J2K codestream, one quality layer, "
                "OpenJPEG defaults otherwise (6 resolutions, 64x64 code blocks, LRCP)")

    @property
    def threads_used(self) -> int:
        return 1  # Pillow's OpenJPEG glue does not call opj_codec_set_threads


# ---- AVIF ----------------------------------------------------------------------------------------

class AvifCodec(Codec):
    """AVIF (libavif via Pillow >= 11.2's built-in plugin) with the AV1 encoder it was built with."""

    setting_name = "quality"
    settings = (5, 12, 20, 28, 36, 45, 55, 65, 75)
    high_settings = (75, 80, 85, 90, 94)
    #: libavif's speed 0 (slowest) .. 10; 6 is Pillow's and avifenc's default.
    DEFAULT_SPEED = 6

    def __init__(self, threads: int = 1, subsampling: str = "4:2:0", speed: int = DEFAULT_SPEED) -> None:
        super().__init__(threads)
        _require_pillow_feature("module", "avif")
        from PIL import _avif

        if not any(_avif.encoder_codec_available(c) for c in ("aom", "rav1e", "svt")):
            raise CodecUnavailable("Pillow's libavif has no AV1 encoder")
        if subsampling not in ("4:2:0", "4:4:4"):
            raise ValueError(f"unsupported subsampling {subsampling!r}")
        self.subsampling = subsampling
        self.speed = speed
        default = speed == self.DEFAULT_SPEED
        self.name = "avif-" + subsampling.replace(":", "")[:3] + ("" if default else f"-s{speed}")
        self.label = f"AVIF {subsampling}" + ("" if default else f", speed {speed}")

    def encode(self, image: Image.Image, setting: float) -> bytes:
        return _pillow_save(image, "AVIF", quality=int(setting), speed=self.speed,
                            subsampling=self.subsampling, max_threads=self.threads, range="full")

    def decode(self, data: bytes) -> Image.Image:
        from PIL import AvifImagePlugin

        with _module_attr(AvifImagePlugin, "DEFAULT_MAX_THREADS", self.threads):
            return _pillow_open(data)

    def version(self) -> str:
        from PIL import _avif

        return (f"Pillow {PIL.__version__}, libavif {features.version_module('avif')} "
                f"({_avif.codec_versions()})")

    def describe(self) -> str:
        return (f"Pillow save(format='AVIF', quality=Q, speed={self.speed}, "
                f"subsampling='{self.subsampling}', range='full', max_threads={self.threads}); "
                "codec='auto' (aom), libavif defaults otherwise (BT.601 YUV matrix, 8-bit, "
                "libavif's default aom tune, autotiling)")


# ---- JPEG XL -------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _libjxl_version() -> str:
    """The libjxl that pillow-jxl-plugin bundles (its Rust binding names it in the binary)."""
    import pillow_jxl

    for lib in sorted(Path(pillow_jxl.__file__).parent.glob("*.so")) + sorted(
            Path(pillow_jxl.__file__).parent.glob("*.pyd")):
        m = re.search(rb"libjxl-(\d+\.\d+(?:\.\d+)?)", lib.read_bytes())
        if m:
            return m.group(1).decode()
    return "unknown"


class JxlCodec(Codec):
    """JPEG XL (libjxl via pillow-jxl-plugin), lossy VarDCT at effort 7 (libjxl's default)."""

    name = "jxl"
    label = "JPEG XL"
    setting_name = "quality"
    settings = (0, 10, 25, 40, 55, 65, 75, 82, 88)
    high_settings = (88, 92, 95, 97)
    effort = 7

    def __init__(self, threads: int = 1) -> None:
        super().__init__(threads)
        try:
            importlib.import_module("pillow_jxl")  # registers the JXL format with Pillow
        except ImportError as e:
            raise CodecUnavailable("pillow-jxl-plugin is not installed "
                                   "(pip install 'liccodec[eval]' or pip install pillow-jxl-plugin)") from e

    def _lib_threads(self) -> int:
        return 0 if self.threads == 1 else self.threads  # the plugin's 0 means "no thread pool"

    def encode(self, image: Image.Image, setting: float) -> bytes:
        return _pillow_save(image, "JXL", quality=float(setting), effort=self.effort, lossless=False,
                            decoding_speed=0, use_container=False, num_threads=self._lib_threads())

    def decode(self, data: bytes) -> Image.Image:
        from pillow_jxl import JpegXLImagePlugin

        with _module_attr(JpegXLImagePlugin, "DECODE_THREADS", self._lib_threads()):
            return _pillow_open(data)

    def version(self) -> str:
        plugin = importlib.metadata.version("pillow-jxl-plugin")
        return f"pillow-jxl-plugin {plugin}, libjxl {_libjxl_version()}"

    def describe(self) -> str:
        return (f"pillow-jxl-plugin save(format='JXL', quality=Q, effort={self.effort}, "
                "lossless=False, decoding_speed=0, use_container=False): bare codestream, "
                "libjxl maps quality to a Butteraugli distance")


# ---- HEVC intra (what BPG uses) ------------------------------------------------------------------

def _ffmpeg_candidates() -> list[str]:
    """ffmpeg on PATH first, then the static build the imageio-ffmpeg wheel ships, if installed."""
    found = [exe] if (exe := shutil.which("ffmpeg")) else []
    try:
        import imageio_ffmpeg

        found.append(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError, OSError):
        pass
    return found


@lru_cache(maxsize=1)
def _ffmpeg_with_x265() -> str | None:
    """The first ffmpeg that has the libx265 encoder, or None."""
    for exe in _ffmpeg_candidates():
        try:
            out = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, text=True,
                                 timeout=30, check=True).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        if "libx265" in out:
            return exe
    return None


class HevcCodec(Codec):
    """HEVC intra (x265 through ffmpeg) on full-range BT.601 YCbCr 4:4:4, as BPG codes images.

    The bitstream is raw Annex B with x265's informational SEI turned off, so the rate counts
    only what a decoder needs (BPG's own header is a few bytes smaller still). ``-tune psnr``
    turns off x265's psycho-visual tools, which cost about 11% BD-rate in PSNR on Kodak. Encoding and
    decoding each start an ffmpeg process and decoding goes through ffmpeg's PNG output, so the
    times include that overhead and are pessimistic.
    """

    name = "hevc-444"
    label = "HEVC 4:4:4 (x265)"
    setting_name = "QP"
    settings = (48, 45, 42, 39, 36, 33, 30, 27)
    preset = "slow"
    #: swscale's default flags trade accuracy for speed; these keep the RGB/YCbCr round trip
    #: near the 8-bit limit (about 49 dB instead of 48 dB at QP 0 on Kodak).
    sws = "accurate_rnd+full_chroma_int"

    def __init__(self, threads: int = 1) -> None:
        super().__init__(threads)
        exe = _ffmpeg_with_x265()
        if exe is None:
            raise CodecUnavailable("no ffmpeg with libx265 (neither on PATH nor from imageio-ffmpeg)")
        self.ffmpeg = exe

    def _run(self, args: list[str], data: bytes) -> bytes:
        proc = subprocess.run([self.ffmpeg, "-hide_banner", "-loglevel", "error", *args],
                              input=data, capture_output=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"ffmpeg failed: {proc.stderr.decode(errors='replace').strip()}")
        return proc.stdout

    def encode(self, image: Image.Image, setting: float) -> bytes:
        w, h = image.size
        x265 = f"qp={int(setting)}:info=0:log-level=error:pools={self.threads}:frame-threads=1"
        return self._run(["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-i", "-",
                          "-vf", f"scale=out_color_matrix=bt601:out_range=full:flags={self.sws}",
                          "-pix_fmt", "yuv444p", "-color_range", "pc", "-colorspace", "bt470bg",
                          "-c:v", "libx265", "-preset", self.preset, "-tune", "psnr",
                          "-x265-params", x265, "-frames:v", "1", "-f", "hevc", "-"],
                         image.convert("RGB").tobytes())

    def decode(self, data: bytes) -> Image.Image:
        png = self._run(["-threads", str(self.threads), "-f", "hevc", "-i", "-",
                         "-vf", f"scale=in_color_matrix=bt601:in_range=full:flags={self.sws}",
                         "-pix_fmt", "rgb24", "-frames:v", "1", "-f", "image2pipe", "-c:v", "png", "-"],
                        data)
        return _pillow_open(png)

    def version(self) -> str:
        first = self._run(["-version"], b"").decode(errors="replace").splitlines()[0]
        return first.replace("ffmpeg version ", "ffmpeg ").split(" Copyright")[0] + " (libx265)"

    def describe(self) -> str:
        return (f"ffmpeg rgb24 -> yuv444p (BT.601, full range, sws {self.sws}) -> libx265 "
                f"-preset {self.preset} -tune psnr -x265-params qp=QP:info=0, one intra frame, "
                "raw Annex B stream")


# ---- registry ------------------------------------------------------------------------------------

#: Every classical codec by its command-line name, in report order.
CLASSICAL: dict[str, Callable[[int], Codec]] = {
    "jpeg-420": lambda t: JpegCodec(t, "4:2:0"),
    "jpeg-444": lambda t: JpegCodec(t, "4:4:4"),
    "webp": WebpCodec,
    "jpeg2000": Jpeg2000Codec,
    "avif-420": lambda t: AvifCodec(t, "4:2:0"),
    "avif-444": lambda t: AvifCodec(t, "4:4:4"),
    "avif-444-s2": lambda t: AvifCodec(t, "4:4:4", speed=2),
    "jxl": JxlCodec,
    "hevc-444": HevcCodec,
}

#: Slow presets, for comparisons with slow encoders (lic encode --refine): run only when named, not in "all".
BY_NAME_ONLY: tuple[str, ...] = ("avif-444-s2",)

#: Short names that stand for several entries on the command line.
ALIASES: dict[str, tuple[str, ...]] = {
    "jpeg": ("jpeg-420", "jpeg-444"),
    "avif": ("avif-420", "avif-444"),
    "hevc": ("hevc-444",),
    "bpg": ("hevc-444",),
    "j2k": ("jpeg2000",),
    "jpegxl": ("jxl",),
    "all": tuple(n for n in CLASSICAL if n not in BY_NAME_ONLY),
}


def resolve_names(names: Sequence[str]) -> list[str]:
    """Expand aliases and check names; keeps the order given, without duplicates."""
    out: list[str] = []
    for raw in names:
        n = raw.strip().lower()
        if not n:
            continue
        expanded = ALIASES.get(n, (n,))
        for e in expanded:
            if e not in CLASSICAL:
                known = ", ".join([*CLASSICAL, *ALIASES])
                raise ValueError(f"unknown codec {raw!r} (known: {known})")
            if e not in out:
                out.append(e)
    return out


def make_codecs(names: Sequence[str], threads: int = 1) -> tuple[list[Codec], dict[str, str]]:
    """Build the named classical codecs; those that cannot run come back as ``{name: note}``."""
    codecs: list[Codec] = []
    skipped: dict[str, str] = {}
    for n in resolve_names(names):
        try:
            codecs.append(CLASSICAL[n](threads))
        except CodecUnavailable as e:
            skipped[n] = str(e)
    return codecs, skipped
