"""Face-appropriate augmentation on batches of normalised tensors (N, C, S, S).

Small rotations, scale and shift (faces are already aligned crops), horizontal flips
(expressions are near-symmetric), brightness/contrast jitter, and random erasing
(occlusion by hands, glasses). All done on the batch in one ``grid_sample``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def augment(
    x: torch.Tensor,
    rotate_deg: float = 12.0,
    scale: tuple[float, float] = (0.88, 1.12),
    shift: float = 0.08,
    jitter: float = 0.2,
    erase_p: float = 0.25,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    n = x.shape[0]
    g = generator

    def u(lo: float, hi: float) -> torch.Tensor:
        return torch.rand(n, generator=g) * (hi - lo) + lo

    ang = u(-rotate_deg, rotate_deg) * math.pi / 180
    sc = 1.0 / u(*scale)
    flip = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(ang) * sc, torch.sin(ang) * sc
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = cos * flip
    theta[:, 0, 1] = -sin
    theta[:, 1, 0] = sin * flip
    theta[:, 1, 1] = cos
    theta[:, 0, 2] = u(-shift, shift) * 2
    theta[:, 1, 2] = u(-shift, shift) * 2
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # brightness / contrast, in normalised units
    c = u(1 - jitter, 1 + jitter).view(n, 1, 1, 1)
    b = u(-jitter, jitter).view(n, 1, 1, 1)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * c + mean + b
    # random erasing: one rectangle of 4..25 % of the area per selected image
    s = x.shape[-1]
    sel = torch.rand(n, generator=g) < erase_p
    if sel.any():
        area = u(0.04, 0.25) * s * s
        aspect = torch.exp(u(math.log(0.5), math.log(2.0)))
        h = (area * aspect).sqrt().clamp(2, s - 1).long()
        w = (area / aspect).sqrt().clamp(2, s - 1).long()
        for i in torch.nonzero(sel).flatten().tolist():
            y0 = int(torch.randint(0, s - int(h[i]) + 1, (1,), generator=g))
            x0 = int(torch.randint(0, s - int(w[i]) + 1, (1,), generator=g))
            out[i, :, y0 : y0 + h[i], x0 : x0 + w[i]] = torch.randn(1, generator=g) * 0.5
    return out.contiguous(memory_format=torch.channels_last)
