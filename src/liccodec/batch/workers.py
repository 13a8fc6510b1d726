"""The per-file work of a folder conversion: one input to one output, never raising.

Module-level functions, so that worker processes and Ray tasks can run them; ``lic
encode``/``lic decode`` run the same ones on single files' folders. Each returns an
:class:`~liccodec.batch.Outcome` and skips an output whose state record matches its input
and settings (docs/batch.md).
"""
from __future__ import annotations

import io
import time
from pathlib import Path

from liccodec.errors import LicError, UsageError


def encode_file(job, model: str, quality: float | None, overwrite: bool, target=None, first_frame: bool = False,
                refine: int = 0):
    from liccodec.batch import Outcome, make_record, stamp, up_to_date
    from liccodec.codec import encode_planes, quality_milli
    from liccodec.container import read_header
    from liccodec.fileio import atomic_write_bytes
    from liccodec.imageio import open_image, split
    from liccodec.ratecontrol import encode_to_target, existing_meets
    from liccodec.weights import get_spec

    t0 = time.time()
    try:
        spec = get_spec(model)
        params = {"model": spec.id, "digest": spec.digest.hex(), "first_frame": first_frame,
                  **({"quality_milli": quality_milli(spec, quality)} if target is None
                     else {"target": [target.kind, target.value]}),
                  **({"refine": refine} if refine else {})}
        src_stamp = stamp(job.src)  # before reading: a change while coding is seen next time
        if job.dst.exists() and not overwrite and up_to_date(job, src_stamp, params):
            try:
                h = read_header(job.dst.read_bytes())
                if h.model_id == spec.id and h.digest == spec.digest and (
                        h.quality == params["quality_milli"] if target is None
                        else existing_meets(target, h.width, h.height, job.dst.stat().st_size)):
                    return Outcome(job.src, job.dst, True, skipped=True, record=job.record)
            except LicError:
                pass  # damaged output: redo it
        planes = split(open_image(job.src, first_frame))
        if target is None:
            enc = encode_planes(planes, model, quality, refine=refine)
        else:
            enc = encode_to_target(planes, target, model).encoded
        atomic_write_bytes(job.dst, enc.data)
        w, h = planes.size
        return Outcome(job.src, job.dst, True, in_bytes=src_stamp["size"], out_bytes=len(enc.data),
                       pixels=w * h, seconds=time.time() - t0, record=make_record(job, src_stamp, params))
    except Exception as e:  # noqa: BLE001 - one bad file never stops the batch
        return Outcome(job.src, job.dst, False, error=f"{type(e).__name__}: {e}", seconds=time.time() - t0)


#: zlib level of decoded PNGs. Pillow's default, 6, took 86 ms for a decoded Kodak image and 3
#: took 32 ms, for files 0.7% larger (8 images, docs/speed/png_level.py)
PNG_COMPRESS_LEVEL = 3


def image_bytes(img, fmt: str | None, name: str) -> bytes:
    buf = io.BytesIO()
    fmt = fmt or format_for(name)
    try:
        img.save(buf, format=fmt, **({"compress_level": PNG_COMPRESS_LEVEL} if fmt.upper() == "PNG" else {}))
    except (KeyError, ValueError, OSError) as e:
        raise UsageError(f"cannot write {img.mode} image as {fmt or Path(name).suffix}: {e}") from None
    return buf.getvalue()


def format_for(name: str) -> str:
    from PIL import Image

    ext = Path(name).suffix.lower()
    Image.preinit()  # the common formats (PNG, JPEG, BMP, GIF, PPM); every plugin only when needed
    if ext not in Image.EXTENSION:
        Image.init()  # imports all of Pillow's plugins: 0.06-0.13 s of a decode command here
    fmt = Image.EXTENSION.get(ext)
    if fmt is None:
        raise UsageError(f"unknown output image format {ext!r}")
    return fmt


def decode_file(job, overwrite: bool):
    from PIL import Image

    from liccodec.batch import Outcome, make_record, stamp, up_to_date
    from liccodec.codec import decode
    from liccodec.fileio import atomic_write_bytes

    t0 = time.time()
    try:
        params = {"decoder": "lic"}
        src_stamp = stamp(job.src)
        if job.dst.exists() and not overwrite and up_to_date(job, src_stamp, params):
            try:
                with Image.open(job.dst) as im:
                    im.verify()
                return Outcome(job.src, job.dst, True, skipped=True, record=job.record)
            except Exception:  # noqa: BLE001 - unreadable output: redo it
                pass
        data = job.src.read_bytes()
        img = decode(data)
        out = image_bytes(img, None, job.dst.name)
        atomic_write_bytes(job.dst, out)
        return Outcome(job.src, job.dst, True, in_bytes=len(data), out_bytes=len(out),
                       pixels=img.size[0] * img.size[1], seconds=time.time() - t0,
                       record=make_record(job, src_stamp, params))
    except Exception as e:  # noqa: BLE001
        return Outcome(job.src, job.dst, False, error=f"{type(e).__name__}: {e}", seconds=time.time() - t0)
