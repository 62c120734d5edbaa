"""What a training step of the conv video front end costs: ``python -m benchmarks.conv_frontend
[--threads 2] [--repeats 3] [--device cpu]``.

Times one Adam step of :class:`bimodal.conv_frontend.ConvFrameAutoencoder` (forward, MSE, backward,
update) on a batch of 60x80 frames (AVLetters' crops) at 32 and 64 channels, with the model's
weights in channels-last layout (what the class uses) and in the default contiguous layout, and
prints the best-of-``--repeats`` milliseconds per frame of each. A frame-epoch of the front end
costs about that much, so ``frames x epochs x ms`` is the front end's training time.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from bimodal.conv_frontend import ConvFrameAutoencoder
from bimodal.device import resolve_device


def step_ms_per_frame(channels: int, layout: torch.memory_format, batch: int, repeats: int, device) -> float:
    model = ConvFrameAutoencoder((60, 80), 64, channels, device=device, seed=0).to(memory_format=layout)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    x = torch.rand(batch, 1, 60, 80, device=device, generator=torch.Generator(device).manual_seed(0))
    model.train()
    best = float("inf")
    for i in range(repeats + 1):  # the first step warms up oneDNN / cuDNN
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = F.mse_loss(model.decode_t(model.encode_t(x)), x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            best = min(best, time.perf_counter() - t0)
    return 1000.0 * best / batch


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128, help="frames per step (PrepConfig.conv_batch_size: 128)")
    ap.add_argument("--device", default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    print(f"device {device}, {torch.get_num_threads()} threads, batch {args.batch}: ms per frame of one training step")
    print(f"{'channels':>8} {'contiguous':>11} {'channels-last':>14} {'gain':>6}")
    for channels in (32, 64):
        contiguous = step_ms_per_frame(channels, torch.contiguous_format, args.batch, args.repeats, device)
        last = step_ms_per_frame(channels, torch.channels_last, args.batch, args.repeats, device)
        print(f"{channels:>8} {contiguous:>11.2f} {last:>14.2f} {contiguous / last:>5.2f}x")


if __name__ == "__main__":
    main()
