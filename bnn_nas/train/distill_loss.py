"""The distillation loss (Hinton et al. 2015, "Distilling the Knowledge in a Neural
Network"): ``KL(softmax(t / T) || softmax(s / T)) * T^2``, alone (``kl``, ReActNet's
distributional loss) or mixed with the labels' cross-entropy (``ce_kl``).

A leaf of bnn_nas.train: the training loop builds it from ``settings.distill`` without
importing how a teacher is loaded (distill.py).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from bnn_nas.config import DistillConfig
from bnn_nas.data.mix import MixedTargets
from bnn_nas.train.mix_loss import MixCrossEntropy


def kd_term(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """T^2 * KL(softmax(teacher / T) || softmax(student / T)), averaged over the batch."""
    log_s = F.log_softmax(student / temperature, dim=1)
    log_t = F.log_softmax(teacher / temperature, dim=1)
    kl = F.kl_div(log_s, log_t, reduction="batchmean", log_target=True)
    return kl * temperature**2


class DistillLoss(nn.Module):
    """``kl``: weight * KD; ``ce_kl``: (1 - weight) * CE(labels) + weight * KD.

    Called as ``loss(student_logits, labels, teacher_logits)``; the teacher's logits are
    taken as constants (no gradient reaches the teacher). ``labels`` of a mixed batch
    (:class:`~bnn_nas.data.mix.MixedTargets`) mix the CE part: lam * CE(labels) + (1 - lam)
    * CE(partners); the KD part needs no labels (the teacher sees the same mixed batch).
    """

    def __init__(self, settings: DistillConfig, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.kind, self.temperature, self.weight = (
            settings.loss, settings.temperature, settings.weight
        )  # fmt: skip
        self.cross_entropy = MixCrossEntropy(label_smoothing=label_smoothing)

    def forward(self, student: Tensor, labels: Tensor | MixedTargets, teacher: Tensor) -> Tensor:
        kd = kd_term(student, teacher.detach(), self.temperature)
        if self.kind == "kl":
            return self.weight * kd
        return (1.0 - self.weight) * self.cross_entropy(student, labels) + self.weight * kd

    def extra_repr(self) -> str:
        return f"{self.kind}, T={self.temperature:g}, weight={self.weight:g}"
