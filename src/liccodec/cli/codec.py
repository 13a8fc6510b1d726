"""``lic encode``, ``lic decode``, ``lic info``, ``lic models``, ``lic rate-bench``, ``lic roi-bench``,
``lic caption-bench``."""
from __future__ import annotations

import contextlib
import functools
import json
import sys
import time
from pathlib import Path

import click

from liccodec.batch.workers import decode_file, encode_file, image_bytes
from liccodec.cli.main import main
from liccodec.errors import BatchError, UsageError
from liccodec.weights import DEFAULT_MODEL

QUALITY_HELP = ("Quality: a real number in the model's range (`lic models` lists it; the shipped models: "
                "levels 1-8, default 5, about 0.15 bpp at 1 to 1.0 bpp at 8 on Kodak). Fractions "
                "interpolate between trained levels. Below the lowest, down to 0, the gains are "
                "extrapolated (about 0.09 bpp at 0). Above the model's residual_from (charm.mse: 7; "
                "the others: their top level), up to 4 above the top (12), a residual layer codes "
                "what the model misses: charm.mse reaches about 36 dB at 8 and 51 dB at 12 on Kodak "
                "(docs/residual.md).")


def _summary(src: str, dst: str, nbytes: int, pixels: int, seconds: float, extra: str = "") -> str:
    return f"{src} -> {dst}: {nbytes:,} bytes, {8 * nbytes / max(pixels, 1):.4f} bpp, {seconds:.2f} s{extra}"


def _quality_metrics(planes, data: bytes, roi=None) -> str:
    """PSNR and MS-SSIM of ``data``'s decoding; with ``roi`` (a ``roi.QualityRequest`` of a
    mask) also the PSNR inside and outside the region."""
    from liccodec.codec import decode_rgb
    from liccodec.eval.metrics import ms_ssim_rgb, psnr_rgb

    _, rgb, _ = decode_rgb(data)
    extra = f", PSNR {psnr_rgb(planes.rgb, rgb):.2f} dB"
    if roi is not None:
        from liccodec.eval.roi import masked_psnr

        inside = roi.levels == 255
        extra += (f" (ROI {masked_psnr(planes.rgb, rgb, inside):.2f}, "
                  f"outside {masked_psnr(planes.rgb, rgb, ~inside):.2f})")
    ms = ms_ssim_rgb(planes.rgb, rgb)  # None when too small for five scales
    return extra if ms is None else extra + f", MS-SSIM {ms:.4f}"


def _read_input(src: str) -> bytes | str:
    return sys.stdin.buffer.read() if src == "-" else src


def _default_out(src: str, suffix: str) -> str:
    if src == "-":
        return "-"
    return str(Path(src).with_suffix(suffix))


#: What ``lic decode IN`` writes without OUT: never the input's original (``photo.png`` ->
#: ``photo.lic`` -> ``photo.decoded.png``), and the same name folder decoding uses.
DECODED_SUFFIX = ".decoded"


def _check_out(dst: str, overwrite: bool, src: str) -> None:
    """Refuse, before any coding, an output that exists (without --overwrite), is not a
    regular file, is the input, or cannot be written."""
    from liccodec.fileio import check_writable, existing_target

    if dst == "-":
        return
    if existing_target(dst) is not None and not overwrite:
        raise UsageError(f"{dst} exists; pass --overwrite to replace it, or choose another output with -o")
    if src != "-" and Path(dst).resolve() == Path(src).resolve():
        raise UsageError("output would replace the input")
    check_writable(dst)


def _write_out(dst: str, data: bytes) -> None:
    from liccodec.fileio import atomic_write_bytes

    if dst == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        atomic_write_bytes(dst, data)


def _run_folder(src: Path, out: str | None, decode: bool, fn, jobs: int, quiet: bool, suffix: str,
                engine: str = "local", address: str | None = None) -> None:
    from liccodec import batch

    if not out:
        raise UsageError("a folder input needs -o OUTDIR")
    report = batch.run_folder(src, Path(out), decode, fn, suffix, jobs, engine, address, progress=not quiet)
    if not quiet:
        click.echo(report.table(), err=True)
    for r in report.failed:
        click.echo(f"  FAILED {r.src}: {r.error}", err=True)
    if report.failed:
        raise BatchError(f"{len(report.failed)} of {len(report.results)} files failed")


