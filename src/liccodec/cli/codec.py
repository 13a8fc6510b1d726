"""``lic encode``, ``lic decode``, ``lic info``, ``lic models``."""
from __future__ import annotations

import functools
import io
import json
import sys
import time
from pathlib import Path

import click

from liccodec.cli.main import main
from liccodec.errors import BatchError, LicError, UsageError

QUALITY_HELP = ("Quality: a real number in the model's range (msh.mse: 1-7, default 4; "
                "about 0.1 bpp at 1 to 1.2 bpp at 7 on Kodak). Fractions interpolate "
                "between trained levels.")


def _summary(src: str, dst: str, nbytes: int, pixels: int, seconds: float, extra: str = "") -> str:
    return f"{src} -> {dst}: {nbytes:,} bytes, {8 * nbytes / max(pixels, 1):.4f} bpp, {seconds:.2f} s{extra}"


def _quality_metrics(planes, data: bytes) -> str:
    import numpy as np
    import torch
    from pytorch_msssim import ms_ssim

    from liccodec.codec import decode_rgb

    _, rgb, _ = decode_rgb(data)
    a, b = planes.rgb.astype(np.float64), rgb.astype(np.float64)
    mse = float(((a - b) ** 2).mean())
    psnr = 10 * np.log10(255.0**2 / mse) if mse > 0 else float("inf")
    extra = f", PSNR {psnr:.2f} dB"
    if min(rgb.shape[:2]) > 160:  # MS-SSIM needs 5 scales of an 11x11 window
        ta = torch.from_numpy(planes.rgb).permute(2, 0, 1)[None].float()
        tb = torch.from_numpy(rgb).permute(2, 0, 1)[None].float()
        extra += f", MS-SSIM {ms_ssim(ta, tb, data_range=255).item():.4f}"
    return extra


def _read_input(src: str) -> bytes | str:
    return sys.stdin.buffer.read() if src == "-" else src


def _default_out(src: str, suffix: str) -> str:
    if src == "-":
        return "-"
    return str(Path(src).with_suffix(suffix))


def _check_out(dst: str, overwrite: bool, src: str) -> None:
    if dst == "-":
        return
    if Path(dst).exists() and not overwrite:
        raise UsageError(f"{dst} exists; pass --overwrite or choose another output with -o")
    if src != "-" and Path(dst).resolve() == Path(src).resolve():
        raise UsageError("output would replace the input")


def _write_out(dst: str, data: bytes) -> None:
    from liccodec.fileio import atomic_write_bytes

    if dst == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        atomic_write_bytes(dst, data)


# ---- per-file work (module level so worker processes can run it) ---------------------------

def encode_file(job, model: str, quality: float | None, overwrite: bool):
    from liccodec.batch import Outcome
    from liccodec.codec import encode_planes, quality_milli
    from liccodec.container import read_header
    from liccodec.fileio import atomic_write_bytes
    from liccodec.imageio import open_image, split
    from liccodec.weights import get_spec

    t0 = time.time()
    try:
        if job.dst.exists() and not overwrite:
            try:
                h = read_header(job.dst.read_bytes())
                spec = get_spec(model)
                if h.model_id == spec.id and h.digest == spec.digest and h.quality == quality_milli(spec, quality):
                    return Outcome(job.src, job.dst, True, skipped=True)
            except LicError:
                pass  # partial or stale output: redo it
        planes = split(open_image(job.src))
        enc = encode_planes(planes, model, quality)
        atomic_write_bytes(job.dst, enc.data)
        w, h = planes.size
        return Outcome(job.src, job.dst, True, in_bytes=job.src.stat().st_size, out_bytes=len(enc.data),
                       pixels=w * h, seconds=time.time() - t0)
    except Exception as e:  # noqa: BLE001 - one bad file never stops the batch
        return Outcome(job.src, job.dst, False, error=f"{type(e).__name__}: {e}", seconds=time.time() - t0)


def _image_bytes(img, fmt: str | None, name: str) -> bytes:
    buf = io.BytesIO()
    try:
        img.save(buf, format=fmt) if fmt else img.save(buf, format=_format_for(name))
    except (KeyError, ValueError, OSError) as e:
        raise UsageError(f"cannot write {img.mode} image as {fmt or Path(name).suffix}: {e}") from None
    return buf.getvalue()


def _format_for(name: str) -> str:
    from PIL import Image

    ext = Path(name).suffix.lower()
    Image.init()
    fmt = Image.EXTENSION.get(ext)
    if fmt is None:
        raise UsageError(f"unknown output image format {ext!r}")
    return fmt


