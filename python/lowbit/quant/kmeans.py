"""KMeans in plain torch, seeded and deterministic: k-means++ initialisation (Arthur &
Vassilvitskii 2007) from a torch.Generator, then Lloyd iterations until no label changes.

RPTQ clusters the (min, max) points of activation channels with it (lowbit.quant.rptq); the
points are few (hundreds to a few thousand) and 2-D, so float64 and full distance matrices are
cheap and avoid any tie decided by float32 noise.
"""
from __future__ import annotations

import torch


def _sqdist(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    return ((x[:, None, :] - c[None, :, :]) ** 2).sum(-1)


@torch.no_grad()
def kmeans(points: torch.Tensor, k: int, seed: int = 0, iters: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster points [n, d] into min(k, #distinct points) clusters.

    Returns (labels int64 [n], centers float64 [k', d]). Clusters are renumbered in increasing
    order of their centers (lexicographic over the coordinates) so the result does not depend on
    the order the initialisation happened to pick them in; the same points and seed always give
    the same labels. Empty clusters (possible after a Lloyd step) are re-seeded with the point
    farthest from its center."""
    if not isinstance(points, torch.Tensor) or points.dim() != 2 or points.shape[0] == 0:
        raise ValueError(f"points: expected a non-empty [n, d] tensor, got "
                         f"{tuple(points.shape) if isinstance(points, torch.Tensor) else type(points).__name__}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k: expected a positive int, got {k!r}")
    x = points.detach().double().cpu()
    n = x.shape[0]
    k = min(k, torch.unique(x, dim=0).shape[0])  # never more clusters than distinct points
    g = torch.Generator().manual_seed(seed)
    # k-means++: the first center uniformly, each next one with probability ~ D(x)^2
    centers = [x[int(torch.randint(n, (1,), generator=g))]]
    d2 = _sqdist(x, centers[0][None]).squeeze(1)
    for _ in range(1, k):
        if float(d2.sum()) > 0:
            i = int(torch.multinomial(d2 / d2.sum(), 1, generator=g))
        else:  # cannot happen with k <= #distinct, kept as a guard
            i = int(torch.randint(n, (1,), generator=g))
        centers.append(x[i])
        d2 = torch.minimum(d2, _sqdist(x, x[i][None]).squeeze(1))
    c = torch.stack(centers)
    labels = torch.full((n,), -1, dtype=torch.long)
    for _ in range(iters):
        new = _sqdist(x, c).argmin(1)
        if torch.equal(new, labels):
            break
        labels = new
        for j in range(k):
            members = labels == j
            if members.any():
                c[j] = x[members].mean(0)
            else:  # re-seed an empty cluster with the worst-served point
                far = int(_sqdist(x, c).gather(1, labels[:, None]).squeeze(1).argmax())
                c[j] = x[far]
                labels[far] = j
    # canonical numbering: by center, lexicographically
    order = sorted(range(k), key=lambda j: tuple(c[j].tolist()))
    rank = torch.empty(k, dtype=torch.long)
    rank[torch.tensor(order)] = torch.arange(k)
    return rank[labels], c[torch.tensor(order)]
