"""Keeping OctConv's two octaves apart between consecutive OctConv slots of a ResNet.

Every :class:`~search_spaces.ops.octconv.OctConv2d` slot takes and returns one full-resolution
tensor: it splits its input into a high part and an average-pooled low part, and merges its
output back (nearest up-sampling, ``cat``). Between two such slots of a residual block there
are only BatchNorm and ReLU, which act per channel and per element, so the merge of one slot
and the split of the next cancel out: 2x2 average pooling of a nearest-up-sampled map is the
map itself. :func:`keep_octaves` rewrites a built model so the pair ``(X^H, X^L)`` flows from
OctConv to OctConv, as in the paper, and is merged only where a module needs one tensor:

* inside a block, conv1 -> bn1 -> relu -> conv2 (-> bn2 -> relu -> conv3) when both convs are
  OctConvs with the same channel split;
* across the residual sum, when the block's last conv and its shortcut (a projection OctConv,
  or the identity of a block whose input arrived as a pair) both give pairs;
* from block to block, when the next block's first conv is an OctConv with the same split; the
  pair then also travels between stages (``layer1`` -> ``layer2`` ...), and is merged before
  the head and wherever a plain conv, SCConv, LinearConv or a stride other than 1 or 2 comes.

**The model stays the same model.** This is a pass that is only applied where the outputs are
identical to the per-slot form up to float rounding, in eval and in train mode, forward and
backward, running statistics included:

* BatchNorm is applied per octave with the merged BN's per-channel parameters and statistics
  sliced. In eval mode that is the same elementwise map. In train mode the batch statistics of
  a low channel over the merged (up-sampled) map weight each low pixel by the number of high
  pixels it covers: 4 when the high map's sides are even, so plain mean and biased variance of
  the low map are the same numbers; 2 or 1 on the last row/column of an odd side (7x7 high,
  4x4 low in ResNet-50's last stage at 224), where the pass computes those weighted statistics.
  The running variance is updated with the merged map's Bessel correction ``n / (n - 1)``,
  ``n = N * H * W``, not the low map's.
* ReLU and the residual sum are elementwise, and nearest up-sampling commutes with them.
* Parameters and buffers keep their module paths, so ``state_dict`` keys are those of the
  per-slot model and checkpoints load either way; only the block objects change type
  (:class:`OctaveBlock`, holding the block's own sub-modules).

Not covered (left in the per-slot form): models other than torchvision's ResNet family and
the CIFAR ResNets, blocks of other types, and BatchNorm layers that are not exactly
``nn.BatchNorm2d`` (``SyncBatchNorm`` after ``convert_sync_batchnorm`` merges the pair first,
which is correct but gives back the saving). Forward hooks on a ReLU module see the two
octaves as two calls, the low one at half resolution (so the NASWOT zero-cost score counts a
low-frequency unit once, not as its four up-sampled copies).

Because the outputs are identical and the model is faster (``experiments/octave_speed.py``),
``build_model`` applies the pass by default (``keep_octaves=False`` gives the per-slot form),
so training, proxy evaluation, latency measurement and ONNX export all run the kept form.

FLOPs (fvcore, eval) go down by what is no longer done: the up-sampling of every kept low
output (``C_low * H * W``) and BatchNorm on its up-sampled copy (``2 * C_low * (H*W - Hl*Wl)``);
a merge that remains (block end, non-octave consumer) costs its up-sampling.
:func:`octave_flops_delta` gives this change from the slot shapes alone, for the cost model.

Imports torch, torchvision's ResNet blocks, :mod:`search_spaces.backbones.cifar_resnet`,
:mod:`search_spaces.ops.octconv` and :mod:`search_spaces.slots`; must not import
:mod:`search_spaces.arch` (which applies it), ``evaluators`` or ``nas``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from search_spaces.backbones.cifar_resnet import BasicBlock as CifarBasicBlock
from search_spaces.backbones.cifar_resnet import CifarResNet
from search_spaces.ops.octconv import Octaves, OctConv2d, merge_octaves, split_channels
from search_spaces.slots import Slot

__all__ = [
    "BlockPlan",
    "BlockSpec",
    "OctaveBlock",
    "keep_octaves",
    "kept_saving",
    "octave_batch_norm",
    "octave_blocks",
    "octave_flops_delta",
    "plan_blocks",
]

_BLOCKS = {Bottleneck: 3, BasicBlock: 2, CifarBasicBlock: 2}  # block type -> convs on its path
Split = tuple[int, int]  # (high, low) channels
#: What the planner needs of one conv: ``(input split, output split)`` of an OctConv that can
#: take and give pairs (alpha > 0, stride 1 or 2), else ``None``.
ConvIO = tuple[Split, Split] | None


@dataclass(frozen=True)
class BlockSpec:
    """One residual block in forward order: its path, main-path convs and BNs, shortcut.

    ``convs``/``bns`` are full module paths (``layer1.0.conv1``); ``shortcut`` is the path of
    the projection conv (``layer1.0.downsample.0``) or ``None`` for an identity shortcut, and
    ``shortcut_bn`` the path of its BatchNorm. ``affine`` says, per BN (main path, then
    shortcut), whether it has a weight, which fvcore counts as a second flop per element.
    """

    path: str
    convs: tuple[str, ...]
    bns: tuple[str, ...]
    shortcut: str | None
    shortcut_bn: str | None
    affine: tuple[bool, ...]


@dataclass(frozen=True)
class BlockPlan:
    """Where pairs flow in one block (see :func:`plan_blocks`)."""

    in_pair: bool  # the block's input arrives as a pair
    keep: tuple[bool, ...]  # main-path conv i returns a pair
    keep_shortcut: bool  # the shortcut conv returns a pair
    out_pair: bool  # the block returns a pair
    merge_input: bool  # the input pair is merged for a consumer that needs one tensor
    merge_output: bool  # the residual sum is a pair merged at the block's end

    @property
    def changes_anything(self) -> bool:
        return self.in_pair or self.out_pair or any(self.keep) or self.keep_shortcut


# -- finding the blocks -----------------------------------------------------------------------


def _block_chain(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The residual blocks of a supported ResNet in forward order, or ``[]``.

    In both ResNet forwards the stages run back to back (``layer1`` ... ``layerN``), so a
    block's output is the next block's input, and the last one feeds the pooling head.
    """
    if type(model) is ResNet:
        stages = ("layer1", "layer2", "layer3", "layer4")
    elif type(model) is CifarResNet:
        stages = ("layer1", "layer2", "layer3")
    else:
        return []
    chain = []
    for stage in stages:
        seq = getattr(model, stage)
        if type(seq) is not nn.Sequential:
            return []
        chain += [(f"{stage}.{name}", block) for name, block in seq.named_children()]
    return chain


