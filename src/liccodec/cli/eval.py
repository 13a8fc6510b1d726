"""``lic eval``: measure liccodec models and classical codecs on a folder of images."""
from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path

import click

from liccodec.cli.main import main
from liccodec.errors import UsageError

DEFAULT_IMAGES = Path("..") / "shared" / "data" / "kodak"
DEFAULT_ANCHORS = Path("..") / "shared" / "anchors"


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _rel(p: Path) -> str:
    """``p`` relative to the working directory when that is shorter (for the report's command)."""
    try:
        return os.path.relpath(p)
    except ValueError:  # another drive on Windows
        return str(p)


@main.command("eval")
@click.argument("images_dir", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("docs/results"), show_default=True,
              help="Folder for one results JSON per codec (CompressAI's layout) and the plot.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("docs/results.md"), show_default=True, help="Markdown report to write.")
@click.option("--codecs", default="all", show_default=True,
              help="Classical codecs, comma-separated: jpeg-420, jpeg-444, webp, jpeg2000, avif-420, "
                   "avif-444, jxl, hevc-444; or the groups jpeg, avif, all; or none. avif-444-s2 "
                   "(AVIF 4:4:4 at libaom speed 2, slow) runs only when named.")
@click.option("--models", default="auto", show_default=True,
              help="liccodec models (arch.tag), comma-separated; arch.tag+refineN = encoded with "
                   "--refine N; 'auto' = every registered model "
                   "whose weights are present; 'none' for classical codecs only.")
@click.option("--qualities", "num_qualities", type=click.IntRange(2, 64), default=8, show_default=True,
              help="Qualities per liccodec model, spread evenly over its quality range.")
@click.option("--limit", type=click.IntRange(1), help="Use only the first N images (sorted by name).")
@click.option("--holdout", type=click.IntRange(0), default=0, show_default=True,
              help="Use only every K-th image (sorted by name), the photos a training run with "
                   "`holdout = K` never saw: validation on a training corpus.")
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True,
              help="Threads per codec where the library allows it (AVIF, JPEG XL, HEVC, PyTorch); "
                   "libjpeg-turbo, libwebp and OpenJPEG always use one.")
@click.option("--anchors", "anchors_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Published-results folder (compressai_kodak/, sota_rd/) for the plot and "
                   "BD-rates. Default: ../shared/anchors when present.")
@click.option("--reuse/--no-reuse", default=False, show_default=True,
              help="Also report results files already in --out-dir for codecs not measured in "
                   "this run (their timings are flagged as coming from another run).")
@click.option("--compressai-ref/--no-compressai-ref", default=True, show_default=True,
              help="Also code the images with CompressAI's own compress()/decompress() on each "
                   "measured model's weights (lowest, middle and highest integer quality) and "
                   "report sizes and times side by side.")
@click.option("--metric", "metrics", default="", metavar="LIST",
              help="Perceptual distances to add, comma-separated: lpips (= lpips-alex), lpips-vgg, "
                   "dists. Their networks come from `lic perceptual fetch` (once). Adds BD-rate "
                   "tables and OUT_DIR/rd_<dataset>_perceptual.png.")
@click.option("--max-bpp", type=click.FloatRange(0.05), default=1.5, show_default=True,
              help="Right end of the plots' rate axis.")
@click.option("--high", is_flag=True,
              help="Measure the high-rate range instead (about 1.5-5 bpp on Kodak): each model from its "
                   "top level up through its residual layer (docs/residual.md), each classical codec at "
                   "its high settings. The plots' rate axis then ends at 5 bpp unless --max-bpp says.")
@click.option("--low", is_flag=True,
              help="Measure each model below its lowest level instead: from the lowest quality it "
                   "extrapolates to up to its lowest level (qualities 0-1 for the shipped models). "
                   "Classical codecs run at their usual settings.")