_ENGINE_HELP = ("Where folder files run: local worker processes, or Ray tasks "
                "(needs `pip install 'liccodec[ray]'`; see docs/batch.md).")
_ADDRESS_HELP = ("Ray cluster to use ('auto', HOST:PORT, ray://HOST:10001); default: start a "
                 "local Ray instance with --jobs CPUs.")


# ---- rate control ----------------------------------------------------------------------------

def _rate_targets(quality, target_bpp, target_size, target_psnr, avg_bpp, total_size):
    """The one target (ratecontrol.Target) or folder budget (allocate.Budget) asked for, if any."""
    given = {name: v for name, v in (("-q", quality), ("--target-bpp", target_bpp), ("--target-size", target_size),
                                     ("--target-psnr", target_psnr), ("--avg-bpp", avg_bpp),
                                     ("--total-size", total_size)) if v is not None}
    if len(given) > 1:
        raise UsageError(f"{' and '.join(given)} exclude each other: give one")
    if avg_bpp is not None or total_size is not None:
        from liccodec.ratecontrol.allocate import Budget
        from liccodec.ratecontrol import parse_size

        return None, Budget(avg_bpp, parse_size(total_size) if total_size is not None else None)
    if target_bpp is None and target_size is None and target_psnr is None:
        return None, None
    from liccodec.ratecontrol import Target, parse_size

    if target_size is not None:
        return Target("size", parse_size(target_size)), None
    return (Target("bpp", target_bpp) if target_bpp is not None else Target("psnr", target_psnr)), None


def _allocate_folder(src: Path, out: str | None, model: str, budget, metric: str, grid: int, overwrite: bool,
                     quiet: bool, report_path: str | None) -> None:
    from liccodec import batch
    from liccodec.ratecontrol import allocate

    if not out:
        raise UsageError("a folder input needs -o OUTDIR")
    plan = batch.plan(src, Path(out), False, ".lic")
    if not plan:
        raise UsageError(f"no images found under {src}")
    res = allocate.allocate_folder([(j.src, j.dst) for j in plan], budget, model, metric=metric, grid_size=grid,
                                   overwrite=overwrite, progress=not quiet)
    if res.report is not None:
        if report_path:
            allocate.write_json(report_path, res.report.to_dict())
        if not quiet:
            click.echo(f"{len(res.report.produced)} images, {budget}: {res.report.summary()}; "
                       f"{res.seconds:.1f} s", err=True)
    for path, error in res.failures:
        click.echo(f"  FAILED {path}: {error}", err=True)
    if res.failures:
        raise BatchError(f"{len(res.failures)} of {len(plan)} files failed")


@contextlib.contextmanager
def _refine_bar(show: bool):
    """Yields ``progress(done, total)`` drawing refinement's steps as a bar on stderr, or None."""
    if not show:
        yield None
        return
    with contextlib.ExitStack() as stack:
        bars = []

        def progress(done: int, total: int) -> None:
            if not bars:
                bars.append(stack.enter_context(click.progressbar(length=total, label="refining", file=sys.stderr)))
            bars[0].update(done - bars[0].pos)
        yield progress


# ---- commands --------------------------------------------------------------------------------

@main.command()
@click.argument("src", metavar="IN")
@click.argument("dst", metavar="[OUT]", required=False)
@click.option("-o", "--output", help="Output file, or output folder when IN is a folder.")
@click.option("-m", "--model", default=DEFAULT_MODEL, show_default=True, help="Model id (see `lic models`).")
@click.option("-q", "--quality", type=float, help=QUALITY_HELP)
@click.option("--overwrite", is_flag=True, help="Replace existing outputs (folders: redo valid ones too).")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes for folders.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True, help=_ENGINE_HELP)
@click.option("--address", help=_ADDRESS_HELP)
@click.option("--target-bpp", type=float, metavar="BPP",
              help="Largest quality whose file (header and all) has at most BPP bits per pixel.")
@click.option("--target-size", metavar="SIZE",
              help="Largest quality whose file has at most SIZE bytes (50000, 50k, 1.5M; k = 1000).")