def decode_file(job, overwrite: bool):
    from PIL import Image

    from liccodec.batch import Outcome
    from liccodec.codec import decode
    from liccodec.fileio import atomic_write_bytes

    t0 = time.time()
    try:
        if job.dst.exists() and not overwrite:
            try:
                with Image.open(job.dst) as im:
                    im.verify()
                return Outcome(job.src, job.dst, True, skipped=True)
            except Exception:  # noqa: BLE001 - unreadable output: redo it
                pass
        data = job.src.read_bytes()
        img = decode(data)
        out = _image_bytes(img, None, job.dst.name)
        atomic_write_bytes(job.dst, out)
        return Outcome(job.src, job.dst, True, in_bytes=len(data), out_bytes=len(out),
                       pixels=img.size[0] * img.size[1], seconds=time.time() - t0)
    except Exception as e:  # noqa: BLE001
        return Outcome(job.src, job.dst, False, error=f"{type(e).__name__}: {e}", seconds=time.time() - t0)


def _run_folder(src: Path, out: str | None, decode: bool, fn, jobs: int, quiet: bool, suffix: str) -> None:
    from liccodec import batch

    if not out:
        raise UsageError("a folder input needs -o OUTDIR")
    plan = batch.plan(src, Path(out), decode, suffix)
    if not plan:
        raise UsageError(f"no {'.lic files' if decode else 'images'} found under {src}")
    results = batch.run(plan, fn, jobs, progress=not quiet)
    done = [r for r in results if r.ok and not r.skipped]
    skipped = sum(r.skipped for r in results)
    failed = [r for r in results if not r.ok]
    if not quiet:
        px = sum(r.pixels for r in done)
        nbytes = sum(r.out_bytes if not decode else r.in_bytes for r in done)
        secs = sum(r.seconds for r in done)
        click.echo(f"{len(done)} converted, {skipped} skipped (valid output exists), {len(failed)} failed; "
                   f"{nbytes:,} coded bytes, {8 * nbytes / max(px, 1):.4f} bpp, {secs:.1f} s of work", err=True)
    for r in failed:
        click.echo(f"  FAILED {r.src}: {r.error}", err=True)
    if failed:
        raise BatchError(f"{len(failed)} of {len(results)} files failed")


# ---- commands --------------------------------------------------------------------------------

@main.command()
@click.argument("src", metavar="IN")
@click.argument("dst", metavar="[OUT]", required=False)
@click.option("-o", "--output", help="Output file, or output folder when IN is a folder.")
@click.option("-m", "--model", default="msh.mse", show_default=True, help="Model id (see `lic models`).")
@click.option("-q", "--quality", type=float, help=QUALITY_HELP)
@click.option("--overwrite", is_flag=True, help="Replace existing outputs (folders: redo valid ones too).")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes for folders.")
@click.option("-v", "--verbose", is_flag=True, help="Also report PSNR and MS-SSIM (decodes again).")
@click.option("--quiet", is_flag=True, help="No summary line or progress bar.")
def encode(src, dst, output, model, quality, overwrite, jobs, verbose, quiet):
    """Encode IN (an image, '-' for stdin, or a folder) into .lic.

    OUT defaults to IN with the suffix .lic; '-' writes to stdout. A folder is converted
    recursively into -o OUTDIR, mirroring its tree; outputs that already exist and are
    valid for the same model and quality are skipped unless --overwrite.
    """
    from liccodec.codec import encode_planes
    from liccodec.imageio import open_image, split

    if src != "-" and Path(src).is_dir():
        fn = functools.partial(encode_file, model=model, quality=quality, overwrite=overwrite)
        return _run_folder(Path(src), output or dst, False, fn, jobs, quiet, ".lic")
    dst = output or dst or _default_out(src, ".lic")
    _check_out(dst, overwrite, src)
    t0 = time.time()
    planes = split(open_image(_read_input(src)))
    enc = encode_planes(planes, model, quality)
    _write_out(dst, enc.data)
    secs = time.time() - t0
    if not quiet:
        w, h = planes.size
        extra = _quality_metrics(planes, enc.data) if verbose else ""
        click.echo(_summary(src, dst, len(enc.data), w * h, secs, extra), err=True)


