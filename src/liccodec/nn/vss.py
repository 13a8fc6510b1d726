"""Visual state space layers: a 2D selective scan (SS2D) in plain PyTorch and the enhanced
visual state space block (EVSS) of ICISP.

Selective scan (Gu & Dao, "Mamba", arXiv 2312.00752): for each channel d and state index n,

    h[t, d, n] = exp(delta[t, d] * A[d]) * h[t-1, d, n] + delta[t, d] * B[t, n] * u[t, d]
    y[t, d] = sum_n C[t, n] * h[t, d, n] + D[d] * u[t, d]

with delta, B and C computed from the input (what makes the scan "selective"), A < 0
stored as log(-A), and D a skip. SS2D (Liu et al., "VMamba", arXiv 2401.10166) flattens an
image four ways (row-major, column-major and both reversed), scans each sequence with its
own parameters and sums the four outputs back on the image grid, so every position sees
the whole image from four sides.

A is diagonal with one rate per channel, shared by the channel's d_state states (A = a_d I;
Mamba-1 has one rate per state, Mamba-2, Dao & Gu arXiv 2405.21060, one per head). That
makes the decay between two positions the same for all states, so a chunk of the scan is a
few matrix products (Mamba-2's "state space duality") instead of elementwise work on a
(channels x states x positions) tensor: about 10 times faster on a CPU for 8 states.

The scan is chunked: the sequence is cut into chunks of ``chunk`` positions. Inside a
chunk every output comes at once from cumulative log-decays S (masked products of C and
B); the state is carried from chunk to chunk by a short loop over chunks, not positions.
The math runs in float32 (or float64) whatever the autocast: bf16 has 8 bits of mantissa
and the cumulative sums would lose the small decays.

Exactness of the chunked form: inside a chunk the weight of input s at position t is
``exp(S[t] - S[s])``, computed as ``exp(S[t] - S[end]) * exp(S[end] - S[s])`` (separable,
hence the matrix products). The second factor is at most 1; the first at most
``exp(-sum of the chunk's log-decays)``, so every step's log-decay is clamped at
``-LOG_DECAY_RANGE / chunk`` (-1.875 for chunks of 32, a decay to 15% in one step) to keep
both factors normal float32 numbers. The clamp is part of the layer's definition (the
reference scan in the tests applies it too).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: the largest total log-decay of one chunk: exp(-60) times an input stays a normal float32
LOG_DECAY_RANGE = 60.0


def min_log_decay(chunk: int) -> float:
    """The clamp applied to every step's log-decay ``delta * A`` (see the module docstring)."""
    return -LOG_DECAY_RANGE / chunk


