"""RD curves: our results files (CompressAI's JSON layout) and loaders for published anchors.

A results file looks like CompressAI's ``results/image/kodak/*.json``, so either project's tools
read the other's files::

    {
      "name": "WebP",
      "description": "libwebp 1.6.0 via Pillow 13.0.0, method=6 ...",
      "results": {"bpp": [...], "psnr-rgb": [...], "ms-ssim-rgb": [...],
                  "encoding_time": [...], "decoding_time": [...]},   # one entry per setting
      "meta": {...},        # ours: codec, versions, options, settings, threads, machine, run
      "per_image": {"kodim01": {"bpp": [...], "psnr-rgb": [...], ...}, ...}   # ours
    }

Values in ``results`` are means over the images; times are seconds per image. Missing values are
``null`` (a metric the image was too small for; never NaN, which is not JSON).

Anchor formats read by :func:`load_curves`:

* CompressAI layout, including its ``paper-*.json`` files that give ``ms-ssim-db-rgb`` instead of
  ``ms-ssim-rgb`` (converted back to the linear value);
* DCAE's ``RD_data.json``: ``{"Kodak": {"bpp", "PSNR"}, "Kodak_MS-SSIM": {"bpp", "MS_SSIM"(dB)}, ...}``;
  the MS-SSIM entry comes from other (MS-SSIM-trained) models, so it becomes a second curve;
* MLIC's ``*_mse.json``: ``{"psnr": [...], "bpp": [...]}``;
* TCM's ``RD_data.md``: ``# Large`` / ``## Kodak`` sections holding ``PSNR = [...]`` and
  ``Bitrate = [...]``.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from liccodec.eval.metrics import ms_ssim_db, ms_ssim_from_db

#: Keys of ``results`` in CompressAI's layout, in the order we write them.
RESULT_KEYS = ("bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time")

#: Perceptual distances ``lic eval --metric`` adds (``liccodec.perceptual``); lower is better.
PERCEPTUAL_KEYS = ("lpips-alex", "lpips-vgg", "dists")

Series = list[float | None]


@dataclass
class RDCurve:
    """One codec's rate-distortion points (one per setting), plus where they came from."""

    name: str
    bpp: list[float]
    psnr: Series | None = None
    ms_ssim: Series | None = None
    encoding_time: Series | None = None
    decoding_time: Series | None = None
    description: str = ""
    #: ``"measured"`` (by ``lic eval``) or ``"anchor"`` (published numbers).
    source: str = "measured"
    #: ``"learned"`` or ``"classical"`` (plot styling); unknown for most anchors.
    kind: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    #: image name -> {result key -> one value per setting}
    per_image: dict[str, dict[str, Series]] = field(default_factory=dict)
    #: Where it was read from, if it was.
    path: Path | None = None
    #: perceptual distances by key (:data:`PERCEPTUAL_KEYS`), when they were measured
    extra: dict[str, Series] = field(default_factory=dict)

    def metric(self, key: str) -> Series | None:
        """A series by its CompressAI key (``psnr-rgb``, ``ms-ssim-rgb``, ``ms-ssim-db``, ...)."""
        if key == "bpp":
            return list(self.bpp)
        if key == "psnr-rgb":
            return self.psnr
        if key == "ms-ssim-rgb":
            return self.ms_ssim
        if key in ("ms-ssim-db", "ms-ssim-db-rgb"):
            if self.ms_ssim is None:
                return None
            return [None if v is None else ms_ssim_db(v) for v in self.ms_ssim]
        if key == "encoding_time":
            return self.encoding_time
        if key == "decoding_time":
            return self.decoding_time
        if key in PERCEPTUAL_KEYS:
            return self.extra.get(key)
        raise KeyError(key)

    def points(self, key: str) -> tuple[list[float], list[float]]:
        """(bpp, value) pairs of a metric, leaving out points where either is missing."""
        values = self.metric(key)
        if values is None:
            return [], []
        pairs = [(r, v) for r, v in zip(self.bpp, values)
                 if r is not None and v is not None and math.isfinite(r) and math.isfinite(v)]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    def has(self, key: str) -> bool:
        return len(self.points(key)[0]) >= 2

    # ---- JSON ------------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        results: dict[str, Series] = {"bpp": list(self.bpp)}
        for key, series in (("psnr-rgb", self.psnr), ("ms-ssim-rgb", self.ms_ssim),
                            ("encoding_time", self.encoding_time), ("decoding_time", self.decoding_time)):
            if series is not None:
                results[key] = list(series)
        results.update({k: list(v) for k, v in self.extra.items()})
        doc: dict[str, Any] = {"name": self.name, "description": self.description,
                               "results": _json_safe(results)}
        meta = dict(self.meta)
        meta.setdefault("source", self.source)
        if self.kind:
            meta.setdefault("kind", self.kind)
        doc["meta"] = _json_safe(meta)
        if self.per_image:
            doc["per_image"] = _json_safe(self.per_image)
        return doc

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2, allow_nan=False) + "\n")
        return path

    @classmethod
    def from_json(cls, doc: dict[str, Any], path: Path | None = None,
                  source: str | None = None) -> RDCurve:
        """Read CompressAI's layout (ours is a superset)."""
        res = doc["results"]
        ms = res.get("ms-ssim-rgb")
        if ms is None and "ms-ssim-db-rgb" in res:
            ms = [None if v is None else ms_ssim_from_db(v) for v in res["ms-ssim-db-rgb"]]
        meta = dict(doc.get("meta") or {})
        src = source or ("measured" if meta.get("source") == "measured" else "anchor")
        return cls(name=str(doc.get("name") or (path.stem if path else "?")),
                   bpp=_floats(res["bpp"]), psnr=_opt_floats(res.get("psnr-rgb")),
                   ms_ssim=_opt_floats(ms), encoding_time=_opt_floats(res.get("encoding_time")),
                   decoding_time=_opt_floats(res.get("decoding_time")),
                   description=str(doc.get("description") or ""), source=src,
                   kind=str(meta.get("kind") or ""), meta=meta,
                   per_image=doc.get("per_image") or {}, path=path,
                   extra={k: _opt_floats(res[k]) for k in PERCEPTUAL_KEYS if k in res})


