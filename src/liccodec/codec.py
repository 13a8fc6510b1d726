"""Image <-> .lic bytes with a shipped model. The functions behind ``lic encode/decode``.

Both directions run in numpy (``liccodec.runtime``: the decoder, and the encoder of
``liccodec.runtime.encoder``) for every architecture it supports, so that neither ``lic
encode`` nor ``lic decode`` waits for torch to import; the other architectures run their
torch models. :func:`_encoder` and :func:`decode_rgb` are where that is chosen.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from liccodec.container import (CAPTION_STREAM, QMAP_MAJOR, QMAP_STREAM, RESIDUAL_MAJORS, RESIDUAL_STREAM,
                                RESIDUAL_TOP_MAJOR, Header, QualityMap, pack, unpack)
from liccodec.container import caption as _caption
from liccodec.container.varint import decode as read_varint, encode as write_varint
from liccodec.errors import FormatError, ModelError, UsageError
from liccodec.imageio import (Planes, merge, open_image, pack_alpha, pad_to_multiple, split, to_padded_array,
                              to_tensor, to_uint8, unpack_alpha)
from liccodec.roi import QualityRequest, base_quality
from liccodec.weights import DEFAULT_MODEL, WeightSpec, get_spec, load_model, read_manifest

if TYPE_CHECKING:
    import torch


def precision() -> str:
    """Float precision of the transforms: $LICCODEC_PRECISION (auto, fp32, bf16); default auto.

    auto = bf16 where the CPU has native bf16 (AVX512-BF16/AMX) or on CUDA, else fp32. It
    changes reconstructed pixels by far less than one code value on average, and never
    the coded bits' meaning: the latents decode identically either way.
    """
    import os

    return os.environ.get("LICCODEC_PRECISION", "auto")


def list_models() -> list[WeightSpec]:
    """Shipped weight sets whose architecture is registered (``arch.tag``)."""
    from liccodec.models import list_archs

    archs = set(list_archs())
    return [s for s in read_manifest().values() if s.arch in archs]


def quality_top(spec: WeightSpec) -> float:
    """The highest quality ``spec`` codes: its top level plus the residual layer's range
    (``liccodec.residual``). Above :func:`residual_from` a file is format 5.x."""
    from liccodec.residual import EXTRA

    return spec.quality_max + EXTRA


def quality_bottom(spec: WeightSpec) -> float:
    """The lowest quality ``spec`` codes: ``fixedpoint.BELOW`` levels under its lowest, its
    gains extrapolated from its two lowest levels (a model with one level: its level)."""
    from liccodec.fixedpoint import BELOW

    return spec.quality_min - BELOW if spec.quality_max > spec.quality_min else spec.quality_min


def residual_from(spec: WeightSpec) -> float:
    """The quality above which ``spec``'s files add a residual layer (``liccodec.residual``,
    format 5.0) over latents coded at this quality: the manifest's ``quality.residual_from``,
    else the top level. charm.mse's is 7, one level below its top, where its level 8 buys
    less than the layer does (docs/residual.md)."""
    return spec.quality_max if spec.residual_from is None else spec.residual_from


def base_milli(spec: WeightSpec, q: int) -> int:
    """The quality (thousandths) at which the encoder codes the latents of a file of quality
    ``q``: ``q`` up to :func:`residual_from`, that quality above it. A format 5.0 file records
    it in its residual stream (:func:`residual_base`), so the decoder does not derive it."""
    return min(q, round(residual_from(spec) * 1000))


def residual_parts(major: int, stream: bytes) -> tuple[int | None, bytes]:
    """(the latents' quality in thousandths, the ``liccodec.residual`` stream) of the
    ``residual`` stream of a file of format ``major``: 5.0 writes the first as a varint before
    the second; a 4.0 file (session 29) has no such prefix (None: its latents are at the top
    level). Unchecked against the model (:func:`residual_base`)."""
    if major == RESIDUAL_TOP_MAJOR:
        return None, stream
    base, pos = read_varint(stream, 0, "residual stream")
    return base, stream[pos:]


def residual_base(spec: WeightSpec, header: Header, stream: bytes) -> tuple[int, bytes]:
    """:func:`residual_parts`, checked: a 5.0 file's base must lie in the model's range and
    below the file's quality; a 4.0 file's is the top level."""
    lo, top = round(quality_bottom(spec) * 1000), round(spec.quality_max * 1000)
    base, layer = residual_parts(header.major, stream)
    if base is None:
        return top, layer
    if not lo <= base <= min(top, header.quality - 1):
        raise FormatError(f"residual layer over quality {base / 1000:g}: outside {spec.id}'s range "
                          f"[{lo / 1000:g}, {top / 1000:g}] or not below the file's quality {header.quality / 1000:g}")
    return base, layer


def quality_milli(spec: WeightSpec, quality: float | None, extended: bool = True) -> int:
    """``quality`` (None: the model's default) in thousandths, checked against the model's
    range: from :func:`quality_bottom` to :func:`quality_top`, or only its trained levels
    unless ``extended`` (a quality that varies across the image)."""
    q = spec.quality_default if quality is None else float(quality)
    lo, hi = (quality_bottom(spec), quality_top(spec)) if extended else (spec.quality_min, spec.quality_max)
    if not (lo <= q <= hi) or not np.isfinite(q):
        raise UsageError(f"quality {q} is outside {spec.id}'s range [{lo:g}, {hi:g}]"
                         + ("" if extended else " (outside its trained levels a quality is one for the "
                            "whole image)"))
    return int(round(q * 1000))


@dataclass
class Encoded:
    data: bytes
    header: Header
    planes: Planes
    qmap: QualityMap | None = None    # the quality per position of y, when not uniform
    caption: str | None = None        # the description the file carries (stream "caption")


def _encoder(spec: WeightSpec):
    """What encodes with ``spec``'s weights: the numpy encoder for the architectures it runs
    (``liccodec.runtime.SUPPORTED``; no torch import), else the torch model (also for a
    feedback encoder, which the numpy encoder does not run)."""
    from liccodec import runtime

    if spec.arch in runtime.SUPPORTED and not spec.config.get("feedback"):
        from liccodec.runtime.encoder import load_encoder

        return load_encoder(spec.id)
    return load_model(spec.id)


def _numpy(net) -> bool:
    from liccodec.runtime import ExactModel

    return isinstance(net, ExactModel)


def _analysis(net, rgb: np.ndarray):
    """y = g_a of the padded image: a numpy array (numpy encoder) or a tensor (torch model)."""
    if _numpy(net):
        return net.analysis(to_padded_array(rgb, net.downsampling))
    import torch

    with torch.inference_mode():
        return net.analysis(pad_to_multiple(to_tensor(rgb), net.downsampling), precision())


def _streams(net, rgb: np.ndarray, y, q: int, qmap: QualityMap | None, feedback: bool = True) -> dict[str, bytes]:
    """The coded streams of the image ``rgb``, whose analysis is y, at quality ``q`` (the base
    quality of ``qmap``, when given); a feedback encoder's correction first, unless not
    ``feedback`` (y refined instead)."""
    milli = None if qmap is None else qmap.milli()
    if _numpy(net):
        return net.compress_latent(y, q, qmap=milli)
    import torch

    with torch.inference_mode():
        if net.g_f is not None and feedback:
            if qmap is not None:
                raise UsageError("a feedback encoder codes one quality for the whole image; it does not "
                                 "combine with a quality that varies across it (--roi, --quality-map)")
            y = net.feedback_latent(pad_to_multiple(to_tensor(rgb), net.downsampling), y, q, precision())
        return net.compress_latent(y, q, precision(), qmap=milli)


def _refined(spec: WeightSpec, rgb: np.ndarray, y, q: int, steps: int,
             progress: Callable[[int, int], None] | None):
    """y after ``steps`` steps of ``liccodec.refine`` at quality ``q``, of y's own type."""
    import torch

    from liccodec import refine

    model = refine.load_refiner(spec)
    y_t = torch.as_tensor(np.asarray(y, dtype=np.float32)) if isinstance(y, np.ndarray) else y.float()
    total = refine.total_steps(tuple(y_t.shape[-2:]), steps, model.latent.downsampling)
    with torch.enable_grad():
        out = refine.refine_latent(model, to_tensor(rgb), y_t, q, steps,
                                   progress=None if progress is None else lambda n: progress(n, total))
    return out.numpy().astype(y.dtype) if isinstance(y, np.ndarray) else out.to(y.dtype)


def _latent_map(net, region: QualityRequest | None) -> tuple[QualityMap | None, int | None]:
    """(quality map, None), or (None, the quality) when the request is uniform on y's grid."""
    if region is None:
        return None, None
    if not (net.spatial_quality if _numpy(net) else net.latent.spatial_quality):
        raise UsageError(f"{type(net).__name__} models cannot vary the quality across the image "
                         "(--roi, --quality-map): their latent codec has no per-position gains")
    milli = region.latent_qualities(net.y_stride, net.downsampling)
    qmap = QualityMap.of(milli)
    return qmap, (int(milli.flat[0]) if qmap is None else None)


def check_caption(caption: str | None) -> str | None:
    """A caption for a file (None or "" = none), or ``UsageError`` saying what is wrong with it."""
    if not caption:
        return None
    try:
        return _caption.check(caption)
    except ValueError as e:
        raise UsageError(f"--caption: {e}") from None


def encode_planes(planes: Planes, model: str = DEFAULT_MODEL, quality: float | None = None,
                  region: QualityRequest | None = None, caption: str | None = None, refine: int = 0,
                  progress: Callable[[int, int], None] | None = None) -> Encoded:
    """Code ``planes`` at ``quality``, or at the qualities ``region`` asks for (``liccodec.roi``,
    which then replaces ``quality``). ``caption``, a one-line description (docs/format.md,
    "Caption"), goes into the file; a ``selic`` model's decoder conditions on it, the
    encoder never reads it, so the coded latents are the same with or without one.

    ``refine``: steps of encoder-side latent refinement (``liccodec.refine``; 0 = none): a
    slower encode, the same decoder. ``progress(done, total)`` follows its steps."""
    caption = check_caption(caption)
    spec = get_spec(model)
    q = quality_milli(spec, quality)
    net = _encoder(spec)
    qmap, uniform = _latent_map(net, region)
    q = uniform if uniform is not None else q if qmap is None else base_quality(qmap)
    y = _analysis(net, planes.rgb)
    base = base_milli(spec, q) if qmap is None else q
    if refine:
        if qmap is not None:
            raise UsageError("refinement codes one quality for the whole image; it does not combine "
                             "with a quality that varies across it (--roi, --quality-map)")
        y = _refined(spec, planes.rgb, y, base, refine, progress)
    streams = _streams(net, planes.rgb, y, base, qmap, feedback=not refine)
    enc = _finish(spec, planes, base, streams, pack_alpha(planes.alpha) if planes.alpha is not None else None,
                  qmap, caption)
    return _with_residual(spec, enc, q)


def _with_residual(spec: WeightSpec, enc: Encoded, q: int) -> Encoded:
    """``enc`` (its latents coded at ``base_milli(spec, q)``) with the residual layer of
    quality ``q`` added when ``q`` is above :func:`residual_from` (``liccodec.residual``;
    format 5.0); else ``enc``, and always a file with a quality map (its qualities are the
    model's own levels: docs/roi.md)."""
    base = base_milli(spec, q)
    if q <= base or enc.qmap is not None:
        return enc
    from liccodec import residual

    header, streams = unpack(enc.data)
    _, x_hat, _ = decode_rgb(enc.data)
    step = residual.step_for(q, base)
    streams[RESIDUAL_STREAM] = write_varint(base) + residual.encode(enc.planes.rgb, x_hat, step)
    header.quality = q  # a 5.0 file's quality field is the quality asked for
    return Encoded(pack(header, streams), header, enc.planes, enc.qmap, enc.caption)


def _finish(spec: WeightSpec, planes: Planes, q: int, streams: dict[str, bytes], alpha: bytes | None,
            qmap: QualityMap | None, caption: str | None = None) -> Encoded:
    if alpha is not None:
        streams["alpha"] = alpha
    if qmap is not None:
        streams[QMAP_STREAM] = qmap.to_bytes()
    if caption:
        streams[CAPTION_STREAM] = _caption.to_bytes(caption)
    w, h = planes.size
    header = Header(spec.id, spec.digest, w, h, planes.mode, planes.bit_depth, q)
    return Encoded(pack(header, streams), header, planes, qmap, caption or None)


def with_caption(data: bytes, caption: str | None) -> bytes:
    """The .lic file ``data`` with its caption replaced by ``caption`` (None: removed). The
    coded latents do not depend on the caption, so this is the file an encode with that
    caption writes (``lic caption-bench`` decodes right, wrong and no captions with it)."""
    header, streams = unpack(data)
    streams = {k: v for k, v in streams.items() if k != CAPTION_STREAM}
    caption = check_caption(caption)
    if caption:
        streams[CAPTION_STREAM] = _caption.to_bytes(caption)
    return pack(header, streams)


def read_caption(header: Header, streams: dict[str, bytes]) -> str | None:
    """The caption of an unpacked file, or None; ``FormatError`` when it breaks the rules."""
    data = streams.get(CAPTION_STREAM)
    return None if data is None else _caption.from_bytes(data)


@dataclass
class Analysis:
    """An image after the analysis transform: everything about it that does not depend on quality.

    The gained hyperprior applies quality only after ``g_a`` (it scales ``y`` by the gain
    vectors of the requested level), so one analysis can be coded at any number of
    qualities; each :func:`encode_analysis` is a complete, real encode (the exact bytes
    :func:`encode_planes` writes at that quality) for the price of the entropy coding alone.
    """

    planes: Planes
    spec: WeightSpec
    y: "np.ndarray | torch.Tensor"  # g_a of the padded image (tiled when big): numpy for the
                                    # architectures the numpy encoder runs, else a tensor
    alpha: bytes | None           # the packed alpha stream, quality-independent

    @property
    def pixels(self) -> int:
        w, h = self.planes.size
        return w * h


def analyse(planes: Planes, model: str = DEFAULT_MODEL) -> Analysis:
    """Run the analysis transform once (the expensive, quality-independent half of encoding)."""
    spec = get_spec(model)
    y = _analysis(_encoder(spec), planes.rgb)
    alpha = pack_alpha(planes.alpha) if planes.alpha is not None else None
    return Analysis(planes, spec, y, alpha)


def encode_analysis(analysis: Analysis, q_milli: int, region: QualityRequest | None = None,
                    caption: str | None = None) -> Encoded:
    """Code an :class:`Analysis` at quality ``q_milli`` (thousandths) into a complete .lic file;
    ``region`` (``liccodec.roi``) replaces ``q_milli`` and ``caption`` goes in as in
    :func:`encode_planes`."""
    caption = check_caption(caption)
    spec = analysis.spec
    quality_milli(spec, q_milli / 1000)  # the range check
    net = _encoder(spec)
    qmap, uniform = _latent_map(net, region)
    q = uniform if uniform is not None else int(q_milli) if qmap is None else base_quality(qmap)
    base = base_milli(spec, q) if qmap is None else q
    streams = _streams(net, analysis.planes.rgb, analysis.y, base, qmap)
    return _with_residual(spec, _finish(spec, analysis.planes, base, streams, analysis.alpha, qmap, caption), q)


def encode(image: str | Path | bytes | Image.Image, model: str = DEFAULT_MODEL,
           quality: float | None = None, first_frame: bool = False, *,
           roi: str | Path | bytes | Image.Image | np.ndarray | None = None, roi_background: float | None = None,
           quality_map: str | Path | bytes | Image.Image | np.ndarray | None = None,
           quality_range: tuple[float, float] | None = None, caption: str | None = None,
           refine: int = 0) -> bytes:
    """Encode an image (path, encoded bytes or Pillow image) into .lic bytes.

    An image file with several frames (animated GIF, multi-page TIFF) is refused with
    ``InputImageError`` unless ``first_frame`` (then frame 1 alone is coded).

    Region-of-interest coding (docs/roi.md): ``roi``, a mask of the image's size (an image
    like ``image`` takes, or a 2-d bool/uint8 array), codes its white part (>= 128) at
    ``quality`` and the rest at ``roi_background`` (default: the model's lowest quality);
    ``quality_map``, a grey image of the image's size, sets the quality linearly from
    ``quality_range[0]`` at black to ``quality_range[1]`` at white (default: the model's
    range). Mistakes in them (size, range, both given) raise ``UsageError``.

    ``caption``: a one-line description carried in the file (at most 1024 bytes of UTF-8, no
    control characters; docs/format.md, "Caption"). Any model's file can hold one; a
    ``selic`` model's decoder uses it (docs/models/selic.md).

    ``refine``: steps of encoder-side latent refinement (docs/refine.md; 0 = none, 50 is a
    good trade): a smaller file for the same quality, for an encode that runs the model's
    synthesis forward and backward once a step (seconds per megapixel per step).
    """
    from liccodec.roi import request

    planes = split(open_image(image, first_frame))
    region = request(get_spec(model), planes.size, quality, roi, roi_background, quality_map, quality_range)
    return encode_planes(planes, model, quality if region is None else None, region, caption, refine).data


def _spec_for(header: Header) -> WeightSpec:
    spec = read_manifest().get(header.model_id)
    if spec is None:
        raise ModelError(f"this file needs model {header.model_id!r}, which is not installed")
    if spec.digest != header.digest:
        raise ModelError(f"this file was written with other weights for {header.model_id} "
                         f"(digest {header.digest.hex()}, installed {spec.digest.hex()})")
    return spec


def decode_rgb(data: bytes) -> tuple[Header, np.ndarray, np.ndarray | None]:
    """Decode to (header, uint8 RGB plane, alpha plane or None).

    Hostile files are rejected in the order of docs/format.md ("Security"): the container,
    the model and the quality field, the alpha plane (its inflation is bounded by the
    declared size), then the latents, whose stream must be long enough for the declared size
    before anything of that size is allocated. Every rejection is a ``LicError``.
    """
    from liccodec import runtime

    header, streams = unpack(data)
    spec = _spec_for(header)
    net = runtime.load_decoder(spec.id) if spec.arch in runtime.SUPPORTED else load_model(spec.id)
    lo, top = round(quality_bottom(spec) * 1000), round(spec.quality_max * 1000)
    layered = header.major in RESIDUAL_MAJORS
    if layered:  # the latents' quality is the residual stream's (residual_base)
        hi = round(quality_top(spec) * 1000)
        if not (top if header.major == RESIDUAL_TOP_MAJOR else lo) < header.quality <= hi:
            raise FormatError(f"quality field {header.quality / 1000:g} of a {header.major}.x file is outside "
                              f"{spec.id}'s residual range (up to {quality_top(spec):g})")
        q_latent, layer = residual_base(spec, header, streams[RESIDUAL_STREAM])
    elif not lo <= header.quality <= top:
        raise FormatError(f"quality field {header.quality / 1000:g} is outside {spec.id}'s range "
                          f"[{quality_bottom(spec):g}, {spec.quality_max:g}]")
    else:
        q_latent = header.quality
    alpha = unpack_alpha(streams["alpha"], header.width, header.height) if header.mode.has_alpha else None
    ds = net.downsampling
    hp, wp = -(-header.height // ds) * ds, -(-header.width // ds) * ds
    qmap = _read_qmap(header, streams, spec, net, (hp, wp))
    caption = read_caption(header, streams)
    if isinstance(net, runtime.Decoder):
        rgb = net.decode(streams, (hp, wp), q_latent, qmap=qmap)[: header.height, : header.width]
    else:  # an architecture the numpy decoder does not run
        import torch

        with torch.inference_mode():
            more = {"caption": caption} if getattr(net, "uses_caption", False) else {}
            x_hat = net.decompress(streams, (hp, wp), q_latent, precision(), qmap=qmap, **more)
        rgb = to_uint8(x_hat[:, :, : header.height, : header.width])
    if layered:
        from liccodec import residual

        rgb = residual.decode(layer, rgb)
    return header, rgb, alpha


def _read_qmap(header: Header, streams: dict[str, bytes], spec: WeightSpec, net, hw: tuple[int, int]
               ) -> np.ndarray | None:
    """The quality of each position of y of a file with a quality map (format 3.x), else None.
    Bounded by the header's size (at most a byte per 16x16 pixels), checked before the latents."""
    if header.major != QMAP_MAJOR:
        return None
    from liccodec import runtime

    if not isinstance(net, runtime.Decoder) and not net.latent.spatial_quality:
        raise FormatError(f"this file has a quality map, which {spec.arch} models cannot decode")
    qmap = QualityMap.from_bytes(streams[QMAP_STREAM], (hw[0] // net.y_stride, hw[1] // net.y_stride))
    lo, hi = round(spec.quality_min * 1000), round(spec.quality_max * 1000)
    if not lo <= qmap.qualities[0] <= qmap.qualities[-1] <= hi:
        raise FormatError(f"quality map qualities {qmap.qualities[0] / 1000:g}..{qmap.qualities[-1] / 1000:g} "
                          f"are outside {spec.id}'s range [{spec.quality_min:g}, {spec.quality_max:g}]")
    return qmap.milli()


def decode(data: bytes | str | Path) -> Image.Image:
    """Decode a .lic file (its bytes, or a path like :func:`encode` takes) into a Pillow image
    of the original size and mode.

    Images over ``imageio.max_pixels()`` (``$LICCODEC_MAX_PIXELS``) are refused with
    ``UsageError`` before decoding, as the encoder refuses them.
    """
    from liccodec.container import read_header
    from liccodec.imageio import check_pixels

    if isinstance(data, (str, Path)):
        try:
            data = Path(data).read_bytes()
        except FileNotFoundError:
            raise UsageError(f"no such file: {data}") from None
        except IsADirectoryError:
            raise UsageError(f"{data} is a folder") from None
    data = bytes(data)
    h = read_header(data)
    check_pixels(h.width, h.height, "this file's image", UsageError)
    header, rgb, alpha = decode_rgb(data)
    return merge(rgb, alpha, header.mode, header.bit_depth)
