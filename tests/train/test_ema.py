"""The EMA's decay warms up, so a short run's average forgets the weights it started from."""
import math

from liccodec.train.config import TrainConfig


def test_the_decay_warms_up_to_the_recipes():
    cfg = TrainConfig(ema=0.999)
    assert cfg.ema_at(0) == 0.1 and cfg.ema_at(90) == 0.91
    assert cfg.ema_at(8991) == 0.999 and cfg.ema_at(10**6) == 0.999
    assert all(cfg.ema_at(t) <= cfg.ema_at(t + 1) for t in range(10_000))


def test_a_short_run_forgets_its_start():
    """What is left of the starting weights in the average after n steps: the product of the
    decays. A constant 0.999 keeps 13.5% after 2,000 steps; the warm-up keeps almost nothing."""
    cfg = TrainConfig(ema=0.999)
    left = math.prod(cfg.ema_at(t) for t in range(2000))
    assert left < 1e-20 and 0.999**2000 > 0.13
