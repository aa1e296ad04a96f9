"""Images/s of the device-resident data path alone: shuffle, gather, crop, flip, normalise.

python -m benchmarks.pipeline [--data-root DIR] [--batch-size 256] [--epochs 5]
"""

from __future__ import annotations

import argparse
import time

import torch

from benchmarks.common import emit, load_data
from bnn_nas.data import DeviceLoader
from bnn_nas.train import resolve_device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", help="image-folder CIFAR-10 (default: packaged sample)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    data = load_data(args.data_root)
    cuda = device.type == "cuda"
    loader = DeviceLoader(
        data.train, args.batch_size, device=device, augment=True, shuffle=True, drop_last=True,
        dtype=torch.bfloat16 if cuda else torch.float32, channels_last=cuda,
    )  # fmt: skip

    def one_epoch(epoch: int) -> int:
        seen = 0
        checksum = torch.zeros((), device=device)
        for x, _ in loader.epoch(epoch):
            checksum += x[0, 0, 0, 0].float()  # keeps the work from being skipped
            seen += len(x)
        float(checksum)  # one sync per epoch
        return seen

    one_epoch(0)  # warm-up
    tic = time.perf_counter()
    seen = sum(one_epoch(e) for e in range(1, args.epochs + 1))
    seconds = time.perf_counter() - tic
    emit(
        "pipeline",
        device,
        dataset=data.name,
        images=len(data.train),
        batch_size=args.batch_size,
        images_per_s=round(seen / seconds),
        seconds_per_epoch=round(seconds / args.epochs, 4),
    )


if __name__ == "__main__":
    main()
