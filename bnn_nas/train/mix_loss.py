"""Cross-entropy that also takes a mixed batch's labels (mixup, Zhang et al. 2018; CutMix,
Yun et al. 2019): ``lam * CE(logits, labels) + (1 - lam) * CE(logits, partners)``.

Label smoothing applies to both terms. ``lam`` is a device tensor of the batch
(:class:`~bnn_nas.data.mix.MixedTargets`), never a Python float, so a captured CUDA graph
reads every batch's own value. With plain label tensors it is ``nn.CrossEntropyLoss``.
"""

from __future__ import annotations

from torch import Tensor, nn

from bnn_nas.data.mix import MixedTargets


class MixCrossEntropy(nn.CrossEntropyLoss):
    """``nn.CrossEntropyLoss`` for label tensors; for :class:`MixedTargets` the lambda-
    weighted sum of the cross-entropies against each image's own and partner label."""

    def forward(self, logits: Tensor, target: Tensor | MixedTargets) -> Tensor:
        if not isinstance(target, MixedTargets):
            return super().forward(logits, target)
        lam = target.lam.to(logits.dtype)
        own = super().forward(logits, target.labels)
        return lam * own + (1 - lam) * super().forward(logits, target.partners)


def majority_labels(target: Tensor | MixedTargets) -> Tensor:
    """The labels a batch's training accuracy counts against: the label with the larger
    share for a mixed batch (:meth:`MixedTargets.majority`), else the labels."""
    return target.majority() if isinstance(target, MixedTargets) else target
