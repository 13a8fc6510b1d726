"""A Pillow plugin for .lic files: ``import liccodec.pillow`` registers the format "LIC".

Usage::

    import liccodec.pillow
    from PIL import Image
    im = Image.open("photo.lic")                  # reads the header only: size, mode, im.info
    im.load()                                     # decodes (liccodec.decode)
    im.save("copy.lic", model="msh.mse", quality=3.5)   # liccodec.encode; both optional

Both directions go through the public API (``liccodec.encode`` / ``liccodec.decode``), so
modes, limits and errors are those of ``lic encode`` / ``lic decode``:

* Modes: RGB, L, RGBA and LA are saved as such and reopen in the same mode (alpha
  losslessly); palette images are expanded (to RGBA when they have transparency); 16-bit
  greyscale reopens as ``I;16``; the rest becomes RGB (see ``liccodec.imageio``).
* Saving honours ``$LICCODEC_MAX_PIXELS`` as ``lic encode`` does for a file.
* ``im.info``: ``model``, ``quality``, ``weights_digest``, ``format_version``. ``model`` and
  ``quality`` are also the keywords of ``save``, so ``im.save(out, **im.info)`` codes with
  the same settings.
* Errors follow Pillow's convention with liccodec's text: a damaged, truncated or
  unsupported file, or one whose model is not installed, raises ``OSError`` (from
  ``Image.open`` when the header is bad, from ``load()`` otherwise); so does ``save`` with
  an unknown model or an unsupported image, and a quality outside the model's range is a
  ``ValueError``. The liccodec error
  (``FormatError``, ``ChecksumError``, ``ModelError`` ...) is the ``__cause__``.
  ``im.verify()`` checks the checksum without decoding.

Importing this module and ``Image.open`` load no model and import no torch; ``load()`` and
``save`` load the model.
"""
from __future__ import annotations

from typing import IO

from PIL import Image, ImageFile

import liccodec
from liccodec.container import MAGIC, Mode, read_header
from liccodec.errors import LicError, UsageError

FORMAT = "LIC"
MIME = "image/x-lic"
# Bytes read by Image.open: the largest valid header (32 streams with 64-byte names) is
# under 2.4 KB, and read_header(verify=False) needs the 4 bytes after it (crc or payload).
_HEADER_READ = 4096


def _pil_mode(mode: Mode, bit_depth: int) -> str:
    return "I;16" if bit_depth == 16 else mode.name


def _accept(prefix: bytes) -> bool:
    return prefix[:4] == MAGIC


class LicImageFile(ImageFile.ImageFile):
    format = FORMAT
    format_description = "liccodec learned image codec"

    def _open(self) -> None:
        assert self.fp is not None
        prefix = self.fp.read(_HEADER_READ)
        if not _accept(prefix):
            raise SyntaxError("not a LIC file")
        try:
            h = read_header(prefix, verify=False)
        except LicError as e:
            # ours by its magic, so no other plugin should try: OSError, as Pillow's own
            # plugins report an unsupported variant of their format
            raise OSError(str(e)) from e
        self._size = (h.width, h.height)
        self._mode = _pil_mode(h.mode, h.bit_depth)
        self.info.update(model=h.model_id, quality=h.quality / 1000, weights_digest=h.digest.hex(),
                         format_version=f"{h.major}.{h.minor}")
        self.tile = [("lic", (0, 0) + self.size, 0, None)]

    def verify(self) -> None:
        """Check the header and the checksum (damage, truncation) without decoding."""
        assert self.fp is not None
        self.fp.seek(0)
        try:
            read_header(self.fp.read())
        except LicError as e:
            raise OSError(str(e)) from e
        super().verify()


class LicDecoder(ImageFile.PyDecoder):
    _pulls_fd = True

    def decode(self, buffer) -> tuple[int, int]:
        assert self.fd is not None
        try:
            img = liccodec.decode(self.fd.read())
        except LicError as e:
            raise OSError(str(e)) from e
        if img.mode != self.mode or img.size != (self.state.xsize, self.state.ysize):
            raise OSError(f"decoded a {img.mode} {img.size} image where the header said "
                          f"{self.mode} {(self.state.xsize, self.state.ysize)} (file changed?)")
        self.set_as_raw(img.tobytes())
        return -1, 0


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    kwargs = {k: im.encoderinfo[k] for k in ("model", "quality") if im.encoderinfo.get(k) is not None}
    try:
        data = liccodec.encode(im, **kwargs)
    except UsageError as e:  # quality outside the model's range
        raise ValueError(str(e)) from e
    except LicError as e:
        raise OSError(str(e)) from e
    fp.write(data)


Image.register_open(FORMAT, LicImageFile, _accept)
Image.register_decoder("lic", LicDecoder)
Image.register_save(FORMAT, _save)
Image.register_extension(FORMAT, ".lic")
Image.register_mime(FORMAT, MIME)