@main.command()
@click.argument("src", metavar="IN")
@click.argument("dst", metavar="[OUT]", required=False)
@click.option("-o", "--output", help="Output image (format from its suffix), or folder when IN is a folder.")
@click.option("--format", "fmt", help="Image format for stdout or folders (default PNG).")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes for folders.")
@click.option("--quiet", is_flag=True, help="No summary line or progress bar.")
def decode(src, dst, output, fmt, overwrite, jobs, quiet):
    """Decode IN (a .lic file, '-' for stdin, or a folder) into an image.

    OUT defaults to IN with the suffix .png; '-' writes PNG to stdout. A bad or corrupted
    file never leaves a partial output behind.
    """
    from liccodec.codec import decode as decode_bytes

    if src != "-" and Path(src).is_dir():
        suffix = "." + (fmt or "png").lower().lstrip(".")
        fn = functools.partial(decode_file, overwrite=overwrite)
        return _run_folder(Path(src), output or dst, True, fn, jobs, quiet, suffix)
    dst = output or dst or _default_out(src, ".png")
    _check_out(dst, overwrite, src)
    t0 = time.time()
    data = sys.stdin.buffer.read() if src == "-" else _read_file(src)
    img = decode_bytes(data)
    out = _image_bytes(img, fmt or ("PNG" if dst == "-" else None), dst)
    _write_out(dst, out)
    if not quiet:
        click.echo(_summary(src, dst, len(data), img.size[0] * img.size[1], time.time() - t0), err=True)


def _read_file(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise UsageError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a folder") from None


@main.command()
@click.argument("src", metavar="FILE")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info(src, as_json):
    """Print a .lic file's header without decoding it (checksum verified)."""
    from liccodec.container import read_header

    data = sys.stdin.buffer.read() if src == "-" else _read_file(src)
    h = read_header(data)
    d = h.to_dict()
    d["file_bytes"] = len(data)
    d["bpp"] = round(8 * len(data) / (h.width * h.height), 5)
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    for k, v in d.items():
        if k == "streams":
            v = ", ".join(f"{n} {s:,} B" for n, s in v.items())
        click.echo(f"{k:15} {v}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def models(as_json):
    """List registered architectures and shipped weights."""
    from liccodec.codec import list_models
    from liccodec.models import get_arch, list_archs

    specs = list_models()
    if as_json:
        click.echo(json.dumps({"architectures": {a: get_arch(a).summary for a in list_archs()},
                               "models": [s.summary() for s in specs]}, indent=2))
        return
    click.echo("architectures:")
    for a in list_archs():
        click.echo(f"  {a:10} {get_arch(a).summary}")
    click.echo("models:")
    if not specs:
        click.echo("  (none installed)")
    for s in specs:
        state = "" if s.available else "  [weights file missing]"
        click.echo(f"  {s.id:12} quality {s.quality_min:g}-{s.quality_max:g} (default {s.quality_default:g}), "
                   f"sha256 {s.sha256[:12]}{state}  {s.description}")



@main.command()
@click.option("-m", "--model", default="msh.mse", show_default=True, help="Model id.")
@click.option("-q", "--quality", type=float, help=QUALITY_HELP)
@click.option("-o", "--out-dir", type=click.Path(file_okay=False), default="lic-demo", show_default=True,
              help="Where to write the .lic file and its decoded PNG.")
def demo(model, quality, out_dir):
    """Encode and decode the bundled sample photo (Chelsea the cat, CC0) with a shipped model."""
    from importlib.resources import files

    from liccodec.codec import decode_rgb, encode_planes
    from liccodec.fileio import atomic_write_bytes
    from liccodec.imageio import merge, open_image, split

    sample = files("liccodec") / "data" / "chelsea.png"
    planes = split(open_image(sample.read_bytes()))
    out = Path(out_dir)
    t0 = time.time()
    enc = encode_planes(planes, model, quality)
    t_enc = time.time() - t0
    atomic_write_bytes(out / "chelsea.lic", enc.data)
    t0 = time.time()
    header, rgb, alpha = decode_rgb(enc.data)
    t_dec = time.time() - t0
    png = _image_bytes(merge(rgb, alpha, header.mode, header.bit_depth), "PNG", "x.png")
    atomic_write_bytes(out / "chelsea.decoded.png", png)
    w, h = planes.size
    extra = _quality_metrics(planes, enc.data)
    click.echo(f"{model} q={header.quality / 1000:g}: {len(enc.data):,} bytes, "
               f"{8 * len(enc.data) / (w * h):.3f} bpp{extra}; encode {t_enc:.2f} s, decode {t_dec:.2f} s")
    click.echo(f"wrote {out / 'chelsea.lic'} and {out / 'chelsea.decoded.png'}")