def _floats(values: Iterable[Any]) -> list[float]:
    return [float(v) for v in values]


def _opt_floats(values: Iterable[Any] | None) -> Series | None:
    if values is None:
        return None
    return [None if v is None else float(v) for v in values]


def _json_safe(obj: Any) -> Any:
    """Replace NaN/inf by None (JSON has neither) and tuples by lists, recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


# ---- loaders for every format ----------------------------------------------------------------------

def load_curve(path: str | Path) -> RDCurve:
    """Read one CompressAI-layout file (ours or a published one)."""
    path = Path(path)
    return RDCurve.from_json(json.loads(path.read_text()), path=path)


def _load_dcae(path: Path, dataset: str) -> list[RDCurve]:
    doc = json.loads(path.read_text())
    out = []
    if dataset in doc:
        d = doc[dataset]
        out.append(RDCurve("DCAE", _floats(d["bpp"]), psnr=_floats(d["PSNR"]), source="anchor",
                           kind="learned", description="DCAE (Lu et al., CVPR 2025), published RD data",
                           meta={"source": "anchor", "opt_metric": "mse"}, path=path))
    key = f"{dataset}_MS-SSIM"
    if key in doc:
        d = doc[key]
        out.append(RDCurve("DCAE (MS-SSIM)", _floats(d["bpp"]),
                           ms_ssim=[ms_ssim_from_db(v) for v in d["MS_SSIM"]], source="anchor",
                           kind="learned", description="DCAE trained for MS-SSIM, published RD data",
                           meta={"source": "anchor", "opt_metric": "ms-ssim"}, path=path))
    return out


_MLIC_NAMES = {"mlic": "MLIC", "mlicplus": "MLIC+", "mlicplusplus": "MLIC++"}


def _load_mlic(path: Path) -> RDCurve:
    doc = json.loads(path.read_text())
    m = re.search(r"_(mlic\w*?)_mse$", path.stem)
    name = _MLIC_NAMES.get(m.group(1), m.group(1)) if m else path.stem
    return RDCurve(name, _floats(doc["bpp"]), psnr=_floats(doc["psnr"]), source="anchor",
                   kind="learned", description=f"{name} (Jiang et al.), published RD data",
                   meta={"source": "anchor", "opt_metric": "mse"}, path=path)


def parse_tcm_markdown(text: str, dataset: str = "Kodak") -> dict[str, tuple[list[float], list[float]]]:
    """TCM's ``RD_data.md``: ``{size: (bpp, psnr)}`` for one dataset (sizes: Large, Middle, Small)."""
    out: dict[str, tuple[list[float], list[float]]] = {}
    size: str | None = None
    section: str | None = None
    psnr: list[float] | None = None
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("## "):
            section, psnr = s[3:].strip(), None
        elif s.startswith("# "):
            size, section, psnr = s[2:].strip(), None, None
        elif section == dataset and size and "=" in s:
            key, _, rhs = s.partition("=")
            values = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", rhs)]
            if key.strip().lower() == "psnr":
                psnr = values
            elif key.strip().lower() in ("bitrate", "bpp") and psnr is not None:
                out[size] = (values, psnr)
    return out