@click.option("--quiet", is_flag=True, help="No progress bars or summary.")
def eval_cmd(images_dir: Path | None, out_dir: Path, report_path: Path, codecs: str, models: str,
             num_qualities: int, limit: int | None, holdout: int, threads: int, anchors_dir: Path | None,
             reuse: bool, compressai_ref: bool, metrics: str, max_bpp: float, high: bool, low: bool,
             quiet: bool) -> None:
    """Rate-distortion and speed benchmark on IMAGES_DIR (default: ../shared/data/kodak).

    Every codec runs in this one process, one image at a time, so the times compare. For each
    codec and setting it records bpp (whole file), PSNR-RGB, MS-SSIM and encode/decode seconds,
    then writes OUT_DIR/<codec>.json, OUT_DIR/rd_<dataset>.png and the REPORT with BD-rates
    (PCHIP) against each other and the published VTM/BPG anchors. Codecs whose library is
    missing are skipped and the report says why.

    \b
    lic eval                                   # Kodak, every classical codec and model
    lic eval --codecs jpeg,webp --limit 4      # quick look
    lic eval --codecs none --models msh.mse --reuse   # add a model to earlier results
    lic eval --codecs avif-444 --models charm.mse,charm.gan --metric lpips,dists
    lic eval --high --codecs jpeg2000,avif-444 --models charm.mse --qualities 5 --out-dir high
    lic eval --low --codecs none --models charm.mse --qualities 5 --out-dir low
    """
    from liccodec.eval import bench, classical, environment, learned
    from liccodec.eval.bdrate import bd_rate
    from liccodec.eval.plot import PERCEPTUAL_PANELS, rd_plot
    from liccodec.eval.report import ReportInput, write_report
    from liccodec.eval.results import VTM_KEY, load_anchors, load_curve

    if images_dir is None:
        if not DEFAULT_IMAGES.is_dir():
            raise UsageError(f"no IMAGES_DIR given and the default {DEFAULT_IMAGES} does not exist "
                             f"(relative to {Path.cwd()})")
        images_dir = DEFAULT_IMAGES
    if not images_dir.is_dir():
        raise UsageError(f"{images_dir} is not a folder")
    if anchors_dir is None and DEFAULT_ANCHORS.is_dir():
        anchors_dir = DEFAULT_ANCHORS

    # ---- what to run
    metric_keys = ["lpips-alex" if m == "lpips" else m for m in _split(metrics.lower())]
    if metric_keys:
        from liccodec.eval.bench import perceptual_scorers
        from liccodec.perceptual import available

        try:
            perceptual_scorers(metric_keys)
        except ValueError as e:
            raise UsageError(str(e)) from e
        if not available():
            raise UsageError("--metric needs the perceptual networks: run `lic perceptual fetch` once")
    codec_names = [] if codecs.strip().lower() == "none" else _split(codecs)
    try:
        to_run, skipped = classical.make_codecs(codec_names, threads)
    except ValueError as e:
        raise UsageError(str(e)) from e
    if models.strip().lower() == "auto":
        registered = learned.registered_models()
        model_ids = [mid for mid, present in registered.items() if present]
        skipped.update({mid: "weights are not present" for mid, present in registered.items()
                        if not present})
        if not registered:
            skipped["liccodec models"] = ("no model is registered yet (liccodec.list_models() is "
                                          "empty or not importable)")
    else:
        model_ids = [] if models.strip().lower() == "none" else _split(models)
    if high and low:
        raise UsageError("--high and --low exclude each other")
    if high:
        for codec in [c for c in to_run if not c.high_settings]:
            to_run.remove(codec)
            skipped[codec.name] = "no high-rate settings (--high)"
        for codec in to_run:
            codec.settings = codec.high_settings
        max_bpp = 5.0 if max_bpp == 1.5 else max_bpp
    model_codecs, model_skipped = [], {}
    for mid in model_ids:
        try:
            model_codecs.append(learned.LiccodecCodec(mid, threads, num_qualities=num_qualities,
                                                      span="high" if high else "low" if low else "levels"))
        except classical.CodecUnavailable as e:
            model_skipped[mid] = str(e)
    to_run = model_codecs + to_run
    skipped = {**model_skipped, **skipped}

    images = bench.load_images(images_dir, limit, holdout)
    if not images:
        raise UsageError(f"no images in {images_dir}")

    command = " ".join(["lic eval", shlex.quote(_rel(images_dir)), "--out-dir", shlex.quote(_rel(out_dir)),
                        "--report", shlex.quote(_rel(report_path)),
                        "--codecs", shlex.quote(codecs), "--models", shlex.quote(models),
                        *(["--qualities", str(num_qualities)] if model_codecs else []),
                        *(["--limit", str(limit)] if limit else []),
                        *(["--holdout", str(holdout)] if holdout else []), "--threads", str(threads),
                        *(["--anchors", shlex.quote(_rel(anchors_dir))] if anchors_dir else []),
                        *(["--reuse"] if reuse else []),
                        *(["--metric", ",".join(metric_keys)] if metric_keys else []),
                        *(["--max-bpp", f"{max_bpp:g}"] if max_bpp != (5.0 if high else 1.5) else []),
                        *(["--high"] if high else []), *(["--low"] if low else []),
                        *([] if compressai_ref else ["--no-compressai-ref"])])
    run = bench.new_run(command)
    machine = environment.machine_info()

    # ---- measure
    from tqdm import tqdm

    started = time.perf_counter()
    measured = []
    for codec in to_run:
        total = len(codec.settings) * len(images)
        with tqdm(total=total, desc=f"{codec.name:>10}", unit="img", disable=quiet,
                  file=sys.stderr, leave=True, dynamic_ncols=True) as bar:
            try:
                curve = bench.evaluate(codec, images, threads=threads, progress=bar.update, run=run,
                                       metrics=metric_keys)
            except Exception as e:  # noqa: BLE001 - one broken codec must not lose the others
                if os.environ.get("LICCODEC_DEBUG"):
                    raise
                skipped[codec.name] = f"failed: {type(e).__name__}: {e}"
                continue
        curve.meta["machine"] = machine
        curve.save(out_dir / f"{codec.name}.json")
        measured.append(curve)
    reference = {}
    if compressai_ref:
        reference = _reference(model_codecs, images, threads, out_dir, skipped, quiet)
    elapsed = time.perf_counter() - started

    if reuse and out_dir.is_dir():
        now = {c.meta.get("codec") for c in measured}
        for f in sorted(out_dir.glob("*.json")):
            if f.name.endswith(REFERENCE_SUFFIX):  # side-by-side records, not a curve
                continue
            try:
                c = load_curve(f)
            except (ValueError, KeyError):
                continue
            if c.source == "measured" and c.meta.get("codec") not in now:
                skipped.pop(str(c.meta.get("codec")), None)
                measured.append(c)
    measured.sort(key=lambda c: (c.kind != "learned",))

    # ---- plot and report
    anchors = load_anchors(anchors_dir) if anchors_dir else {}
    dataset = images_dir.resolve().name
    plot_path = perceptual_plot = None
    if measured or anchors:
        title = f"{dataset.capitalize()} ({len(images)} images)"
        plot_path = rd_plot([*measured, *anchors.values()], out_dir / f"rd_{dataset}.png", title=title,
                            max_bpp=max_bpp)
        panels = [p for p in PERCEPTUAL_PANELS if any(c.has(p[0]) for c in measured)]
        if panels:
            perceptual_plot = rd_plot(measured, out_dir / f"rd_{dataset}_perceptual.png", title=title,
                                      max_bpp=max_bpp, panels=panels)
    machine["load_average_end"] = environment.machine_info()["load_average"]
    inp = ReportInput(command=command, measured=measured, anchors=anchors, skipped=skipped,
                      machine=machine, versions=environment.library_versions(), run=run,
                      images_dir=_rel(images_dir), image_count=len(images), elapsed_s=elapsed,
                      plot_path=plot_path, perceptual_plot_path=perceptual_plot, threads=threads,
                      anchors_dir=_rel(anchors_dir) if anchors_dir else None, limit=limit,
                      reference=reference)
    write_report(inp, report_path)

    if not quiet:
        vtm = anchors.get(VTM_KEY)
        for c in measured:
            line = f"{c.name}: {len(c.bpp)} points, {c.bpp[0]:.3f}-{c.bpp[-1]:.3f} bpp" if c.bpp else c.name
            if vtm is not None and c.has("psnr-rgb"):
                d = bd_rate(*vtm.points("psnr-rgb"), *c.points("psnr-rgb"))
                line += f", BD-rate vs VTM {d:+.1f}%" if d is not None else ""
            click.echo(line, err=True)
        for k, v in skipped.items():
            click.echo(f"skipped {k}: {v}", err=True)
        click.echo(f"wrote {report_path} and {len(measured)} results in {out_dir} "
                   f"({elapsed / 60:.1f} min)", err=True)


