"""Big photos: peak memory, time and seams of tiled coding (docs/big-images.md).

Re-runnable with any installed weights::

    python -m liccodec.eval.bigimage --kodak ../shared/data/kodak --work /tmp/lic-big

It builds a synthetic 24-megapixel photo (:func:`make_mosaic`), then

1. runs ``lic encode`` and ``lic decode`` on it as separate processes and reads each one's
   peak resident memory from the kernel (``wait4`` rusage), with wall times;
2. measures PSNR in bands along the tile borders against the same bands shifted off the
   borders (their spread is what content alone does) and against everything off the
   borders: a seam would show as a border PSNR below that spread;
3. on a mid-size crop that still fits whole in memory, compares tiled with whole-image
   processing stage by stage (max abs difference of y, z, x_hat; equality of the integer
   entropy parameters).

Every step prints one JSON line; ``--json FILE`` also writes them all to a file.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from liccodec.eval.metrics import psnr_from_mse

KODAK_CELL = (1536, 1024)   # each Kodak image upscaled 2x (portrait ones turned landscape)
SEAM_BAND = 8               # half-width in pixels of the bands measured along tile borders


def make_mosaic(kodak_dir: Path, size: tuple[int, int] = (6000, 4000), offset: tuple[int, int] = (1280, 768)
                ) -> Image.Image:
    """A camera-sized test photo from the 24 Kodak images.

    Each image is upscaled 2x with Lanczos (portrait ones rotated to landscape) into a
    1536x1024 cell, the cells are laid out row-major (cycling through the 24 images), and
    a ``size`` window is cut at ``offset``. The default offset keeps the mosaic's own
    edges 256 px away from every multiple of 512, i.e. away from both the 1024-px tile
    borders and the control bands half a tile away from them.
    """
    files = sorted(Path(kodak_dir).glob("kodim*.png"))
    if not files:
        raise FileNotFoundError(f"no kodim*.png under {kodak_dir}")
    cw, ch = KODAK_CELL
    cols = -(-(offset[0] + size[0]) // cw)
    rows = -(-(offset[1] + size[1]) // ch)
    canvas = Image.new("RGB", (cols * cw, rows * ch))
    for k in range(rows * cols):
        with Image.open(files[k % len(files)]) as im:
            im = im.convert("RGB")
            if im.height > im.width:
                im = im.transpose(Image.Transpose.ROTATE_90)
            canvas.paste(im.resize(KODAK_CELL, Image.Resampling.LANCZOS), ((k % cols) * cw, (k // cols) * ch))
    return canvas.crop((offset[0], offset[1], offset[0] + size[0], offset[1] + size[1]))


@dataclass
class ProcessRun:
    command: list[str]
    wall_s: float            # whole process, including Python and torch start-up
    coding_s: float | None   # the time lic itself reports on its summary line
    peak_rss_mib: float
    exit_code: int


def run_measured(args: list[str], env: dict[str, str] | None = None) -> ProcessRun:
    """Run ``lic ARGS`` as a child process; its own peak RSS comes from ``wait4``."""
    cmd = [sys.executable, "-c", "from liccodec.cli.main import run; run()", *args]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    assert proc.stderr is not None
    err = proc.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    m = re.search(r"([\d.]+) s\b", err)
    if proc.returncode:
        raise RuntimeError(f"lic {' '.join(args)} failed ({proc.returncode}): {err.strip()}")
    return ProcessRun(["lic", *args], round(wall, 2), float(m.group(1)) if m else None,
                      round(usage.ru_maxrss / 1024, 1), proc.returncode)


def seam_psnr(ref: np.ndarray, out: np.ndarray, tile: int, band: int = SEAM_BAND, step: int = 64
              ) -> dict[str, object]:
    """PSNR in ``band``-px bands along the inner tile borders, against the same grid of bands
    shifted by every multiple of ``step`` inside a tile (no border there: how much band PSNR
    varies with content alone), against everything off the borders, and overall.

    A seam shows as a border PSNR below the range of the shifted grids.
    """
    h, w = ref.shape[:2]
    err = np.square(ref.astype(np.float32) - out.astype(np.float32)).mean(axis=2)

    def lines(n: int, shift: int) -> np.ndarray:
        near = np.zeros(n, dtype=bool)
        for c in range(shift, n, tile):
            if 0 < c < n:
                near[max(0, c - band):c + band] = True
        return near

    def psnr(mask: np.ndarray) -> float | None:
        if not mask.any():
            return None
        return round(psnr_from_mse(float(err[mask].mean())), 3)

    def grid(shift: int) -> np.ndarray:
        return lines(h, shift)[:, None] | lines(w, shift)[None, :]

    border = grid(tile)
    shifted = [v for v in (psnr(grid(k) & ~border) for k in range(step, tile, step)) if v is not None]
    return {"border": psnr(border), "shifted_min": min(shifted, default=None),
            "shifted_median": float(np.median(shifted)) if shifted else None,
            "shifted_max": max(shifted, default=None), "off_border": psnr(~border),
            "all": psnr(np.ones((h, w), dtype=bool)), "band_px": band, "tile_px": tile}


def compare_tiling(image: np.ndarray, model: str, quality: float, tile: int, precision: str) -> dict[str, object]:
    """Tiled versus whole-image processing of one image, stage by stage."""
    import torch

    from liccodec.codec import quality_milli
    from liccodec.imageio import pad_to_multiple, to_tensor
    from liccodec.nn import transform_precision
    from liccodec.tiling import Geometry, TilePolicy, run_tiled
    from liccodec.weights import get_spec, load_model

    net = load_model(model)
    q = quality_milli(get_spec(model), quality)
    tiled, whole = TilePolicy(0, tile), TilePolicy.never()
    x = pad_to_multiple(to_tensor(image), net.downsampling)
    res: dict[str, object] = {"image": f"{image.shape[1]}x{image.shape[0]}", "tile_px": tile, "precision": precision}
    with torch.inference_mode():
        t0 = time.perf_counter()
        y = net.analysis(x, precision, whole)
        t1 = time.perf_counter()
        y_t = net.analysis(x, precision, tiled)
        t2 = time.perf_counter()
        res["g_a_max_abs_diff"] = (y.float() - y_t.float()).abs().max().item()
        res["y_max_abs"] = y.float().abs().max().item()
        res["g_a_seconds"] = {"whole": round(t1 - t0, 2), "tiled": round(t2 - t1, 2)}
        h_a = net.latent.h_a
        gain, _ = net.latent.gain(net.latent._float_level(q, 1, y.device))
        y_g = (y.float() * gain).to(y.dtype)  # what h_a sees when coding at this quality
        with transform_precision(x.device, precision):
            z = h_a(y_g)
            z_t = run_tiled(h_a, y_g, Geometry.of(h_a), tiled.core(net.y_stride))
        res["h_a_max_abs_diff"] = (z.float() - z_t.float()).abs().max().item()
        streams = net.compress_latent(y, q, precision, whole)
        z_hw = (x.shape[2] // net.downsampling, x.shape[3] // net.downsampling)
        lat = net.latent.decode_latents(streams, z_hw, q)
        lat_t = net.latent.decode_latents(streams, z_hw, q, tiled.core(net.y_stride))
        res["integer_params_identical"] = bool(torch.equal(lat[0], lat_t[0]) and torch.equal(lat[1], lat_t[1]))
        res["same_bytes_tiled_encoder"] = net.compress_latent(y_t, q, precision, tiled) == streams
        t0 = time.perf_counter()
        xh = net.decompress(streams, tuple(x.shape[2:]), q, precision, whole)
        t1 = time.perf_counter()
        xh_t = net.decompress(streams, tuple(x.shape[2:]), q, precision, tiled)
        t2 = time.perf_counter()
        res["g_s_seconds"] = {"whole": round(t1 - t0, 2), "tiled": round(t2 - t1, 2)}
    res["x_hat_max_abs_diff"] = (xh - xh_t).abs().max().item()
    u8 = (xh * 255).round().to(torch.uint8).to(torch.int16)
    u8_t = (xh_t * 255).round().to(torch.uint8).to(torch.int16)
    d = (u8 - u8_t).abs()
    res["uint8_max_diff"] = int(d.max().item())
    res["uint8_differing_fraction"] = float((d > 0).float().mean().item())
    return res


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m liccodec.eval.bigimage", description=__doc__.split("\n\n")[0])
    ap.add_argument("--kodak", type=Path, default=Path("..") / "shared" / "data" / "kodak")
    ap.add_argument("--work", type=Path, default=Path("lic-big"), help="Folder for the test photo and outputs.")
    ap.add_argument("-m", "--model", default="msh.mse")
    ap.add_argument("-q", "--quality", type=float, default=4.0)
    ap.add_argument("--size", default="6000x4000", help="Test photo size WxH.")
    ap.add_argument("--compare-size", default="1536x1024",
                    help="Crop for the tiled/whole comparison (0 to skip); it runs whole, so keep it mid-size.")
    ap.add_argument("--compare-tile", type=int, default=512, help="Tile size for the comparison.")
    ap.add_argument("--precisions", default="fp32,auto", help="Precisions for the comparison.")
    ap.add_argument("--skip-big", action="store_true", help="Only the comparison.")
    ap.add_argument("--json", type=Path, help="Also write all results to this file.")
    a = ap.parse_args(argv)

    from liccodec.tiling import TilePolicy

    results: list[dict[str, object]] = []

    def emit(kind: str, data: dict[str, object]) -> None:
        row = {"step": kind, **data}
        results.append(row)
        print(json.dumps(row), flush=True)

    a.work.mkdir(parents=True, exist_ok=True)
    w, h = (int(v) for v in a.size.lower().split("x"))
    src = a.work / f"mosaic-{w}x{h}.png"
    if not src.exists():
        make_mosaic(a.kodak, (w, h)).save(src, compress_level=1)
    ref = np.asarray(Image.open(src).convert("RGB"))
    emit("image", {"path": str(src), "size": f"{w}x{h}", "megapixels": round(w * h / 1e6, 2),
                   "made_of": "24 Kodak images, each Lanczos-upscaled 2x, tiled 1536x1024, cropped at (1280, 768)"})
    if not a.skip_big:
        policy = TilePolicy.from_env()
        lic, png = a.work / "mosaic.lic", a.work / "mosaic.decoded.png"
        env = dict(os.environ)
        enc = run_measured(["encode", str(src), str(lic), "-m", a.model, "-q", str(a.quality), "--overwrite"], env)
        emit("encode", {**asdict(enc), "bytes": lic.stat().st_size,
                        "bpp": round(8 * lic.stat().st_size / (w * h), 4), "tile_px": policy.tile,
                        "tiled": policy.applies(-(-h // 64) * 64, -(-w // 64) * 64),
                        "precision": os.environ.get("LICCODEC_PRECISION", "auto"),
                        "threads": os.environ.get("OMP_NUM_THREADS", str(os.cpu_count()))})
        dec = run_measured(["decode", str(lic), str(png), "--overwrite"], env)
        emit("decode", asdict(dec))
        out = np.asarray(Image.open(png).convert("RGB"))
        emit("seams", seam_psnr(ref, out, policy.tile))
    if a.compare_size != "0":
        cw, ch = (int(v) for v in a.compare_size.lower().split("x"))
        crop = np.ascontiguousarray(ref[(h - ch) // 2:(h - ch) // 2 + ch, (w - cw) // 2:(w - cw) // 2 + cw])
        for prec in a.precisions.split(","):
            emit("tiled_vs_whole", compare_tiling(crop, a.model, a.quality, a.compare_tile, prec.strip()))
    if a.json:
        a.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