def _conv_count(block: nn.Module) -> int | None:
    if isinstance(block, OctaveBlock):  # the pass run again: plan afresh
        return len(block.names)
    return _BLOCKS.get(type(block))


def _spec(path: str, block: nn.Module) -> BlockSpec | None:
    n = _conv_count(block)
    if n is None or type(getattr(block, "relu", None)) is not nn.ReLU:
        return None
    convs = tuple(f"conv{i}" for i in range(1, n + 1))
    bns = tuple(f"bn{i}" for i in range(1, n + 1))
    norms = [getattr(block, b) for b in bns]
    shortcut = shortcut_bn = None
    ds = block.downsample
    if ds is not None:
        if type(ds) is not nn.Sequential or len(ds) != 2:
            return None
        shortcut, shortcut_bn = f"{path}.downsample.0", f"{path}.downsample.1"
        norms.append(ds[1])
    if any(type(m) is not nn.BatchNorm2d for m in norms):
        return None
    return BlockSpec(
        path=path,
        convs=tuple(f"{path}.{c}" for c in convs),
        bns=tuple(f"{path}.{b}" for b in bns),
        shortcut=shortcut,
        shortcut_bn=shortcut_bn,
        affine=tuple(m.weight is not None for m in norms),
    )


def octave_blocks(model: nn.Module) -> tuple[BlockSpec, ...]:
    """The blocks of ``model`` the pass understands, in forward order (``()`` if none).

    A block the pass does not understand ends the chain: the list stops before it, so pairs
    never cross it (the blocks after it are not listed).
    """
    out = []
    for path, block in _block_chain(model):
        spec = _spec(path, block)
        if spec is None:
            break
        out.append(spec)
    return tuple(out)