def _scan_dtype(t: Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def selective_scan(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor,
                   chunk: int = 32) -> Tensor:
    """The selective scan of G independent sequence groups (SS2D's directions), chunked.

    Shapes: ``u`` and ``delta`` (batch, G, channels, L), ``delta`` already positive;
    ``A`` (G, channels), negative (one decay rate per channel, shared by its states);
    ``B`` and ``C`` (batch, G, state, L); ``D`` (G, channels). Returns y (batch, G,
    channels, L) in float32 (float64 for float64 input).
    """
    dt = _scan_dtype(u)
    with torch.autocast(u.device.type, enabled=False):
        u, delta, A, B, C, D = (t.to(dt) for t in (u, delta, A, B, C, D))
        b, g, d, L = u.shape
        n = B.shape[2]
        pad = -L % chunk
        if pad:  # zero delta and zero input: the padded steps change nothing before them
            u, delta = F.pad(u, (0, pad)), F.pad(delta, (0, pad))
            B, C = F.pad(B, (0, pad)), F.pad(C, (0, pad))
        nc = (L + pad) // chunk
        S = (delta * A[None, :, :, None]).clamp(min=min_log_decay(chunk)).view(b, g, d, nc, chunk).cumsum(-1)
        S_end = S[..., -1:]
        x = (delta * u).view(b, g, d, nc, chunk) * torch.exp(S_end - S)  # input, decayed to its chunk's end
        Bc, Cc = B.view(b, g, n, nc, chunk), C.view(b, g, n, nc, chunk)
        # inside a chunk: y[t] = exp(S[t] - S_end) * sum_{s <= t} (C[t] . B[s]) * x[s]
        G = torch.einsum("bgnct,bgncs->bgcts", Cc, Bc).tril()
        y = torch.exp(S - S_end) * torch.einsum("bgcts,bgdcs->bgdct", G, x)
        # the state at each chunk's end from that chunk alone, then carried from chunk to chunk
        local_end = torch.einsum("bgdcs,bgncs->bgcdn", x, Bc)
        decay_end = torch.exp(S_end[..., 0]).permute(0, 1, 3, 2)[..., None]  # (b, g, nc, d, 1)
        carried = [torch.zeros_like(local_end[:, :, 0])]
        for c in range(nc - 1):
            carried.append(decay_end[:, :, c] * carried[-1] + local_end[:, :, c])
        h0 = torch.stack(carried, dim=2)  # (b, g, nc, d, n): the state entering each chunk
        y = y + torch.exp(S) * torch.einsum("bgnct,bgcdn->bgdct", Cc, h0)
        y = y.reshape(b, g, d, nc * chunk)[..., :L]
        return y + D[None, :, :, None] * u[..., :L]


def selective_scan_reference(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor,
                             chunk: int = 32) -> Tensor:
    """The same scan, one position at a time (for tests); ``chunk`` only sets the clamp."""
    decay = torch.exp((delta * A[None, :, :, None]).clamp(min=min_log_decay(chunk)))
    h = u.new_zeros(*u.shape[:3], B.shape[2])
    ys = []
    for t in range(u.shape[-1]):
        h = decay[..., t, None] * h + (delta[..., t] * u[..., t])[..., None] * B[:, :, None, :, t]
        ys.append((h * C[:, :, None, :, t]).sum(-1))
    return torch.stack(ys, dim=-1) + D[None, :, :, None] * u


def _direction(t: Tensor, i: int) -> Tensor:
    """(b, c, H, W) -> (b, c, H*W) in scan order i: 0 row-major, 1 column-major, 2 and 3
    the same reversed."""
    seq = t.flatten(2) if i % 2 == 0 else t.transpose(2, 3).flatten(2)
    return seq.flip(-1) if i >= 2 else seq


def _directions(t: Tensor) -> Tensor:
    """(b, c, H, W) -> (b, 4, c, H*W): the four scan orders of the same map."""
    return torch.stack([_direction(t, i) for i in range(4)], dim=1)


def _merge(y: Tensor, h: int, w: int) -> Tensor:
    """Inverse of :func:`_directions`, summed: (b, 4, c, H*W) -> (b, c, H, W)."""
    b, _, c, _ = y.shape
    rows = y[:, 0] + y[:, 2].flip(-1)
    cols = y[:, 1] + y[:, 3].flip(-1)
    return rows.view(b, c, h, w) + cols.view(b, c, w, h).transpose(2, 3)


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of each position of an NCHW tensor."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class SS2D(nn.Module):
    """Four-direction selective scan of a (b, E, H, W) map (VMamba's SS2D core).

    delta, B and C are projected from the input at every position. The projections are
    pointwise, so they are applied once on the image and then read in each direction's
    order, which equals projecting each flattened sequence (as VMamba does) at a quarter of
    the cost. Each direction has its own projections, A, D and delta bias.
    """

    DIRECTIONS = 4

    def __init__(self, channels: int, d_state: int = 8, dt_rank: int | None = None, chunk: int = 32,
                 dt_min: float = 1e-3, dt_max: float = 0.1):
        super().__init__()
        k, e = self.DIRECTIONS, channels
        self.d_state, self.chunk = d_state, chunk
        self.dt_rank = dt_rank or math.ceil(channels / 16)
        r = self.dt_rank
        self.x_proj = nn.Conv2d(e, k * (r + 2 * d_state), 1, bias=False)
        self.dt_proj = nn.Conv2d(k * r, k * e, 1, groups=k, bias=False)
        nn.init.uniform_(self.dt_proj.weight, -r ** -0.5, r ** -0.5)
        # delta = softplus(. + bias) starts log-uniform in [dt_min, dt_max] (Mamba's init)
        dt = torch.exp(torch.rand(k, e) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        # one decay rate per channel, -A uniform in [1, 16] (Mamba-2's init), kept as log(-A)
        self.A_log = nn.Parameter(torch.empty(k, e).uniform_(1, 16).log())
        self.D = nn.Parameter(torch.ones(k, e))

    def forward(self, x: Tensor) -> Tensor:
        b, e, h, w = x.shape
        k, r, n = self.DIRECTIONS, self.dt_rank, self.d_state
        proj = self.x_proj(x).view(b, k, r + 2 * n, h, w)
        dts, Bs, Cs = proj.split([r, n, n], dim=2)
        dts = self.dt_proj(dts.reshape(b, k * r, h, w)).view(b, k, e, h, w)
        # direction i reads its own projections (group i) in its own order
        seq = lambda t: torch.stack([_direction(t[:, i], i) for i in range(k)], dim=1)  # noqa: E731
        u = _directions(x)
        dt_f = torch.float64 if x.dtype == torch.float64 else torch.float32
        delta = F.softplus(seq(dts).to(dt_f) + self.dt_bias[None, :, :, None].to(dt_f))
        A = -torch.exp(self.A_log.to(dt_f))
        y = selective_scan(u, delta, A, seq(Bs), seq(Cs), self.D, self.chunk)
        return _merge(y, h, w)


class EVSS(nn.Module):
    """Enhanced visual state space block (ICISP, Wei et al. 2025), a zero-start residual::

        x -> LayerNorm -> 1x1 -> [v, z]
             v -> dw3x3, SiLU -> s -> SS2D(s) + local(s) -> LayerNorm -> * SiLU(z) -> 1x1 -> r
        out = x + r,   local = dw3x3 -> SiLU -> dw3x3 (the local enhancement)

    The last 1x1 starts at zero, so a new block is the identity.
    """

    def __init__(self, channels: int, d_state: int = 8, expand: float = 1.0, chunk: int = 32):
        super().__init__()
        c, e = channels, max(1, round(expand * channels))
        self.norm = LayerNorm2d(c)
        self.inp = nn.Conv2d(c, 2 * e, 1)
        self.conv = nn.Conv2d(e, e, 3, padding=1, groups=e)
        self.ssm = SS2D(e, d_state, chunk=chunk)
        self.local = nn.Sequential(nn.Conv2d(e, e, 3, padding=1, groups=e), nn.SiLU(),
                                   nn.Conv2d(e, e, 3, padding=1, groups=e))
        self.out_norm = LayerNorm2d(e)
        self.out = nn.Conv2d(e, c, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        v, z = self.inp(self.norm(x)).chunk(2, dim=1)
        s = F.silu(self.conv(v))
        g = self.ssm(s)
        r = self.out_norm((g + self.local(s)).to(x.dtype)) * F.silu(z)
        return x + self.out(r.to(x.dtype))
