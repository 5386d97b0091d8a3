"""Effect of the evaluation crop on proxy accuracy for 32x32 photographs in an image folder.

Before issue 15, an image folder trained with the ``cifar`` pipeline was validated with the
ImageNet-style evaluation (resize the shorter side to round(32 / 0.875) = 37, centre-crop 32):
a 16 % zoom of what the network learned on. This trains the search's default proxy (2 epochs on
2,000 images, seed 0) for a few architectures on cifar10-mini, then validates the same weights
on the same validation images with the old crop (0.875) and the new rule (the whole image).

    python experiments/eval_crop_effect.py   # writes experiments/results/eval_crop_effect.md/.json
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluators import data as D  # noqa: E402
from evaluators.proxy import train_proxy  # noqa: E402
from experiments._machine import machine_description  # noqa: E402
from search_spaces.arch import build_model  # noqa: E402
from search_spaces.space import SearchSpace  # noqa: E402

MINI = "imagefolder:/work/shared/data/cifar10-mini"
OUT = Path(__file__).resolve().parent / "results"


def _accuracy(model: torch.nn.Module, loader) -> float:
    model.eval()
    hits = n = 0
    with torch.no_grad():
        for x, y in loader:
            hits += int((model(x).argmax(1) == y).sum())
            n += len(y)
    return hits / n


def main() -> int:
    torch.set_num_threads(1)
    space = SearchSpace("cifar_resnet20", num_classes=10, resolution=32, slots="all")
    archs = {"all conv": space.uniform("conv"), "all oct(a=0.5)": space.uniform("oct(a=0.5)"),
             "all linear(a=0.5,rank=full)": space.uniform("linear(a=0.5,rank=full)")}
    # The search's proxy split at its defaults: 2,000 training images, 222 for validation.
    train, val = D.proxy_split(MINI, val_fraction=0.1, subset=2000, resolution=32,
                               augment="cifar", seed=0)
    if val.dataset.eval_crop != 1.0:
        raise SystemExit("this checkout still zooms 32x32 validation images (issue 15)")
    old_val = D.proxy_split(MINI, val_fraction=0.1, subset=2000, resolution=32,
                            augment="cifar", seed=0)[1]
    old_val.dataset.transform = _old_transform()
    loaders = {
        "train": D.make_loader(train, batch_size=64, shuffle=True, seed=0, num_workers=0,
                               drop_last=True),
        "new": D.make_loader(val, batch_size=256, shuffle=False, num_workers=0),
        "old": D.make_loader(old_val, batch_size=256, shuffle=False, num_workers=0),
    }
    rows = []
    for name, arch in archs.items():
        torch.manual_seed(0)
        model = build_model(arch)
        res, _ = train_proxy(model, loaders["train"], loaders["new"], epochs=2, seed=0)
        old, new = _accuracy(model, loaders["old"]), _accuracy(model, loaders["new"])
        rows.append({"arch": name, "arch_id": arch.arch_id, "acc_old_crop_0875": old,
                     "acc_whole_image": new, "proxy_reported": res.accuracy})
        print(f"{name}: old crop {100 * old:.1f} %  whole image {100 * new:.1f} %", flush=True)
    payload = {"date": dt.date.today().isoformat(), "machine": machine_description(),
               "command": "python experiments/eval_crop_effect.py",
               "validation_images": len(val), "rows": rows}
    OUT.mkdir(exist_ok=True)
    (OUT / "eval_crop_effect.json").write_text(json.dumps(payload, indent=1) + "\n")
    lines = ["# Evaluation crop on 32x32 image folders: before and after issue 15", "",
             f"{payload['date']}, `{payload['command']}`, {payload['machine']}, 1 thread. "
             "cifar_resnet20, default proxy (2 epochs, 2,000 cifar10-mini images, seed 0); "
             f"the same weights validated on the same {len(val)} held-out training images.", "",
             "| architecture | old: resize 37 + centre crop 32 | new: whole image |",
             "|---|---:|---:|"]
    lines += [f"| {r['arch']} | {100 * r['acc_old_crop_0875']:.1f} % | "
              f"{100 * r['acc_whole_image']:.1f} % |" for r in rows]
    (OUT / "eval_crop_effect.md").write_text("\n".join(lines) + "\n")
    return 0


def _old_transform():
    """The evaluation transform image folders used before the fix (ImageNet-style 0.875)."""
    from torchvision.transforms import v2

    return v2.Compose([
        v2.Resize(round(32 / 0.875), antialias=True), v2.CenterCrop(32), v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True), v2.Normalize(D.IMAGENET_MEAN, D.IMAGENET_STD),
        v2.ToPureTensor(),
    ])


if __name__ == "__main__":
    sys.exit(main())
