"""TinyViT's MLPs computed over chunks of tokens.

The same function as the package's Mlp (LayerNorm, fc1, GELU, fc2), which acts
on each token alone. Layer 1's MLP expands 16384 tokens to 512 channels, a
34 MB hidden map that an engine writes, packs for fc2 and reads back, far
beyond the caches. Run over chunks of at most CHUNK_TOKENS tokens and joined,
each chunk's hidden map stays in cache.
"""

import math

import torch
from torch import nn

from striped_convs import bands

CHUNK_TOKENS = 4096


class ChunkedMlp(nn.Module):
    def __init__(self, mlp, chunks: int):
        super().__init__()
        self.mlp = mlp
        self.chunks = chunks

    def forward(self, x):  # x [B, L, C]
        return torch.cat([self.mlp(x[:, a:b]) for a, b in bands(int(x.shape[1]), self.chunks)], dim=1)


def chunk_mlps(encoder: nn.Module) -> int:
    """Replaces, in place, the MLP of every TinyViT block with more than
    CHUNK_TOKENS tokens; returns how many."""
    replaced = 0
    for layer in encoder.layers:
        for block in getattr(layer, "blocks", []):
            mlp = getattr(block, "mlp", None)
            resolution = getattr(block, "input_resolution", None)
            if mlp is None or resolution is None:
                continue
            chunks = math.ceil(resolution[0] * resolution[1] / CHUNK_TOKENS)
            if chunks > 1:
                block.mlp = ChunkedMlp(mlp, chunks)
                replaced += 1
    return replaced