REFERENCE_SUFFIX = ".compressai-ref.json"  # OUT_DIR/<model><suffix>: CompressAI side by side


def _reference(model_codecs, images, threads: int, out_dir: Path, skipped: dict[str, str],
               quiet: bool) -> dict[str, list]:
    """Each measured model through CompressAI's compress()/decompress() (liccodec.eval.reference)."""
    import json

    from tqdm import tqdm

    from liccodec.eval.reference import compare
    from liccodec.weights import get_spec

    out = {}
    for codec in model_codecs:
        spec = get_spec(codec.name)
        if spec.arch != "msh":
            continue
        lo, hi = int(spec.quality_min), int(spec.quality_max)
        qualities = sorted({lo, (lo + hi) // 2, hi})
        rgbs = [img.rgb for img in images]
        try:
            with tqdm(total=len(qualities) * len(rgbs), desc=f"{'compressai':>10}", unit="img",
                      disable=quiet, file=sys.stderr, dynamic_ncols=True) as bar:
                rows = compare(codec.name, rgbs, qualities, threads, progress=bar.update)
        except (ValueError, KeyError, ImportError) as e:
            skipped[f"{codec.name} via CompressAI"] = str(e)
            continue
        out[codec.name] = rows
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"{codec.name}{REFERENCE_SUFFIX}").write_text(
            json.dumps([r.to_dict() for r in rows], indent=1) + "\n")
    return out


def _box(text: str) -> tuple[int, int, int, int]:
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected X,Y,W,H (pixels)", param_hint="--box") from None
    if min(x, y) < 0 or min(w, h) < 1:
        raise click.BadParameter(f"{text!r}: a box inside the image", param_hint="--box")
    return x, y, w, h


@main.command("crops")
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--models", default="charm.mse,charm.gan", show_default=True,
              help="liccodec models, comma-separated; the first one's file sets the target rate.")
