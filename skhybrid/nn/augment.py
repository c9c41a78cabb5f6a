"""Random flips and 90-degree rotations of image batches, on the device, without per-sample loops.

Histology has no canonical orientation, so the eight symmetries of the square (the dihedral
group D4: identity, three rotations, four reflections) are label-preserving. Each sample gets
one of them; samples that share a transform are moved together, so a batch costs at most
eight indexing operations whatever its size.
"""

from __future__ import annotations

import torch

__all__ = ["random_dihedral"]


def _dihedral(x: torch.Tensor, code: int) -> torch.Tensor:
    # bit 2: transpose-like rotation by 90 degrees; bit 0: flip columns; bit 1: flip rows.
    if code & 4:
        x = torch.rot90(x, 1, dims=(1, 2))
    if code & 1:
        x = torch.flip(x, dims=(2,))
    if code & 2:
        x = torch.flip(x, dims=(1,))
    return x


def random_dihedral(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply an independent random D4 symmetry to each image of ``(B, h, w, C)``.

    Parameters
    ----------
    images : Tensor of shape (B, h, w, C)
        Any dtype (uint8 batches are augmented before normalisation) on any device.
    generator : torch.Generator, optional
        CPU generator for the random choices; ``None`` uses torch's global RNG, which the
        estimators seed from ``random_state``.

    Returns
    -------
    Tensor of shape (B, h, w, C)
        A new tensor. Non-square images only get the four flips (rotating them would change
        their shape).
    """
    n_codes = 8 if images.shape[1] == images.shape[2] else 4
    codes = torch.randint(n_codes, (images.shape[0],), generator=generator)
    out = images.clone()
    for code in range(1, n_codes):
        index = torch.nonzero(codes == code).flatten()
        if len(index):
            index = index.to(images.device)
            out[index] = _dihedral(images[index], code)
    return out