def _load_tcm(path: Path, dataset: str) -> list[RDCurve]:
    return [RDCurve(f"TCM-{size}", bpp, psnr=psnr, source="anchor", kind="learned",
                    description=f"TCM {size} (Liu et al., CVPR 2023), published RD data",
                    meta={"source": "anchor", "opt_metric": "mse"}, path=path)
            for size, (bpp, psnr) in parse_tcm_markdown(path.read_text(), dataset).items()]


def load_curves(path: str | Path, dataset: str = "Kodak") -> list[RDCurve]:
    """Every curve in one file of any known format (``[]`` for files that hold none)."""
    path = Path(path)
    if path.suffix == ".md":
        return _load_tcm(path, dataset) if "TCM" in path.name else []
    if path.suffix != ".json":
        return []
    doc = json.loads(path.read_text())
    if isinstance(doc, dict) and "results" in doc:
        return [RDCurve.from_json(doc, path=path)]
    if isinstance(doc, dict) and dataset in doc and isinstance(doc[dataset], dict):
        return _load_dcae(path, dataset)
    if isinstance(doc, dict) and {"psnr", "bpp"} <= doc.keys():
        return [_load_mlic(path)]
    return []


def load_dir(folder: str | Path, dataset: str = "Kodak", recursive: bool = False) -> dict[str, RDCurve]:
    """All curves in a folder, keyed by file stem (plus ``:name`` when a file holds several)."""
    folder = Path(folder)
    files = sorted(folder.rglob("*") if recursive else folder.glob("*"))
    out: dict[str, RDCurve] = {}
    for f in files:
        if not f.is_file():
            continue
        curves = load_curves(f, dataset)
        rel = f.relative_to(folder).with_suffix("").as_posix()
        for c in curves:
            out[rel if len(curves) == 1 else f"{rel}:{c.name}"] = c
    return out


# ---- the published anchors we show ----------------------------------------------------------------

#: (display name, file under the anchors folder, curve name inside it or None). Ordered for the legend.
DEFAULT_ANCHORS: Sequence[tuple[str, str, str | None]] = (
    ("VTM (VVC intra)", "compressai_kodak/vtm.json", None),
    ("BPG 4:4:4", "compressai_kodak/bpg_444_x265_ycbcr.json", None),
    ("DCAE", "sota_rd/DCAE_RD_data.json", "DCAE"),
    ("TCM-L", "sota_rd/LIC_TCM_RD_data.md", "TCM-Large"),
    ("MLIC++", "sota_rd/MLIC_kodak_mlicplusplus_mse.json", None),
    ("ELIC", "compressai_kodak/paper-elic2022_mse.json", None),
    ("mbt2018-mean", "compressai_kodak/compressai-mbt2018-mean_mse_cpu.json", None),
)

#: The anchor every report compares against.
VTM_KEY = "VTM (VVC intra)"


def load_anchors(anchors_dir: str | Path,
                 wanted: Sequence[tuple[str, str, str | None]] = DEFAULT_ANCHORS) -> dict[str, RDCurve]:
    """The published curves we plot and compare against, renamed for display. Missing files are
    left out silently (the caller reports which anchors it has)."""
    root = Path(anchors_dir)
    out: dict[str, RDCurve] = {}
    for display, rel, inner in wanted:
        f = root / rel
        if not f.is_file():
            continue
        curves = load_curves(f)
        pick = [c for c in curves if inner is None or c.name == inner]
        if pick:
            c = pick[0]
            c.name, c.source = display, "anchor"
            out[display] = c
    return out