# -- planning ---------------------------------------------------------------------------------


def plan_blocks(blocks: tuple[BlockSpec, ...], io: Mapping[str, ConvIO]) -> list[BlockPlan]:
    """Where pairs flow, from each conv's :data:`ConvIO` (a path missing from ``io``: ``None``).

    A conv keeps its output as a pair when every consumer of it takes a pair with the same
    split: the next conv of the main path; for the last conv, the residual sum, whose other
    term must be a pair too (a projection OctConv, kept as well, or the block's input pair).
    A block returns its sum as a pair when the next block's first conv takes it; the first
    block gets a tensor and the last one returns one.
    """
    plans: list[BlockPlan] = []
    in_split: Split | None = None  # split of the pair entering the current block
    for i, b in enumerate(blocks):
        main = [io.get(c) for c in b.convs]
        short = io.get(b.shortcut) if b.shortcut else None
        keep = [a is not None and n is not None and a[1] == n[0] for a, n in zip(main, main[1:])]
        last = main[-1]
        if b.shortcut is not None:
            keep_last = last is not None and short is not None and short[1] == last[1]
        else:
            keep_last = last is not None and in_split is not None and in_split == last[1]
        keep.append(keep_last)
        out_split = last[1] if keep_last and last is not None else None
        nxt = io.get(blocks[i + 1].convs[0]) if i + 1 < len(blocks) else None
        out_pair = out_split is not None and nxt is not None and nxt[0] == out_split
        in_pair = in_split is not None
        if b.shortcut is not None:
            needs_tensor = short is None or short[0] != in_split
        else:
            needs_tensor = not keep_last
        plans.append(
            BlockPlan(
                in_pair=in_pair,
                keep=tuple(keep),
                keep_shortcut=b.shortcut is not None and keep_last,
                out_pair=out_pair,
                merge_input=in_pair and needs_tensor,
                merge_output=keep_last and not out_pair,
            )
        )
        in_split = out_split if out_pair else None
    return plans


def _conv_io(conv: nn.Module) -> ConvIO:
    if isinstance(conv, OctConv2d) and conv.accepts_octaves:
        return (conv.in_high, conv.in_low), (conv.out_high, conv.out_low)
    return None


def _slot_io(slot: Slot, alpha: float) -> ConvIO:
    if alpha == 0 or slot.stride not in (1, 2):
        return None
    return split_channels(slot.in_channels, alpha), split_channels(slot.out_channels, alpha)


