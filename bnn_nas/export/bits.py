"""Bit layouts of the packed engine, in torch: packing signs into 64-bit words and back.

Words are torch ``int64`` tensors holding uint64 bit patterns (torch has no full uint64
arithmetic); bit ``i % 64`` of word ``i // 64`` holds element ``i``, 1 meaning +1.

Three layouts meet here:
  * dense (the file): a conv weight [O, C, kh, kw] flattened in that order, 1 bit each;
  * kernel weights [G, T, K, Opad]: per group, taps, 64-channel words, output channels
    innermost;
  * activations [N, H, W, G, K]: channels of each pixel packed per group, bits c >= C / G
    of each group zero.

A grouped conv (G groups) has weights [O, C / G, kh, kw]; group g's outputs
``g * O / G ...`` read only group g's input channels, so each group has its own words.
"""

from __future__ import annotations

import torch
from torch import Tensor

WORD = 64
_SHIFTS = torch.arange(WORD, dtype=torch.int64)


def words_for(bits: int) -> int:
    """64-bit words needed for ``bits`` bits."""
    return -(-bits // WORD)


def pack_last(flags: Tensor) -> Tensor:
    """Bool [..., n] -> int64 words [..., ceil(n / 64)] along the last axis."""
    n = flags.shape[-1]
    k = words_for(n)
    padded = torch.zeros((*flags.shape[:-1], k * WORD), dtype=torch.int64)
    padded[..., :n] = flags.to(torch.int64)
    # distinct powers of two never carry, so the int64 sum is the exact bit pattern
    return (padded.view(*flags.shape[:-1], k, WORD) << _SHIFTS).sum(-1)


def unpack_last(words: Tensor, n: int) -> Tensor:
    """int64 words [..., K] -> bool [..., n] (the first ``n`` bits)."""
    flags = (words.unsqueeze(-1) >> _SHIFTS) & 1
    return flags.reshape(*words.shape[:-1], -1)[..., :n].bool()


def ones_words(channels: int) -> Tensor:
    """The words of one pixel whose ``channels`` values are all +1 (bits >= C stay 0)."""
    return pack_last(torch.ones(channels, dtype=torch.bool))


def pack_dense(signs: Tensor) -> Tensor:
    """A bool tensor of any shape (True = +1) -> int64 words of its flattened bits."""
    return pack_last(signs.reshape(-1))


def unpack_dense(words: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Inverse of :func:`pack_dense`."""
    count = 1
    for size in shape:
        count *= size
    return unpack_last(words, count).reshape(shape)


def kernel_weights(signs: Tensor) -> Tensor:
    """Bool weights [O, C, kh, kw] -> kernel layout int64 [kh * kw, K, Opad], Opad = 8k."""
    out_ch, in_ch, kh, kw = signs.shape
    per_tap = signs.permute(2, 3, 0, 1).reshape(kh * kw, out_ch, in_ch)  # [T, O, C]
    words = pack_last(per_tap).permute(0, 2, 1)  # [T, K, O]
    opad = -(-out_ch // 8) * 8
    out = torch.zeros((kh * kw, words.shape[1], opad), dtype=torch.int64)
    out[:, :, :out_ch] = words
    return out.contiguous()


def grouped_kernel_weights(signs: Tensor, groups: int) -> Tensor:
    """Bool weights [O, C / G, kh, kw] of a conv of G groups -> int64 [G, kh * kw, K, Opad]
    with K = ceil(C / G / 64) and Opad = O / G rounded up to 8: :func:`kernel_weights` of
    each group's output channels, stacked."""
    per_group = signs.shape[0] // groups
    return torch.stack(
        [kernel_weights(part) for part in signs.split(per_group)]
    ).contiguous()


def block_diagonal(signs: Tensor, groups: int) -> tuple[Tensor, Tensor]:
    """Weights [O, C / G, kh, kw] of a conv of G groups as a dense conv's: (signs
    [O, C, kh, kw], False outside each output's group; membership bool [O, C, 1, 1])."""
    out_ch, group_in = signs.shape[:2]
    group_out = out_ch // groups
    owner = torch.arange(out_ch) // group_out  # the group of each output channel
    member = owner.view(-1, 1) == (torch.arange(groups * group_in) // group_in).view(1, -1)
    dense = torch.zeros((out_ch, groups * group_in, *signs.shape[2:]), dtype=torch.bool)
    dense[member] = signs.reshape(out_ch * group_in, *signs.shape[2:])
    return dense, member.view(out_ch, groups * group_in, 1, 1)


def group_words(flags: Tensor, groups: int) -> Tensor:
    """Bool [..., C] -> int64 words [..., G * K]: each group's C / G flags packed on their
    own (K = ceil(C / G / 64)), the activations' layout."""
    split = flags.reshape(*flags.shape[:-1], groups, flags.shape[-1] // groups)
    return pack_last(split).flatten(-2)


def tap_sums(signs: Tensor) -> Tensor:
    """Sum of the +-1 weights of each tap and output channel: int64 [kh * kw, O]."""
    out_ch, in_ch, kh, kw = signs.shape
    plus = signs.permute(2, 3, 0, 1).reshape(kh * kw, out_ch, in_ch).sum(-1)
    return 2 * plus - in_ch
