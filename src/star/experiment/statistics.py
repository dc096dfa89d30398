"""The statistics a report gives, on paired seeds: mean ± sd, a bootstrap interval of the mean
paired difference (pooled over benchmarks too), the smallest difference the seeds could detect,
and the labels at which a learning curve reaches a target."""

from __future__ import annotations

import torch

BOOTSTRAP = 10_000  # resamples of the seeds for the paired confidence interval


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n − 1; 0 for one value)."""
    t = torch.tensor(values, dtype=torch.float64)
    return t.mean().item(), (t.std().item() if len(values) > 1 else 0.0)


def paired_interval(diffs: list[float], seed: int = 0) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of the mean of paired (same seed) differences."""
    return pooled_interval([diffs], seed)


def pooled_interval(groups: list[list[float]], seed: int = 0) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of the mean over groups (e.g. benchmarks, each
    weighing the same) of each group's mean paired difference, resampling seeds within each
    group: whether a strategy helps on average where each group alone is a tie."""
    g = torch.Generator().manual_seed(seed)
    means = torch.zeros(BOOTSTRAP, dtype=torch.float64)
    for diffs in groups:
        t = torch.tensor(diffs, dtype=torch.float64)
        means += t[torch.randint(len(t), (BOOTSTRAP, len(t)), generator=g)].mean(1)
    means /= len(groups)
    return torch.quantile(means, 0.025).item(), torch.quantile(means, 0.975).item()


def detectable(sd: float, n: int, power: float = 0.8) -> float:
    """The smallest mean difference n paired seeds with differences of spread `sd` would
    detect (a two-sided 95 % test) with probability `power`: (z₀.₉₇₅ + z_power) · sd / √n,
    the normal approximation (with few seeds a t-test needs somewhat more)."""
    z = torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor([0.975, power], dtype=torch.float64))
    return z.sum().item() * sd / n**0.5


def detectable_difference(diffs: list[float]) -> float | None:
    """`detectable` for these paired differences: whether a tie is evidence of no effect or
    only of too few seeds; None for one seed."""
    if len(diffs) < 2:
        return None
    return detectable(torch.tensor(diffs, dtype=torch.float64).std().item(), len(diffs))


def labels_to_reach(n_labeled: list[int], accuracy: list[float], target: float) -> float | None:
    """Labels at which the piecewise-linear learning curve first reaches `target` (the first
    point's labels if it starts there; None if it never does)."""
    if accuracy[0] >= target:
        return float(n_labeled[0])
    for i in range(1, len(accuracy)):
        if accuracy[i] >= target:
            x0, x1, y0, y1 = n_labeled[i - 1], n_labeled[i], accuracy[i - 1], accuracy[i]
            return x0 + (x1 - x0) * (target - y0) / (y1 - y0)
    return None
