"""The markdown report ``lic eval`` writes: how it was run, on what, and what came out.

Sections: the command line; machine and library versions; each codec's exact options and
settings (and the codecs skipped, with why); BD-rate matrices for PSNR and MS-SSIM (every
measured codec against every other and against the published VTM and BPG anchors); published
anchors against VTM for orientation; a speed table; our coder against CompressAI's on the
same weights (when measured); the points of every curve.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from liccodec.eval.bdrate import bd_rate
from liccodec.eval.results import VTM_KEY, RDCurve

#: Anchors that get a column in the BD-rate matrices.
MATRIX_ANCHORS = (VTM_KEY, "BPG 4:4:4")

METRICS = (("psnr-rgb", "PSNR-RGB"), ("ms-ssim-db", "MS-SSIM-RGB (dB)"))
#: Perceptual distances (lower is better), reported when measured: key, title
PERCEPTUAL = (("lpips-alex", "LPIPS (AlexNet)"), ("lpips-vgg", "LPIPS (VGG16)"), ("dists", "DISTS"))


@dataclass
class ReportInput:
    """Everything the report is made of."""

    command: str
    measured: list[RDCurve]
    anchors: dict[str, RDCurve]
    skipped: dict[str, str] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)
    images_dir: str = ""
    image_count: int = 0
    elapsed_s: float | None = None
    plot_path: Path | None = None
    perceptual_plot_path: Path | None = None
    threads: int = 1
    anchors_dir: str | None = None
    #: ``--limit`` when given: published anchors cover the whole dataset, this run did not.
    limit: int | None = None
    #: model id -> rows of ``liccodec.eval.reference.compare`` (our coder vs CompressAI's)
    reference: dict[str, list[Any]] = field(default_factory=dict)


def _fmt(v: float | None, digits: int = 2, signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(header) - 1)
    sep = ["---:" if a == "r" else ":---" if a == "l" else ":---:" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def bd_matrix(tests: Sequence[RDCurve], refs: Sequence[RDCurve], key: str,
              lower_is_better: bool = False) -> list[list[float | None]]:
    """BD-rate (%) of each test curve (rows) against each reference (columns) on metric ``key``
    (a distance such as LPIPS is negated first, so quality still rises with rate)."""
    sign = -1.0 if lower_is_better else 1.0
    out = []
    for t in tests:
        row: list[float | None] = []
        for r in refs:
            if t is r or not (t.has(key) and r.has(key)):
                row.append(None)
                continue
            rb, rv = r.points(key)
            tb, tv = t.points(key)
            row.append(bd_rate(rb, [sign * v for v in rv], tb, [sign * v for v in tv]))
        out.append(row)
    return out


def _same_run(c: RDCurve, run_id: str | None) -> bool:
    return run_id is None or c.meta.get("run", {}).get("id") == run_id


def _mean_of(series: Sequence[float | None] | None) -> float | None:
    vals = [v for v in (series or []) if v is not None]
    return sum(vals) / len(vals) if vals else None


def _megapixels(c: RDCurve) -> float | None:
    mps = c.meta.get("images", {}).get("megapixels")
    return sum(mps) / len(mps) if mps else None


def render(inp: ReportInput, report_path: Path) -> str:
    """The report as markdown (links are relative to ``report_path``'s folder)."""
    run_id = inp.run.get("id")
    out: list[str] = []
    out.append(f"# liccodec evaluation: {Path(inp.images_dir).name or inp.images_dir}\n")
    out.append("Produced by:\n\n```sh\n" + inp.command + "\n```\n")
    took = f", took {inp.elapsed_s / 60:.1f} min" if inp.elapsed_s is not None else ""
    out.append(f"Run `{run_id}` started {inp.run.get('started', '?')}{took}; "
               f"{inp.image_count} images from `{inp.images_dir}`. All rates are whole files "
               "(headers included); PSNR and MS-SSIM are on 8-bit RGB and averaged over the "
               "images per setting.\n")
    if inp.limit is not None and inp.anchors:
        out.append(f"> Only the first {inp.image_count} images were used (`--limit`), while the "
                   "published anchors cover the whole set: comparisons with anchors are "
                   "indicative only.\n")
    if inp.plot_path:
        rel = os.path.relpath(inp.plot_path, report_path.parent)
        out.append(f"![Rate-distortion curves]({Path(rel).as_posix()})\n")
        out.append("Solid thick: liccodec models. Solid thin: classical codecs measured in this "
                   "run. Dashed: published results (not re-measured).\n")
    if inp.perceptual_plot_path:
        rel = os.path.relpath(inp.perceptual_plot_path, report_path.parent)
        out.append(f"![Perceptual distances against rate]({Path(rel).as_posix()})\n")

    # ---- machine and versions
    m = inp.machine
    out.append("## Machine and libraries\n")
    la = m.get("load_average")
    out.append(_table(["", ""], [
        ["CPU", str(m.get("cpu", "?"))],
        ["cores (usable / logical)", f"{m.get('usable_cores', '?')} / {m.get('logical_cpus', '?')}"],
        ["memory", f"{m.get('memory_gib', '?')} GiB"],
        ["OS", str(m.get("os", "?"))],
        ["Python", str(m.get("python", "?"))],
        *([["numpy's BLAS", str(m["blas"])]] if m.get("blas") else []),
        ["threads per codec", str(inp.threads)],
        ["load average at start (1/5/15 min)", " / ".join(f"{x:.2f}" for x in la) if la else "?"],
        *([["load average at end", " / ".join(f"{x:.2f}" for x in m["load_average_end"])]]
          if m.get("load_average_end") else []),
    ], align="ll") + "\n")
    if la and la[0] > 0.5 * (m.get("usable_cores") or 1):
        out.append("> Other processes were busy when this ran (see the load average): absolute "
                   "times are pessimistic. Every codec below was timed under the same load in "
                   "this one run, so their ratios hold.\n")
    out.append(_table(["library", "version"], [[k, v] for k, v in inp.versions.items()], align="ll")
               + "\n")

    # ---- codecs
    out.append("## Codecs and settings\n")
    rows = []
    for c in inp.measured:
        mm = c.meta
        settings = ", ".join(f"{s:g}" for s in mm.get("settings", []))
        rows.append([f"`{mm.get('codec', c.name)}`", mm.get("version", ""), mm.get("options", ""),
                     f"{mm.get('setting_name', 'setting')}: {settings}", str(mm.get("threads", "?"))])
    out.append(_table(["codec", "versions", "options", "settings", "threads"], rows, align="lllll")
               + "\n")
    if inp.skipped:
        out.append("Skipped:\n\n" + "\n".join(f"- `{k}`: {v}" for k, v in inp.skipped.items()) + "\n")
    reused = [c for c in inp.measured if not _same_run(c, run_id)]
    if reused:
        out.append("Reused from earlier runs (marked † below; their times come from another run "
                   "and may not compare): " + ", ".join(f"`{c.meta.get('codec', c.name)}` "
                                                       f"(run `{c.meta.get('run', {}).get('id', '?')}`)"
                                                       for c in reused) + "\n")

    def label(c: RDCurve) -> str:
        return c.name + ("†" if not _same_run(c, run_id) else "")

    # ---- BD-rate
    refs_anchor = [inp.anchors[k] for k in MATRIX_ANCHORS if k in inp.anchors]
    for key, title, lower in [(k, t, False) for k, t in METRICS] + [(k, t, True) for k, t in PERCEPTUAL]:
        tests = [c for c in inp.measured if c.has(key)]
        if not tests:
            continue
        refs = tests + [a for a in refs_anchor if a.has(key)]
        mat = bd_matrix(tests, refs, key, lower)
        out.append(f"## BD-rate, {title}\n")
        out.append("Percent more (+) or fewer (−) bits than the column's codec for the same "
                   f"{title}: PCHIP interpolation of log-rate over the quality range both curves "
                   "cover (– where they share none). Columns after the measured codecs are "
                   "published anchors.\n")
        if lower:
            out.append(f"{title} is a distance (lower is better; `liccodec.perceptual`), "
                       "interpolated as its negative.\n")
        header = ["test \\ reference"] + [r.name for r in refs]
        rows = [[f"**{label(t)}**"] + [_fmt(v, 1, signed=True) for v in row]
                for t, row in zip(tests, mat)]
        out.append(_table(header, rows) + "\n")

    # ---- anchors vs VTM
    vtm = inp.anchors.get(VTM_KEY)
    if vtm is not None and len(inp.anchors) > 1:
        out.append(f"## Published anchors against {VTM_KEY}\n")
        out.append("For orientation, from published numbers only (nothing re-measured).\n")
        rows = []
        for a in inp.anchors.values():
            if a is vtm:
                continue
            cells = [_fmt(bd_matrix([a], [vtm], k)[0][0], 1, signed=True) for k, _ in METRICS]
            src = a.path.name if a.path else ""
            rows.append([a.name, *cells, f"`{src}`"])
        out.append(_table(["anchor", "BD-rate PSNR-RGB", "BD-rate MS-SSIM (dB)", "file"], rows,
                          align="lrrl") + "\n")
        if inp.anchors_dir:
            out.append(f"Anchors read from `{inp.anchors_dir}`.\n")

    # ---- speed
    out.append("## Speed\n")
    out.append("Seconds per image and megapixels per second, averaged over all settings and "
               "images; encoding from an in-memory RGB image to bytes, decoding from bytes until "
               "the RGB pixels are in memory. One process, one image at a time.\n")
    rows = []
    for c in inp.measured:
        enc, dec, mp = _mean_of(c.encoding_time), _mean_of(c.decoding_time), _megapixels(c)
        rows.append([label(c), _fmt(enc, 4), _fmt(dec, 4),
                     _fmt(mp / enc if mp and enc else None, 2), _fmt(mp / dec if mp and dec else None, 2),
                     str(c.meta.get("threads", "?"))])
    out.append(_table(["codec", "encode s/image", "decode s/image", "encode MP/s", "decode MP/s",
                       "threads"], rows) + "\n")

    # ---- our coder against CompressAI's
    for mid, ref_rows in inp.reference.items():
        out.append(f"## `{mid}` through liccodec and through CompressAI\n")
        out.append("The same weights coded two ways on the same images, in this run: liccodec "
                   "(`liccodec.encode`/`decode`, whole .lic files: header, CRC-32, integer "
                   "hyper-synthesis, constriction rANS) and CompressAI's own "
                   "`MeanScaleHyperprior.compress()`/`decompress()` (float hyper-synthesis, its "
                   "C++ rANS; bytes are its strings, no container). The gains of our variable-rate "
                   "model are folded into the neighbouring layers at integer qualities "
                   "(`liccodec.eval.reference`). Times are seconds per image.\n")
        rows = [[f"{r.quality}", _fmt(r.lic_bpp, 4), _fmt(r.cai_bpp, 4), _fmt(r.size_diff_pct, 2, signed=True),
                 _fmt(r.lic_psnr, 2), _fmt(r.cai_psnr, 2), _fmt(r.lic_encode_s, 3), _fmt(r.cai_encode_s, 3),
                 _fmt(r.lic_decode_s, 3), _fmt(r.cai_decode_s, 3)] for r in ref_rows]
        out.append(_table(["quality", "bpp liccodec", "bpp CompressAI", "size diff %", "PSNR liccodec",
                           "PSNR CompressAI", "enc s liccodec", "enc s CompressAI", "dec s liccodec",
                           "dec s CompressAI"], rows) + "\n")

    # ---- points
    out.append("## Points\n")
    for c in inp.measured:
        mm = c.meta
        out.append(f"<details><summary>{label(c)}</summary>\n")
        rows = []
        ms_db = c.metric("ms-ssim-db") or [None] * len(c.bpp)
        perceptual = [(k, t) for k, t in PERCEPTUAL if c.metric(k) is not None]
        for i, s in enumerate(mm.get("settings", [None] * len(c.bpp))):
            def at(series: Sequence[float | None] | None) -> float | None:
                return series[i] if series is not None and i < len(series) else None
            rows.append([f"{s:g}" if s is not None else "?", _fmt(at(c.bpp), 4), _fmt(at(c.psnr), 2),
                         _fmt(at(c.ms_ssim), 4), _fmt(at(ms_db), 2),
                         *[_fmt(at(c.metric(k)), 4) for k, _ in perceptual],
                         _fmt(at(c.encoding_time), 4), _fmt(at(c.decoding_time), 4)])
        out.append(_table([mm.get("setting_name", "setting"), "bpp", "PSNR-RGB", "MS-SSIM",
                           "MS-SSIM dB", *[t for _, t in perceptual], "enc s", "dec s"], rows)
                   + "\n\n</details>\n")
    return "\n".join(out).rstrip() + "\n"


def write_report(inp: ReportInput, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(inp, path))
    return path