@click.option("-q", "--quality", type=float, default=1.0, show_default=True, help="Quality of the models.")
@click.option("--codecs", default="avif-444,webp,jpeg-420", show_default=True,
              help="Classical codecs, each set to the largest file not above the target rate.")
@click.option("--box", "boxes", multiple=True, metavar="X,Y,W,H",
              help="Crop per image, in order (default: the central 192x128).")
@click.option("--metric", "metrics", default="lpips,dists", show_default=True,
              help="Perceptual distances for the table (as in lic eval; '' for none).")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("docs/perceptual"),
              show_default=True, help="Folder of the crops.")
@click.option("--page", type=click.Path(dir_okay=False, path_type=Path), default=Path("docs/perceptual.md"),
              show_default=True, help="Markdown page to write (its links are relative to it).")
@click.option("--zoom", type=click.IntRange(1, 8), default=2, show_default=True, help="Magnification.")
def crops_cmd(images: tuple[Path, ...], models: str, quality: float, codecs: str, boxes: tuple[str, ...],
              metrics: str, out_dir: Path, page: Path, zoom: int) -> None:
    """Side-by-side crops of IMAGES at equal rate, with a table of scores: a page to look at.

    \b
    lic crops ../shared/data/kodak/kodim23.png --box 300,80,192,128
    """
    from liccodec.eval import classical, learned
    import numpy as np

    from liccodec.eval.crops import side_by_side
    from liccodec.imageio import open_image

    learned_codecs = []
    for mid in _split(models):
        try:
            learned_codecs.append(learned.LiccodecCodec(mid))
        except classical.CodecUnavailable as e:
            raise UsageError(str(e)) from e
    if not learned_codecs:
        raise UsageError("--models: give at least one liccodec model")
    classical_codecs, skipped = classical.make_codecs(_split(codecs))
    keys = ["lpips-alex" if m == "lpips" else m for m in _split(metrics.lower())]
    command = "lic crops " + " ".join(shlex.quote(_rel(p)) for p in images) + " " + " ".join(
        [f"--models {shlex.quote(models)}", f"-q {quality:g}", f"--codecs {shlex.quote(codecs)}",
         *[f"--box {b}" for b in boxes], f"--metric {shlex.quote(metrics)}", f"--zoom {zoom}"])
    sections = [f"# Side by side at equal rate\n\nProduced by:\n\n```sh\n{command}\n```\n",
                f"The first model ({learned_codecs[0].name} at quality {quality:g}) sets the rate; each "
                "classical codec gets the largest file not above it. Scores are on the whole image.\n"]
    sections += [f"Skipped `{k}`: {v}\n" for k, v in skipped.items()]
    for i, path in enumerate(images):
        rgb = np.asarray(open_image(path).convert("RGB"))
        h, w = rgb.shape[:2]
        box = _box(boxes[i]) if i < len(boxes) else (max(0, w // 2 - 96), max(0, h // 2 - 64), min(192, w), min(128, h))
        if box[0] + box[2] > w or box[1] + box[3] > h:
            raise UsageError(f"--box {box} does not fit in {path} ({w}x{h})")
        sections.append(side_by_side(rgb, learned_codecs, quality, classical_codecs, box, out_dir,
                                     path.stem, keys, zoom).replace("](", f"]({_rel_to(out_dir, page)}/"))
    page.parent.mkdir(parents=True, exist_ok=True)
    tmp = page.with_suffix(".tmp")
    tmp.write_text("\n".join(sections))
    os.replace(tmp, page)
    click.echo(f"wrote {page} and {len(images) * (1 + len(learned_codecs) + len(classical_codecs))} crops "
               f"in {out_dir}", err=True)


def _rel_to(folder: Path, page: Path) -> str:
    return Path(os.path.relpath(folder.resolve(), page.resolve().parent)).as_posix()
