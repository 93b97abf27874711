"""TinyViT's full-resolution convolutions computed in horizontal stripes.

The same function as the package's PatchEmbed, MBConv and PatchMerging. The
patch embedding's 32-channel 512x512 map, layer 0's 256-channel 256x256
hidden maps and its downsampling's 128-channel 256x256 one are 34-67 MB each, and an engine holds a conv's input, output and the
packed copy of its input at once: at full size these convolutions set the
encoder's peak memory, and each op streams a whole map through memory before
the next starts. Every op in them is pointwise or a 3x3 window, so a band of
output rows needs only a band of input rows plus a 1-row halo per 3x3 conv:
run band by band and joined, no full-size intermediate exists and a band
stays in cache from op to op. The halo rows are computed twice (3% more work
at 8 bands), and zero padding is applied only at the image's top and bottom
edges, explicitly, where the following conv absorbs it.
"""

import torch
import torch.nn.functional as F
from torch import nn


def bands(rows: int, count: int) -> list[tuple[int, int]]:
    """Splits 0..rows into `count` contiguous [start, end) bands, as even as possible."""
    edges = [round(i * rows / count) for i in range(count + 1)]
    return list(zip(edges[:-1], edges[1:]))


def conv3x3_band(x, conv: nn.Conv2d, start: int, end: int, rows: int, stride: int):
    """Output rows [start, end) of a 3x3, padding-1 conv whose full output has
    `rows` rows, from `x` holding input rows [stride*start - 1, ...) clipped at 0."""
    top = 1 if start == 0 else 0
    bottom = 1 if end == rows and stride == 1 else 0
    return F.conv2d(F.pad(x, (1, 1, top, bottom)), conv.weight, conv.bias,
                    stride=stride, groups=conv.groups)


class StripedPatchEmbed(nn.Module):
    """conv 3x3/2, GELU, conv 3x3/2 (both with their batch norms folded)."""

    def __init__(self, patch_embed, stripes: int):
        super().__init__()
        first, self.act, second = patch_embed.seq
        self.first, self.second = first.fuse(), second.fuse()
        self.stripes = stripes

    def forward(self, x):
        rows = int(x.shape[2]) // 4
        out = []
        for a, b in bands(rows, self.stripes):
            # Rows of the first conv's output needed, then of the image.
            r0, r1 = max(2 * a - 1, 0), 2 * b
            image = x[:, :, max(2 * r0 - 1, 0):2 * r1]
            mid = self.act(conv3x3_band(image, self.first, r0, r1, 2 * rows, 2))
            out.append(conv3x3_band(mid, self.second, a, b, rows, 2))
        return torch.cat(out, dim=2)


class StripedMBConv(nn.Module):
    """1x1 expand, GELU, 3x3 depthwise, GELU, 1x1 project, residual add, GELU."""

    def __init__(self, block, stripes: int):
        super().__init__()
        self.expand, self.depthwise, self.project = (
            block.conv1.fuse(), block.conv2.fuse(), block.conv3.fuse())
        self.act1, self.act2, self.act3 = block.act1, block.act2, block.act3
        self.stripes = stripes

    def forward(self, x):
        rows = int(x.shape[2])
        out = []
        for a, b in bands(rows, self.stripes):
            lo, hi = max(a - 1, 0), min(b + 1, rows)
            hidden = self.act1(self.expand(x[:, :, lo:hi]))
            hidden = self.act2(conv3x3_band(hidden, self.depthwise, a, b, rows, 1))
            out.append(self.act3(self.project(hidden) + x[:, :, a:b]))
        return torch.cat(out, dim=2)


class StripedPatchMerging(nn.Module):
    """1x1 expand, GELU, 3x3/2 depthwise, GELU, 1x1, then the map as tokens:
    the downsampling after the MBConv layer, whose expanded map is 128
    channels at 256x256 (34 MB)."""

    def __init__(self, merging, stripes: int):
        super().__init__()
        self.expand, self.depthwise, self.project = (
            merging.conv1.fuse(), merging.conv2.fuse(), merging.conv3.fuse())
        self.act = merging.act
        self.stripes = stripes

    def forward(self, x):
        rows = int(x.shape[2]) // 2
        out = []
        for a, b in bands(rows, self.stripes):
            hidden = self.act(self.expand(x[:, :, max(2 * a - 1, 0):2 * b]))
            hidden = self.act(conv3x3_band(hidden, self.depthwise, a, b, rows, 2))
            out.append(self.project(hidden))
        return torch.cat(out, dim=2).flatten(2).transpose(1, 2)


def stripe_convs(encoder: nn.Module, stripes: int) -> int:
    """Replaces, in place, the patch embedding, every MBConv of `encoder` and
    the downsampling after them; returns how many modules were replaced."""
    encoder.patch_embed = StripedPatchEmbed(encoder.patch_embed, stripes)
    replaced = 1
    for layer in encoder.layers:
        blocks = getattr(layer, "blocks", [])
        convolutional = False
        for i, block in enumerate(blocks):
            if hasattr(block, "hidden_chans"):
                blocks[i] = StripedMBConv(block, stripes)
                replaced += 1
                convolutional = True
        if convolutional and getattr(layer, "downsample", None) is not None:
            layer.downsample = StripedPatchMerging(layer.downsample, stripes)
            replaced += 1
    return replaced