def kept_saving(slot: Slot, alpha: float, affine: bool = True) -> int:
    """FLOPs fvcore no longer counts when OctConv ``alpha`` at ``slot`` keeps its output pair.

    The up-sampling of the low output, ``C_low * H * W``, and the following BatchNorm's work on
    the up-sampled copy beyond the low map itself (``(2 if affine else 1)`` per element).
    """
    c = split_channels(slot.out_channels, alpha)[1]
    h, w = slot.output_size
    area_low = -(-h // 2) * -(-w // 2)
    return c * h * w + (2 if affine else 1) * c * (h * w - area_low)


def octave_flops_delta(
    blocks: tuple[BlockSpec, ...], slots: Mapping[str, Slot], alphas: Mapping[str, float]
) -> int:
    """Change of fvcore's eval FLOPs that :func:`keep_octaves` makes (<= 0 but for merges).

    ``alphas`` maps the path of every OctConv slot to its alpha; ``slots`` maps paths to slots.
    """
    if not alphas:
        return 0
    io = {p: _slot_io(slots[p], a) for p, a in alphas.items()}
    delta = 0

    def low_area(path: str, output: bool) -> tuple[int, int, int]:
        s, a = slots[path], alphas[path]
        h, w = s.output_size if output else s.input_size
        return split_channels(s.out_channels if output else s.in_channels, a)[1], h, w

    def kept(path: str, affine: bool) -> int:
        return kept_saving(slots[path], alphas[path], affine)

    for b, plan in zip(blocks, plan_blocks(blocks, io)):
        for conv, keep, affine in zip(b.convs, plan.keep, b.affine):
            if keep:
                delta -= kept(conv, affine)
        if plan.keep_shortcut and b.shortcut is not None:
            delta -= kept(b.shortcut, b.affine[-1])
        if plan.merge_output:
            c, h, w = low_area(b.convs[-1], output=True)
            delta += c * h * w
        if plan.merge_input:
            c, h, w = low_area(b.convs[0], output=False)
            delta += c * h * w
    return delta


# -- running it -------------------------------------------------------------------------------


def _low_weights(high: Tensor, low: Tensor) -> Tensor:
    """How many high pixels each low pixel covers: 2 x 2, 1 on an odd side's last row/column."""
    (h, w), (hl, wl) = high.shape[-2:], low.shape[-2:]
    rows = torch.full((hl,), 2.0, dtype=low.dtype, device=low.device)
    cols = torch.full((wl,), 2.0, dtype=low.dtype, device=low.device)
    if h % 2:
        rows[-1] = 1.0
    if w % 2:
        cols[-1] = 1.0
    return rows[:, None] * cols[None, :]


def octave_batch_norm(bn: nn.BatchNorm2d, x: Octaves) -> Octaves:
    """``bn`` on the tensor ``x`` stands for, per octave: the same numbers and state updates.

    Equal, up to rounding, to splitting ``bn(merge_octaves(*x))`` into octaves again, in eval
    and train mode (batch statistics, running statistics and ``num_batches_tracked``).
    """
    high, low = x
    c = high.shape[1]
    weight, bias = bn.weight, bn.bias
    w_high = w_low = b_high = b_low = None
    if weight is not None and bias is not None:
        w_high, w_low, b_high, b_low = weight[:c], weight[c:], bias[:c], bias[c:]
    rm, rv = bn.running_mean, bn.running_var
    if not bn.training and rm is not None and rv is not None:
        return (
            F.batch_norm(high, rm[:c], rv[:c], w_high, b_high, False, 0.0, bn.eps),
            F.batch_norm(low, rm[c:], rv[c:], w_low, b_low, False, 0.0, bn.eps),
        )
    factor = 0.0
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        momentum = bn.momentum
        factor = 1.0 / float(bn.num_batches_tracked) if momentum is None else momentum
    update = bn.training and rm is not None and rv is not None
    n, (h, w) = high.shape[0], high.shape[-2:]
    count = n * h * w  # elements per channel of the merged map
    if h % 2 == 0 and w % 2 == 0:  # every low pixel stands for 4 high ones
        # native_batch_norm also returns the batch mean and 1 / sqrt(var + eps) it used
        out_low, mean, invstd = torch.native_batch_norm(
            low, w_low, b_low, None, None, True, 0.0, bn.eps
        )
        var = invstd.detach().pow(-2) - bn.eps
    else:  # weighted statistics: an odd side's last row/column of low pixels covers fewer
        weights = _low_weights(high, low)
        mean = (low * weights).sum(dim=(0, 2, 3)) / count
        centred = low - mean[None, :, None, None]
        var = (centred * centred * weights).sum(dim=(0, 2, 3)) / count
        scale = torch.rsqrt(var + bn.eps)
        if w_low is not None:
            scale = scale * w_low
        out_low = centred * scale[None, :, None, None]
        if b_low is not None:
            out_low = out_low + b_low[None, :, None, None]
    if update and rm is not None and rv is not None:
        # Before the high part's batch_norm, which keeps views of these buffers for backward.
        with torch.no_grad():
            rm[c:].mul_(1.0 - factor).add_(mean.detach(), alpha=factor)
            unbiased = var.detach() * (count / max(count - 1, 1))
            rv[c:].mul_(1.0 - factor).add_(unbiased, alpha=factor)
    out_high = F.batch_norm(
        high,
        rm[:c] if update and rm is not None else None,
        rv[:c] if update and rv is not None else None,
        w_high,
        b_high,
        True,
        factor,
        bn.eps,
    )
    return out_high, out_low


def _merge(x: Tensor | Octaves) -> Tensor:
    return merge_octaves(*x) if isinstance(x, tuple) else x


def _takes(conv: nn.Module, x: Octaves) -> bool:
    """Whether ``conv`` takes the pair ``x`` as it is (same channel split)."""
    return (
        isinstance(conv, OctConv2d)
        and conv.accepts_octaves
        and (x[0].shape[1], x[1].shape[1]) == (conv.in_high, conv.in_low)
    )


def _conv(conv: nn.Module, x: Tensor | Octaves, keep: bool) -> Tensor | Octaves:
    if isinstance(x, tuple) and not _takes(conv, x):
        x = merge_octaves(*x)
    if isinstance(conv, OctConv2d) and (keep or isinstance(x, tuple)):
        return conv.octaves(x, keep=keep)
    return conv(x)


def _norm(bn: nn.Module, x: Tensor | Octaves) -> Tensor | Octaves:
    if not isinstance(x, tuple):
        return bn(x)
    if type(bn) is not nn.BatchNorm2d:  # replaced after the pass, e.g. by SyncBatchNorm
        return bn(merge_octaves(*x))
    return octave_batch_norm(bn, x)


def _relu(relu: nn.Module, x: Tensor | Octaves) -> Tensor | Octaves:
    return (relu(x[0]), relu(x[1])) if isinstance(x, tuple) else relu(x)


def _add(a: Tensor | Octaves, b: Tensor | Octaves) -> Tensor | Octaves:
    if isinstance(a, tuple) and isinstance(b, tuple):
        return a[0] + b[0], a[1] + b[1]
    return _merge(a) + _merge(b)


class OctaveBlock(nn.Module):
    """A ResNet block (basic or bottleneck) whose OctConvs pass octave pairs; see the module.

    Holds the original block's sub-modules under their names (``conv1``, ``bn1``, ``relu``,
    ... ``downsample``), so parameters and buffers keep their paths. Computes what the
    original computes: ``relu(bn_n(conv_n(... relu(bn1(conv1(x))))) + shortcut(x))``.

    Shapes:
        x:   Tensor[N, C_in, H, W] or an input pair (when ``plan.in_pair``)
        out: Tensor[N, C_out, Hs, Ws] or an output pair (when ``plan.out_pair``)
    """

    def __init__(self, block: nn.Module, plan: BlockPlan) -> None:
        super().__init__()
        n = _conv_count(block)
        if n is None:
            raise ValueError(f"OctaveBlock takes a ResNet block, got {type(block).__name__}")
        for name, child in block.named_children():
            self.add_module(name, child)
        self.downsample: nn.Module | None = block.downsample
        self.names = tuple((f"conv{i}", f"bn{i}") for i in range(1, n + 1))
        self.plan = plan
        self.block_type = getattr(block, "block_type", type(block).__name__)

    def forward(self, x: Tensor | Octaves) -> Tensor | Octaves:
        out = x
        last = len(self.names) - 1
        for i, (conv, bn) in enumerate(self.names):
            out = _norm(getattr(self, bn), _conv(getattr(self, conv), out, self.plan.keep[i]))
            if i < last:
                out = _relu(self.relu, out)
        if self.downsample is None:
            identity = x
        else:
            conv, bn = self.downsample[0], self.downsample[1]
            identity = _norm(bn, _conv(conv, x, self.plan.keep_shortcut))
        out = _relu(self.relu, _add(out, identity))
        return out if self.plan.out_pair else _merge(out)

    def extra_repr(self) -> str:
        p = self.plan
        keep = ",".join(str(int(k)) for k in p.keep)
        return (
            f"{self.block_type}, pair in={p.in_pair} out={p.out_pair}, keep={keep}"
            f"{' +shortcut' if p.keep_shortcut else ''}"
        )


def keep_octaves(model: nn.Module) -> nn.Module:
    """Rewrite ``model`` in place so consecutive OctConvs pass octave pairs; returns it.

    Only blocks where a pair flows are replaced (by :class:`OctaveBlock`); a model without
    OctConvs, or of a type the pass does not know, is returned unchanged. Outputs, gradients
    and state updates equal the per-slot model's up to float rounding (see the module).
    """
    blocks = octave_blocks(model)
    if not blocks:
        return model
    io = {}
    for b in blocks:
        for path in (*b.convs, b.shortcut):
            if path is not None:
                io[path] = _conv_io(model.get_submodule(path))
    for b, plan in zip(blocks, plan_blocks(blocks, io)):
        if plan.changes_anything:
            parent, _, name = b.path.rpartition(".")
            block = model.get_submodule(b.path)
            setattr(model.get_submodule(parent), name, OctaveBlock(block, plan))
    return model