@click.option("--target-psnr", type=float, metavar="DB",
              help="Smallest file whose decoded RGB has a PSNR of at least DB.")
@click.option("--avg-bpp", type=float, metavar="BPP",
              help="Folders: choose each image's quality for the best mean quality at BPP on "
                   "average (runs in this process: -j and --engine do not apply).")
@click.option("--total-size", metavar="SIZE", help="Folders: as --avg-bpp, for a total of SIZE bytes.")
@click.option("--metric", type=click.Choice(["psnr", "ms-ssim"]), default="psnr", show_default=True,
              help="What --avg-bpp/--total-size maximise (the folder's mean).")
@click.option("--grid", type=click.IntRange(2, 101), default=13, show_default=True,
              help="Qualities measured per image for --avg-bpp/--total-size.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False),
              help="Write the allocation's measurements and choices as JSON.")
@click.option("--first-frame", is_flag=True,
              help="Code only frame 1 of an input with several frames (animated GIF, multi-page TIFF); "
                   "without it such inputs are refused (exit 3).")
@click.option("--roi", metavar="MASK",
              help="Region of interest: a greyscale image of IN's size; its white part (grey >= 128) is "
                   "coded at -q, the rest at --roi-background (docs/roi.md).")
@click.option("--roi-background", type=float, metavar="Q",
              help="Quality outside --roi (default: the model's lowest).")
@click.option("--quality-map", metavar="MAP",
              help="A greyscale image of IN's size whose grey levels set the quality linearly, black "
                   "to white = --quality-range (docs/roi.md). Replaces -q.")
@click.option("--quality-range", metavar="LO,HI",
              help="Qualities of black and white in --quality-map (default: the model's range).")
@click.option("--caption", metavar="TEXT",
              help="A one-line description of the picture, carried in the file (up to 1024 bytes of UTF-8). "
                   "A selic model's decoder conditions on it (docs/models/selic.md); other models keep it "
                   "as a description. One image only.")
@click.option("--refine", type=click.IntRange(0, 10000), default=0, show_default=True, metavar="STEPS",
              help="Encoder-side refinement (docs/refine.md): optimise the latent for this image for "
                   "STEPS gradient steps before coding it. Smaller files at the same quality, decoded "
                   "by the same decoder as fast; the encode takes about 0.9 s per megapixel per step "
                   "on 2 cores (50 steps: about 18 s for a 0.4 Mpx photo). 0 = off.")
@click.option("-v", "--verbose", is_flag=True,
              help="Also report PSNR and MS-SSIM (decodes again); with --roi, PSNR inside and outside it.")
