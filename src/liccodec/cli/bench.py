"""``lic bench``: how fast liccodec encodes and decodes, against AVIF and JPEG XL."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from liccodec.cli.main import main


@main.command("bench")
@click.argument("images_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--models", default="charm.mse", show_default=True,
              help="Comma-separated liccodec models to time.")
@click.option("-q", "--quality", type=float, default=5.0, show_default=True, help="liccodec quality.")
@click.option("--limit", type=click.IntRange(1), default=6, show_default=True,
              help="Use the first N images (sorted by name).")
@click.option("--threads", type=click.IntRange(1), default=2, show_default=True,
              help="Threads for avifenc/avifdec/cjxl/djxl; lic uses torch's default (all cores).")
@click.option("--avif-cq", type=click.IntRange(0, 63), default=28, show_default=True,
              help="avifenc cq-level (0-63, lower is better quality).")
@click.option("--jxl-distance", type=float, default=1.5, show_default=True, help="cjxl -d (Butteraugli distance).")
@click.option("--profile/--no-profile", default=True, show_default=True,
              help="Also split each model's in-process encode and decode into stages.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the Markdown tables here (default: print them).")
def bench(images_dir: Path, models: str, quality: float, limit: int, threads: int, avif_cq: int,
          jxl_distance: float, profile: bool, report_path: Path | None) -> None:
    """Time lic encode/decode against avifenc and cjxl, as whole processes, on the same images.

    Each codec runs as a command (PNG in, PNG out), image by image in turns, and the report
    gives seconds per image and ratios to AVIF (speed 6). With --profile, each model's
    encode and decode of the first image is split into stages in one process (docs/speed.md).
    Absolute times on a busy machine are noisy: quote the ratios of one run.
    """
    from tqdm import tqdm

    from liccodec.eval.bench import find_images
    from liccodec.eval.environment import cpu_model
    from liccodec.eval.speed import cli_tools, profile_stages, render, time_cli
    from liccodec.runtime import blas
    from liccodec.weights import get_spec

    model_ids = [m.strip() for m in models.split(",") if m.strip()]
    for m in model_ids:
        get_spec(m)  # unknown ids fail here, before any timing
    images = find_images(images_dir)[:limit]
    if not images:
        raise click.BadParameter(f"no images in {images_dir}", param_hint="IMAGES_DIR")
    tools, missing = cli_tools(model_ids, quality, threads, avif_cq, jxl_distance)
    with tqdm(total=len(images) * len(tools), desc="bench", unit="run", file=sys.stderr,
              dynamic_ncols=True) as bar:
        times = time_cli(images, tools, threads, bar.update)
    profiles = [profile_stages(m, images[0], quality) for m in model_ids] if profile else []
    command = "lic bench " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    text = render(command, f"{cpu_model()}; numpy's BLAS: {blas.describe()}", threads, images, times, missing,
                  profiles)
    if report_path:
        from liccodec.fileio import atomic_write_bytes

        atomic_write_bytes(report_path, (text + "\n").encode())
        click.echo(f"wrote {report_path}", err=True)
    else:
        click.echo(text)
