"""Benchmark: nasprune.training.train against a textbook DataLoader loop on proxy-sized Fashion-MNIST.

Both train the same models (same init, ``build_convnet(seed=)``) on the same 1,000 images for the same
epochs, alternating a/b so that machine noise hits both alike. Both time the training loop alone, so the
nasprune side calls ``train`` on a bare model rather than ``train_candidate`` (which also evaluates on
the val and test splits). Prints the wall-time ratio textbook/nasprune, images per
second of each, and nasprune's achieved GFLOP/s against this machine's measured fp32 matmul GFLOP/s
(training FLOPs counted as 3x the forward FLOPs of the convs and the classifier).

    python scripts/bench_trainer.py            # 3 models, 3 epochs, 2 rounds
    python scripts/bench_trainer.py --quick    # 1 round, 1 epoch
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from nasprune.data import load_dataset
from nasprune.training import TrainConfig, resolve_device, train
from search_spaces import ConvNetSpec, build_convnet, count_flops


MODELS = ["w128-d3-relu-instancenorm-avgpooling", "w32-d2-relu-batchnorm-maxpooling", "w32-d2-relu-instancenorm-none"]


class _Images(Dataset):
    """uint8 tensors served one PIL image at a time, as torchvision's datasets do."""

    def __init__(self, x, y, transform):
        self.x, self.y, self.transform = x, y, transform

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.transform(transforms.functional.to_pil_image(self.x[i])), int(self.y[i])


def textbook(model, x, y, epochs, mean, std, device, seed) -> float:
    """The loop a tutorial would write: transforms per image, DataLoader, batch 128, cosine, SGD."""
    tf = transforms.Compose([
        transforms.RandomCrop(x.shape[-1], padding=4),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(mean, std),
    ])
    torch.manual_seed(seed)
    loader = DataLoader(_Images(x, y, tf), batch_size=128, shuffle=True, num_workers=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * len(loader))
    model.to(device).train()
    start = time.perf_counter()
    for _ in range(epochs):
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def matmul_gflops(device, n=2048, reps=10) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    best = float("inf")
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=128, help="nasprune's batch (the textbook loop uses 128)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--quick", action="store_true", help="1 round of 1 epoch")
    args = ap.parse_args()
    if args.quick:
        args.epochs, args.rounds = 1, 1
    device = resolve_device(args.device)
    d = load_dataset("fashion-mnist")
    x, y = d.train_x[: args.images], d.train_y[: args.images]
    peak = matmul_gflops(device)
    print(f"# bench_trainer: {args.images} Fashion-MNIST images, {args.epochs} epochs, {args.rounds} rounds, "
          f"device {device}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print(f"# fp32 matmul peak (2048^3, best of 10): {peak:.1f} GFLOP/s")
    print(f"{'model':40s} {'nasprune s':>10s} {'textbook s':>10s} {'ratio b/a':>9s} "
          f"{'a img/s':>8s} {'b img/s':>8s} {'a GFLOP/s':>9s} {'% peak':>6s}")
    for spec_id in MODELS:
        spec = ConvNetSpec.from_id(spec_id)
        flops_per_image = 3 * count_flops(spec, 1, 28, 10)
        ta, tb = [], []
        for r in range(args.rounds):  # both loops start from the same weights, build_convnet(seed=r)
            cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, mean=d.mean, std=d.std, seed=r,
                              device=str(device))
            ta.append(train(build_convnet(spec, 1, 28, 10, seed=r), x, y, cfg).seconds)
            tb.append(textbook(build_convnet(spec, 1, 28, 10, seed=r), x, y, args.epochs, d.mean, d.std, device, r))
        a, b = statistics.median(ta), statistics.median(tb)
        images = args.images * args.epochs
        gflops = flops_per_image * images / a / 1e9
        print(f"{spec_id:40s} {a:10.2f} {b:10.2f} {b / a:9.2f} {images / a:8.0f} {images / b:8.0f} "
              f"{gflops:9.1f} {100 * gflops / peak:6.1f}")


if __name__ == "__main__":
    main()
