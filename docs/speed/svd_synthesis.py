# Training-free look: how much of charm.mse's synthesis survives a low-rank factorization of one
# transposed convolution (g_s's 2nd or 3rd, truncated SVD, the rank on either side of the 5x5
# kernel), as the change of PSNR on fixed latents (kodim01, 08, 15, 23 at qualities 2 and 5; the
# encoder, the bits and every other layer unchanged). docs/speed.md, "Session 25".
# Run from the repository root: python docs/speed/svd_synthesis.py 128,96,64,32
import sys, copy, math, torch, numpy as np
from PIL import Image
from liccodec.train.distill import load_teacher
torch.set_num_threads(1)
m, _ = load_teacher("models/charm.mse.safetensors"); m.eval()
imgs = ["kodim01", "kodim08", "kodim15", "kodim23"]
levels = [2.0, 5.0]
cap = {}
h = m.g_s.register_forward_pre_hook(lambda mod, a: cap.__setitem__("y", a[0].detach()))
data = []
with torch.no_grad():
    for name in imgs:
        x = torch.from_numpy(np.asarray(Image.open(f"../shared/data/kodak/{name}.png").convert("RGB"))).permute(2, 0, 1)[None].float() / 255
        for q in levels:
            out = m(x, torch.tensor([q]))
            data.append((name, q, x, cap["y"].clone()))
h.remove()

def psnr(a, b):
    return -10 * math.log10(((a.clamp(0, 1) - b) ** 2).mean().item())

def factor(conv, r, side):
    W = conv.weight.data  # (Ci, Co, k, k)
    Ci, Co, k, _ = W.shape
    if side == "out":   # 1x1 Ci->r at the input, then ConvT r->Co
        M = W.reshape(Ci, Co * k * k)
        U, S, Vh = torch.linalg.svd(M, full_matrices=False)
        B = U[:, :r] * S[:r]           # (Ci, r)
        A = Vh[:r].reshape(r, Co, k, k)
        c1 = torch.nn.Conv2d(Ci, r, 1, bias=False); c1.weight.data = B.t().reshape(r, Ci, 1, 1).contiguous()
        c2 = torch.nn.ConvTranspose2d(r, Co, k, conv.stride, conv.padding, conv.output_padding)
        c2.weight.data = A.contiguous(); c2.bias.data = conv.bias.data.clone()
        cost = Ci * r / 4 + r * Co * k * k / 4
    else:               # ConvT Ci->r, then 1x1 r->Co
        M = W.permute(0, 2, 3, 1).reshape(Ci * k * k, Co)
        U, S, Vh = torch.linalg.svd(M, full_matrices=False)
        A = (U[:, :r] * S[:r]).reshape(Ci, k, k, r).permute(0, 3, 1, 2)  # (Ci, r, k, k)
        B = Vh[:r]                      # (r, Co)
        c1 = torch.nn.ConvTranspose2d(Ci, r, k, conv.stride, conv.padding, conv.output_padding, bias=False)
        c1.weight.data = A.contiguous()
        c2 = torch.nn.Conv2d(r, Co, 1); c2.weight.data = B.t().reshape(Co, r, 1, 1).contiguous(); c2.bias.data = conv.bias.data.clone()
        cost = Ci * r * k * k / 4 + r * Co
    full = Ci * Co * k * k / 4
    return torch.nn.Sequential(c1, c2), cost / full

def run(gs):
    res = {}
    with torch.no_grad():
        for name, q, x, y in data:
            res.setdefault(q, []).append(psnr(gs(y), x))
    return {q: np.mean(v) for q, v in res.items()}

base = run(m.g_s)
print("base", {q: round(v, 3) for q, v in base.items()}, flush=True)
RANKS = [int(a) for a in sys.argv[1].split(",")]
for idx in [2, 4]:
    for side in ["out", "in"]:
        for r in RANKS:
            gs = copy.deepcopy(m.g_s)
            gs[idx], frac = factor(m.g_s[idx], r, side)
            p = run(gs)
            print(f"g_s[{idx}] (transposed conv {idx // 2 + 1} of 4), rank on the {side}put side, r {r}: multiply-adds x{frac:.2f}, PSNR change", {q: round(p[q] - base[q], 3) for q in p}, flush=True)
