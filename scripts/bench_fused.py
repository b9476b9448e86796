"""Benchmark: K separate ``train()`` runs against one ``train_fused()`` group of K members.

Every member trains the same spec on its own slice of the training images with its own seed, for
the same epochs, in both arms. Images/s counts training images over the training loops' own time
(``TrainResult.seconds``; no evaluation). Separate runs are sequential and independent, so their
images/s does not depend on K: it is measured once per spec over ``--separate-runs`` runs and set
against every K. On CUDA both arms use bf16 autocast and channels_last.

    python scripts/bench_fused.py            # 4 specs, K = 1, 4, 16, 1,000 images, 2 epochs
    python scripts/bench_fused.py --quick    # smoke run, well under 30 s
    python scripts/bench_fused.py --specs w32-d3-relu-instancenorm-avgpooling \
        w128-d3-relu-instancenorm-avgpooling --k 1 16 64       # e.g. on a GPU
"""

from __future__ import annotations

import argparse
import platform
from dataclasses import replace

import torch

from nasprune.data import load_dataset
from nasprune.training import TrainConfig, TrainResult, resolve_device, train, train_fused
from search_spaces import build_convnet


SPECS = [
    "w8-d1-relu-instancenorm-avgpooling",
    "w16-d2-relu-instancenorm-avgpooling",
    "w32-d3-relu-instancenorm-avgpooling",
    "w16-d2-relu-batchnorm-avgpooling",
]
QUICK_SPECS = ["w8-d1-relu-instancenorm-avgpooling", "w8-d1-relu-batchnorm-avgpooling"]


def _member_sets(d, members: int, images: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Member k's own ``images`` training images, consecutive slices (wrapping round the set)."""
    n = len(d.train_y)
    out = []
    for k in range(members):
        idx = (k * images + torch.arange(images)) % n
        out.append((d.train_x[idx], d.train_y[idx]))
    return out


def _throughput(results: list[TrainResult]) -> float:
    """Training images per second over the runs' summed training time."""
    seconds = sum(r.seconds for r in results)
    return sum(r.images_per_sec * r.seconds for r in results) / seconds


def _separate(d, spec: str, sets, config: TrainConfig) -> list[TrainResult]:
    out = []
    for k, (x, y) in enumerate(sets):
        torch.manual_seed(k)
        model = build_convnet(spec, d.in_channels, d.image_size, d.num_classes)
        out.append(train(model, x, y, replace(config, seed=k)))
    return out


def _fused(d, spec: str, sets, config: TrainConfig) -> list[TrainResult]:
    return train_fused(spec, sets, list(range(len(sets))), config, in_channels=d.in_channels,
                       image_size=d.image_size, num_classes=d.num_classes)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="2 w8 specs, K = 1, 4, 256 images, 1 epoch")
    p.add_argument("--specs", nargs="+", default=None)
    p.add_argument("--k", nargs="+", type=int, default=None, help="group sizes (default 1 4 16)")
    p.add_argument("--images", type=int, default=None, help="training images per member (default 1000)")
    p.add_argument("--epochs", type=int, default=None, help="default 2")
    p.add_argument("--separate-runs", type=int, default=4, help="train() runs timed per spec")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    a = p.parse_args(argv)
    specs = a.specs or (QUICK_SPECS if a.quick else SPECS)
    ks = a.k or ([1, 4] if a.quick else [1, 4, 16])
    images = a.images or (256 if a.quick else 1000)
    epochs = a.epochs or (1 if a.quick else 2)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    cuda = device.type == "cuda"
    d = load_dataset(a.dataset)
    config = TrainConfig(epochs=epochs, batch_size=128, mean=d.mean, std=d.std, device=str(device),
                         channels_last=cuda, bf16=cuda)
    warm = replace(config, epochs=1)
    warm_images = min(images, 2 * config.batch_size)
    name = torch.cuda.get_device_name(device) if cuda else platform.processor() or platform.machine()
    print(f"# {name}, torch {torch.__version__}, {torch.get_num_threads()} threads, {a.dataset}, "
          f"{images} images per member, {epochs} epochs, batch {config.batch_size}"
          + (", bf16 + channels_last" if cuda else ""))
    rows = []
    for spec in specs:
        _separate(d, spec, _member_sets(d, 1, warm_images), warm)  # warm-up: allocator, kernel choice
        separate = _throughput(_separate(d, spec, _member_sets(d, a.separate_runs, images), config))
        for k in ks:
            _fused(d, spec, _member_sets(d, k, warm_images), warm)
            fused = _throughput(_fused(d, spec, _member_sets(d, k, images), config))
            rows.append({"spec": spec, "K": k, "separate_img_s": separate, "fused_img_s": fused,
                         "fused_over_separate": fused / separate})
    print(f"{'spec':40s} {'K':>3s} {'separate img/s':>15s} {'fused img/s':>12s} {'fused/separate':>15s}")
    for r in rows:
        print(f"{r['spec']:40s} {r['K']:3d} {r['separate_img_s']:15.0f} {r['fused_img_s']:12.0f} "
              f"{r['fused_over_separate']:14.2f}x")
    return rows


if __name__ == "__main__":
    main()
