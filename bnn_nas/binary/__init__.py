"""The binary math: binarizers with surrogate gradients and binary layers."""

from bnn_nas.binary.layers import BinaryConv2d, BinaryLinear, RPReLU
from bnn_nas.binary.quantizers import (
    ACTIVATION_BINARIZERS,
    WEIGHT_BINARIZERS,
    Binarizer,
    RSign,
    activation_binarizer,
    binary_sign,
    weight_binarizer,
)

__all__ = [
    "ACTIVATION_BINARIZERS",
    "WEIGHT_BINARIZERS",
    "Binarizer",
    "BinaryConv2d",
    "BinaryLinear",
    "RPReLU",
    "RSign",
    "activation_binarizer",
    "binary_sign",
    "weight_binarizer",
]
