"""Run the bnn-nas CLI with diagnosis patches (issue 20's compile bisection).

    python3 with_backend.py BACKEND CLI-ARGS...    BACKEND: a torch.compile backend or "none"
Environment: BNN_DIAG_NOFUSED=1 takes the ATen binarizers everywhere (no Triton kernels);
BNN_DIAG_DISABLE_BIN=1 keeps Dynamo out of the binarizers (torch.compiler.disable).
"""
import os
import sys

import torch

backend = sys.argv[1]
if backend != "none":
    _compile = torch.compile

    def _patched(model=None, **kwargs):
        kwargs["backend"] = backend
        return _compile(model, **kwargs)

    torch.compile = _patched
from bnn_nas.binary import fused, quantizers  # noqa: E402

if os.environ.get("BNN_DIAG_NOFUSED") == "1":
    fused.applies = lambda x: False
    print("diag: ATen binarizers only", file=sys.stderr)
if os.environ.get("BNN_DIAG_DISABLE_BIN") == "1":
    quantizers.clipped_ste_sign = torch.compiler.disable(quantizers.clipped_ste_sign)
    quantizers.approx_sign = torch.compiler.disable(quantizers.approx_sign)
    print("diag: binarizers outside Dynamo", file=sys.stderr)
from bnn_nas.cli import main  # noqa: E402

sys.argv = ["bnn-nas", *sys.argv[2:]]
main()