@click.option("--quiet", is_flag=True, help="No summary line or progress bar.")
def encode(src, dst, output, model, quality, overwrite, jobs, engine, address, target_bpp, target_size, target_psnr,
           avg_bpp, total_size, metric, grid, report_path, first_frame, roi, roi_background, quality_map,
           quality_range, caption, refine, verbose, quiet):
    """Encode IN (an image, '-' for stdin, or a folder) into .lic.

    OUT defaults to IN with the suffix .lic; '-' writes to stdout. A folder is converted
    recursively into -o OUTDIR, mirroring its tree (inputs whose names differ only in
    their suffix keep it: a.png.lic, a.jpg.lic); an output is skipped unless --overwrite
    when the folder's state file (.lic-batch.json) records it as made from the same,
    unchanged input with the same model and quality (docs/batch.md).

    \b
    Rate control (docs/ratecontrol.md) searches the quality with real encodes:
      --target-size 50k, --target-bpp 0.5   never exceeded (else exit code 8)
      --target-psnr 35                      the smallest file that reaches it
      DIR -o OUT --avg-bpp 0.3              best mean PSNR within the budget

    \b
    Region of interest (docs/roi.md), a quality per 16x16 block:
      --roi mask.png -q 6 --roi-background 2
      --quality-map map.png --quality-range 2,7

    \b
    A caption (docs/format.md, "Caption"), used by selic models' decoders:
      --caption "a red barn under a blue sky"

    \b
    Slower encodes, smaller files (docs/refine.md; same decoder):
      --refine 50
    """
    from liccodec.codec import check_caption, encode_planes
    from liccodec.imageio import open_image, split

    target, budget = _rate_targets(quality, target_bpp, target_size, target_psnr, avg_bpp, total_size)
    spatial = [name for name, v in (("--roi", roi), ("--roi-background", roi_background),
                                    ("--quality-map", quality_map), ("--quality-range", quality_range)) if v]
    if spatial and src != "-" and Path(src).is_dir():
        raise UsageError(f"{spatial[0]} is for one image (a mask has its size), not a folder")
    if spatial and (target is not None or budget is not None):
        raise UsageError(f"{spatial[0]} does not combine with rate targets (--target-*, --avg-bpp, --total-size)")
    caption = check_caption(caption)
    if caption and src != "-" and Path(src).is_dir():
        raise UsageError("--caption describes one image, not a folder")
    if caption and (target is not None or budget is not None):
        raise UsageError("--caption does not combine with rate targets (--target-*, --avg-bpp, --total-size)")
    if refine and (target is not None or budget is not None):
        raise UsageError("--refine does not combine with rate targets (--target-*, --avg-bpp, --total-size): "
                         "their search would refine every quality it tries")
    if refine and spatial:
        raise UsageError(f"--refine codes one quality for the whole image; it does not combine with {spatial[0]}")
    if src != "-" and Path(src).is_dir():
        if budget is not None:
            return _allocate_folder(Path(src), output or dst, model, budget, metric, grid, overwrite, quiet,
                                    report_path)
        fn = functools.partial(encode_file, model=model, quality=quality, overwrite=overwrite, target=target,
                               first_frame=first_frame, refine=refine)
        return _run_folder(Path(src), output or dst, False, fn, jobs, quiet, ".lic", engine, address)
    if budget is not None:
        raise UsageError("--avg-bpp and --total-size share a folder's budget; "
                         "for one image use --target-bpp or --target-size")
    dst = output or dst or _default_out(src, ".lic")
    _check_out(dst, overwrite, src)
    t0 = time.time()
    planes = split(open_image(_read_input(src), first_frame))
    note = ""
    region = None
    if spatial:
        from liccodec.roi import parse_range, request
        from liccodec.weights import get_spec

        region = request(get_spec(model), planes.size, quality, roi, roi_background, quality_map,
                         None if quality_range is None else parse_range(quality_range))
    if target is None:
        with _refine_bar(refine and not quiet) as progress:
            enc = encode_planes(planes, model, None if region is not None else quality, region, caption,
                                refine, progress)
    else:
        from liccodec.ratecontrol import encode_to_target

        found = encode_to_target(planes, target, model)
        enc, note = found.encoded, found.note(with_psnr=not verbose)  # -v reports PSNR itself
    _write_out(dst, enc.data)
    secs = time.time() - t0
    if not quiet:
        w, h = planes.size
        extra = _quality_metrics(planes, enc.data, region if roi else None) if verbose else ""
        if enc.qmap is not None:
            qs = enc.qmap.qualities
            note += f", qualities {qs[0] / 1000:g}-{qs[-1] / 1000:g} (base {enc.header.quality / 1000:g})"
        click.echo(_summary(src, dst, len(enc.data), w * h, secs, note + extra), err=True)


@main.command()
@click.argument("src", metavar="IN")
@click.argument("dst", metavar="[OUT]", required=False)
@click.option("-o", "--output", help="Output image (format from its suffix), or folder when IN is a folder.")
@click.option("--format", "fmt", help="Image format for stdout or folders (default PNG).")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Worker processes for folders.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True, help=_ENGINE_HELP)
@click.option("--address", help=_ADDRESS_HELP)
@click.option("--quiet", is_flag=True, help="No summary line or progress bar.")
def decode(src, dst, output, fmt, overwrite, jobs, engine, address, quiet):
    """Decode IN (a .lic file, '-' for stdin, or a folder) into an image.

    OUT defaults to IN with the suffix .decoded.png (photo.lic -> photo.decoded.png, so
    that the original photo.png is never the default); '-' writes PNG to stdout. A folder
    is decoded into -o OUTDIR the same way (a.lic -> a.decoded.png). A bad or corrupted
    file never leaves a partial output behind.
    """
    from liccodec.codec import decode as decode_bytes

    if src != "-" and Path(src).is_dir():
        suffix = DECODED_SUFFIX + "." + (fmt or "png").lower().lstrip(".")
        fn = functools.partial(decode_file, overwrite=overwrite)
        return _run_folder(Path(src), output or dst, True, fn, jobs, quiet, suffix, engine, address)
    dst = output or dst or _default_out(src, DECODED_SUFFIX + "." + (fmt or "png").lower().lstrip("."))
    _check_out(dst, overwrite, src)
    t0 = time.time()
    data = sys.stdin.buffer.read() if src == "-" else _read_file(src)
    img = decode_bytes(data)
    out = image_bytes(img, fmt or ("PNG" if dst == "-" else None), dst)
    _write_out(dst, out)
    if not quiet:
        click.echo(_summary(src, dst, len(data), img.size[0] * img.size[1], time.time() - t0,
                            _caption_note(data)), err=True)


