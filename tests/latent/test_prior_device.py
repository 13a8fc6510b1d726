"""The z prior's quantile solver works on the prior's own device.

Session 20's first GPU run died in Trainer.__init__: the bisection's bounds were created on
the CPU while the prior lived on CUDA. The meta device shows the same mix-up without a GPU."""
import torch
from compressai.entropy_models import EntropyBottleneck

from liccodec.latent.hyperprior import prior_quantiles


def test_prior_quantiles_stay_on_the_priors_device():
    eb = EntropyBottleneck(4).to("meta")
    q = prior_quantiles(eb, iters=3)
    assert q.device.type == "meta" and q.shape == (4, 1, 3)


def test_prior_quantiles_bracket_the_median():
    torch.manual_seed(0)
    q = prior_quantiles(EntropyBottleneck(4))
    assert q.dtype == torch.float64
    assert torch.all(q[..., 0] < q[..., 1]) and torch.all(q[..., 1] < q[..., 2])
