"""The exploration behind liccodec.refine (docs/refine.md): refine charm.mse's latent for one
Kodak image at given qualities with several relaxations of rounding, and report real files.

    python docs/refine/explore.py kodim01 5 sga:50:0.05,ste:20:0.01,noise:50:0.02

Each configuration is mode:steps:lr, mode one of ste (straight-through rounding for rate and
synthesis), sga (stochastic Gumbel annealing, Yang et al. 2020) or noise (the training
forward: uniform noise for the rate, straight-through for the synthesis). Prints one JSON
line per run: real bpp and PSNR of the coded file, seconds of refinement. This is the
session-23 script as run; the product's version is liccodec.refine (lr 0.05, SGA).
"""
import json, math, sys, time
import numpy as np, torch
from PIL import Image
import liccodec
from liccodec.train.distill import load_teacher
from liccodec.latent.hyperprior import gaussian_likelihood
from liccodec.nn import ste_round
from liccodec.codec import Analysis, encode_analysis, get_spec
from liccodec.imageio import open_image, split
torch.set_num_threads(2)

model, _ = load_teacher("models/charm.mse.safetensors")
lat = model.latent

def soft(v, mode, tau):
    if mode == "ste":
        return ste_round(v)
    # SGA (Yang et al. 2020): floor/ceil by a Gumbel-softmax on atanh distances
    f = torch.floor(v); r = (v - f).clamp(1e-4, 1 - 1e-4)
    la = -torch.atanh(r) / tau; lb = -torch.atanh(1 - r) / tau
    g = -torch.log(-torch.log(torch.rand_like(v).clamp(1e-9, 1)))  # gumbel
    g2 = -torch.log(-torch.log(torch.rand_like(v).clamp(1e-9, 1)))
    w = torch.sigmoid((lb + g2 - la - g))  # prob of ceil, relaxed
    return f + w

def rd(y, x, level, mode="ste", tau=0.5):
    if mode == "noise":
        lat.train()
        out = lat(y, level)
        lat.eval()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            x_hat = model.g_s(out.y_hat.contiguous(memory_format=torch.channels_last))
        bits = sum(-torch.log2(l.float()).sum() for l in out.likelihoods.values())
        return bits / (x.shape[2] * x.shape[3]), ((x_hat.float() - x) ** 2).mean()
    g, ig = lat.gain(level); hg, ihg = lat.hyper_gain(level)
    y_g = y * g
    z_g = (lat.h_a(y_g) * hg).float()
    med = lat.z_medians()
    z_t = soft(z_g - med, mode, tau) + med
    eb = lat.entropy_bottleneck
    C = z_t.shape[1]
    vals = z_t.permute(1, 0, 2, 3).reshape(C, 1, -1)
    zl, _, _ = eb._likelihood(vals)
    zl = eb.likelihood_lower_bound(zl)
    scales, means = lat.h_s(z_t * ihg).chunk(2, dim=1)
    liks, yh, fm = [], [], []
    for i in range(lat.slices):
        s, m = lat._part(scales, i), lat._part(means, i)
        d_s, d_m = lat._correct(i, torch.cat([s, m, *yh], dim=1)).chunk(2, dim=1)
        m = m.float() + d_m.float(); s = s.float() + d_s.float()
        v = lat._part(y_g, i).float()
        yt = soft(v - m, mode, tau) + m
        liks.append(gaussian_likelihood(yt, s, m)); yh.append(yt); fm.append(m)
    y_hat = torch.cat(yh, 1)
    if lat.lrp is not None:
        y_hat = lat.lrp(torch.cat([*fm, y_hat], 1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x_hat = model.g_s((y_hat * ig).contiguous(memory_format=torch.channels_last))
    npx = x.shape[2] * x.shape[3]
    bits = -torch.log2(torch.cat([l.flatten() for l in liks])).sum() - torch.log2(zl).sum()
    mse = ((x_hat.float() - x) ** 2).mean()
    return bits / npx, mse

def refine(x, q, iters, lr, mode, y0):
    level = torch.tensor([q - 1.0])
    lam = model.lambda_at(level)
    y = y0.clone().requires_grad_(True)
    opt = torch.optim.Adam([y], lr=lr)
    for t in range(iters):
        tau = 0.5 * math.exp(-3 * t / max(iters, 1)) if mode == "sga" else 0
        # cosine lr decay
        for gr in opt.param_groups: gr["lr"] = lr * 0.5 * (1 + math.cos(math.pi * t / iters))
        bpp, mse = rd(y, x, level, mode, tau)
        loss = bpp + lam * 255 ** 2 * mse
        opt.zero_grad(); loss.backward(); opt.step()
    return y.detach()

def real(planes, spec, y, q, xorig):
    enc = encode_analysis(Analysis(planes, spec, y.numpy().astype(np.float32), None), int(q * 1000))
    out = np.asarray(liccodec.decode(enc.data).convert("RGB"), dtype=np.float64)
    mse = ((out - xorig) ** 2).mean()
    w, h = planes.size
    return len(enc.data) * 8 / (w * h), 10 * math.log10(255 ** 2 / mse)

if __name__ == "__main__":
    from liccodec.codec import analyse
    imgs = sys.argv[1].split(","); qs = [float(v) for v in sys.argv[2].split(",")]
    configs = [c.split(":") for c in sys.argv[3].split(",")]  # mode:iters:lr
    spec = get_spec("charm.mse")
    for name in imgs:
        path = f"../shared/data/kodak/{name}.png"
        planes = split(open_image(path))
        a = analyse(planes, "charm.mse")
        xorig = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
        H, W = a.y.shape[-2] * 16, a.y.shape[-1] * 16
        x = torch.from_numpy(xorig / 255).permute(2, 0, 1)[None].float()
        x = torch.nn.functional.pad(x, (0, W - x.shape[3], 0, H - x.shape[2]), mode="replicate")
        y0 = torch.from_numpy(np.asarray(a.y, dtype=np.float32))
        for q in qs:
            b0, p0 = real(planes, spec, y0, q, xorig)
            print(json.dumps(dict(img=name, q=q, mode="base", bpp=b0, psnr=p0)), flush=True)
            for mode, iters, lr in configs:
                t0 = time.time()
                y = refine(x, q, int(iters), float(lr), mode, y0)
                dt = time.time() - t0
                b, p = real(planes, spec, y, q, xorig)
                print(json.dumps(dict(img=name, q=q, mode=mode, iters=int(iters), lr=float(lr), bpp=b, psnr=p, s=round(dt, 1))), flush=True)