def _caption_note(data: bytes) -> str:
    """", caption: ..." for a decoded file that carries one (already checked by the decoder)."""
    from liccodec.codec import read_caption
    from liccodec.container import CAPTION_STREAM, unpack

    header, streams = unpack(data)
    return f", caption: {read_caption(header, streams)}" if CAPTION_STREAM in streams else ""


def _read_file(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise UsageError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a folder") from None
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from None


@main.command()
@click.argument("src", metavar="FILE")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info(src, as_json):
    """Print a .lic file's header without decoding it (checksum verified)."""
    from liccodec.container import CAPTION_STREAM, QMAP_STREAM, RESIDUAL_STREAM, read_header

    data = sys.stdin.buffer.read() if src == "-" else _read_file(src)
    h = read_header(data)
    d = h.to_dict()
    if QMAP_STREAM in h.streams:  # region-of-interest coding: the qualities of the map, then its base
        from liccodec.container import QualityMap, unpack

        d["quality_map"] = [q / 1000 for q in QualityMap.qualities_of(unpack(data)[1][QMAP_STREAM])]
    if CAPTION_STREAM in h.streams:  # validated like the decoder does: one printable line
        from liccodec.codec import read_caption
        from liccodec.container import unpack

        d["caption"] = read_caption(*unpack(data))
    if RESIDUAL_STREAM in h.streams:  # the residual layer: the latents' quality, then its own header
        from liccodec import residual
        from liccodec.codec import residual_parts
        from liccodec.container import unpack

        base, stream = residual_parts(h.major, unpack(data)[1][RESIDUAL_STREAM])  # 4.0: no base field
        d["residual"] = {**({"base_quality": base / 1000} if base is not None else {}), **residual.describe(stream)}
    d["file_bytes"] = len(data)
    d["bpp"] = round(8 * len(data) / (h.width * h.height), 5)
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    for k, v in d.items():
        if k == "streams":
            v = ", ".join(f"{_printable(n)} {s:,} B" for n, s in v.items())
        elif k == "quality_map":
            v = ", ".join(f"{q:g}" for q in v)
        elif k == "residual":
            v = ", ".join(f"{name} {x:g}" for name, x in v.items())
        elif k == "caption":  # any script; no control, separator or bidi character (the reader checked)
            click.echo(f"{k:15} {v}")
            continue
        click.echo(f"{k:15} {_printable(str(v))}")


def _printable(s: str) -> str:
    """``s`` with anything but printable ASCII escaped (``\\x1b``): the reader allows no
    other name, and a terminal must never get a file's control characters even so."""
    return "".join(c if " " <= c <= "~" else c.encode("unicode_escape").decode("ascii") for c in s)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def models(as_json):
    """List registered architectures and shipped weights."""
    from liccodec.codec import list_models, quality_bottom, quality_top, residual_from
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
        click.echo(f"  {s.id:12} quality {s.quality_min:g}-{s.quality_max:g} (default {s.quality_default:g}; "
                   f"{quality_bottom(s):g}-{quality_top(s):g} extrapolated and with the residual layer "
                   f"above {residual_from(s):g}), "
                   f"sha256 {s.sha256[:12]}{state}  {s.description}")



@main.command()
@click.option("-m", "--model", default=DEFAULT_MODEL, show_default=True, help="Model id.")
@click.option("-q", "--quality", type=float, help=QUALITY_HELP)
@click.option("-o", "--out-dir", type=click.Path(file_okay=False), default="lic-demo", show_default=True,
              help="Where to write the .lic file and its decoded PNG.")
@click.option("--overwrite", is_flag=True, help="Replace the files of an earlier demo in OUT_DIR.")
def demo(model, quality, out_dir, overwrite):
    """Encode and decode the bundled sample photo (Chelsea the cat, CC0) with a shipped model.

    Writes OUT_DIR/chelsea.lic and OUT_DIR/chelsea.decoded.png; existing ones are kept
    (exit 2) unless --overwrite.
    """
    from importlib.resources import files

    from liccodec.codec import decode_rgb, encode_planes
    from liccodec.fileio import atomic_write_bytes
    from liccodec.imageio import merge, open_image, split

    out = Path(out_dir)
    for name in ("chelsea.lic", "chelsea.decoded.png"):
        _check_out(str(out / name), overwrite, "-")
    sample = files("liccodec") / "data" / "chelsea.png"
    planes = split(open_image(sample.read_bytes()))
    t0 = time.time()
    enc = encode_planes(planes, model, quality)
    t_enc = time.time() - t0
    atomic_write_bytes(out / "chelsea.lic", enc.data)
    t0 = time.time()
    header, rgb, alpha = decode_rgb(enc.data)
    t_dec = time.time() - t0
    png = image_bytes(merge(rgb, alpha, header.mode, header.bit_depth), "PNG", "x.png")
    atomic_write_bytes(out / "chelsea.decoded.png", png)
    w, h = planes.size
    extra = _quality_metrics(planes, enc.data)
    click.echo(f"{model} q={header.quality / 1000:g}: {len(enc.data):,} bytes, "
               f"{8 * len(enc.data) / (w * h):.3f} bpp{extra}; encode {t_enc:.2f} s, decode {t_dec:.2f} s")
    click.echo(f"wrote {out / 'chelsea.lic'} and {out / 'chelsea.decoded.png'}")


def _rounded(values: tuple[float, ...] | None) -> list[float] | None:
    return None if values is None else [round(v, 2) for v in values]


@main.command("rate-bench")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("-m", "--model", default=DEFAULT_MODEL, show_default=True, help="Model id.")
@click.option("--avg-bpp", "avg_bpps", type=float, multiple=True, default=(0.25, 0.5), show_default=True,
              help="Folder budgets to allocate (repeat the option).")
@click.option("--grid", type=click.IntRange(2, 101), default=13, show_default=True, help="Qualities per image.")
@click.option("--metric", type=click.Choice(["psnr", "ms-ssim"]), default="psnr", show_default=True)
@click.option("--target-images", type=click.IntRange(0, 1000), default=4, show_default=True,
              help="Images (spread over the folder) for the single-image target searches.")
@click.option("--skip-allocation", is_flag=True, help="Only the single-image targets.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write every number as JSON.")
def rate_bench(folder, model, avg_bpps, grid, metric, target_images, skip_allocation, json_path):
    """Measure rate control on FOLDER: target accuracy and allocation gain (docs/ratecontrol.md).

    Prints markdown tables. Runs in this one process (use OMP_NUM_THREADS to limit threads).
    """
    import torch

    from liccodec.ratecontrol.allocate import allocation_markdown, benchmark_allocation, write_json
    from liccodec.eval.environment import cpu_model, load_average, usable_cores
    from liccodec.ratecontrol import benchmark_targets, targets_markdown
    from liccodec.train.data import list_images

    paths = list_images(folder)
    if not paths:
        raise UsageError(f"no images found under {folder}")
    out: dict = {"folder": str(folder), "model": model, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                 "machine": f"{cpu_model()}, {usable_cores()} usable cores, {torch.get_num_threads()} torch threads",
                 "load_average_start": _rounded(load_average())}
    t0 = time.time()
    if target_images:
        step = max(1, len(paths) // target_images)
        out["targets"] = benchmark_targets(paths[::step][:target_images], model)
        click.echo(targets_markdown(out["targets"]) + "\n")
    if not skip_allocation:
        out["allocation"] = benchmark_allocation(paths, model, avg_bpps, metric=metric, grid_size=grid)
        click.echo(allocation_markdown(out["allocation"]))
    out["seconds"] = time.time() - t0
    out["load_average_end"] = _rounded(load_average())
    click.echo(f"\n{out['machine']}; load average {out['load_average_start']} at the start, "
               f"{out['load_average_end']} at the end; {out['seconds']:.0f} s in all", err=True)
    if json_path:
        write_json(json_path, out)


@main.command("roi-bench")
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("-m", "--model", default=DEFAULT_MODEL, show_default=True, help="Model id.")
@click.option("--pair", "pairs", multiple=True, default=("6,2", "7,3"), show_default=True, metavar="ROI,BG",
              help="ROI quality and background quality (repeat the option).")
@click.option("--mask", type=click.Path(exists=True, dir_okay=False),
              help="The region (white) for a single image; default: the ellipse inscribed in the central "
                   "half of each image.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write every number as JSON.")
def roi_bench(images, model, pairs, mask, json_path):
    """Measure ROI coding on IMAGES against a uniform quality at the same file size (docs/roi.md).

    Prints a markdown table: PSNR inside and outside the region for the ROI file, for the
    uniform file of the same size, and inside the region for a uniform file at the ROI quality.
    """
    import torch

    from liccodec.eval.environment import cpu_model, usable_cores
    from liccodec.eval.roi import compare, markdown
    from liccodec.ratecontrol.allocate import write_json
    from liccodec.roi import parse_range, read_grey

    if mask is not None and len(images) != 1:
        raise UsageError("--mask is the region of one image; give one image with it")
    qualities = [parse_range(p) for p in pairs]
    rows = []
    for path in images:
        region = None
        if mask is not None:
            from liccodec.imageio import open_image
            from liccodec.roi import MASK_THRESHOLD

            region = read_grey(mask, open_image(path).size, "ROI mask") >= MASK_THRESHOLD
        rows += compare(path, model, qualities, region)
    click.echo(markdown(rows))
    machine = f"{cpu_model()}, {usable_cores()} usable cores, {torch.get_num_threads()} torch threads"
    click.echo(f"\n{machine}; {sum(r.get('seconds', 0) for r in rows):.0f} s in all", err=True)
    if json_path:
        write_json(json_path, {"model": model, "machine": machine, "rows": rows})


@main.command("caption-bench")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--captions", "captions_path", type=click.Path(exists=True, dir_okay=False), required=True,
              help="JSON object: image file name -> caption (docs/data/captions-kodak.json).")
@click.option("-m", "--model", default="selic.mse", show_default=True, help="Model id.")
@click.option("-q", "--quality", "qualities", type=float, multiple=True, default=(1.0, 3.0, 5.0, 8.0),
              show_default=True, help="Qualities to code at (repeat the option).")
@click.option("--group", help="Only this group of the captions file (e.g. holdout in captions-train.json).")
@click.option("--limit", type=click.IntRange(1, 10000), help="Only the first N captioned images.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write every number as JSON.")
def caption_bench(folder, captions_path, model, qualities, group, limit, json_path):
    """Measure what a caption buys (docs/models/selic.md, "What it buys").

    Codes each captioned image of FOLDER once per quality and decodes the same latents three
    ways: with its own caption, with none, and with another image's (the one half the list
    away). Prints a markdown table per quality: bpp without and with the caption (its bytes
    included), the caption's bytes, and the PSNR of each decoding.
    """
    import torch

    from liccodec.eval.caption import bench, markdown, read_captions
    from liccodec.eval.environment import cpu_model, usable_cores
    from liccodec.ratecontrol.allocate import write_json

    try:
        captions = read_captions(captions_path, group)
    except ValueError as e:
        raise UsageError(f"--captions: {e}") from None
    res = bench(folder, captions, model, qualities, limit)
    click.echo(markdown(res))
    machine = f"{cpu_model()}, {usable_cores()} usable cores, {torch.get_num_threads()} torch threads"
    click.echo(f"\n{machine}; {res['seconds']:.0f} s in all", err=True)
    if json_path:
        write_json(json_path, {"machine": machine, **res})
