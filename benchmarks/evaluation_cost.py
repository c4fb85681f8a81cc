"""What the evaluation costs per image, by method, to plan a dataset run.

Runs ``evaluate`` on the bundled photos (repeated to ``--images``) with a model by name,
then prints, per method, the seconds per image for its maps and for its metrics (insertion,
deletion, average drop, increase in confidence), as run.json records them, and the total.
Random weights time the same as trained ones: ``--model torchvision.models:vgg16``.

Run: ``python benchmarks/evaluation_cost.py --model torchvision.models:resnet50 --device cuda``
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from captum_polycam.evaluation import EvaluationConfig, evaluate
from captum_polycam.resources.images import bundled_folder

ALL_METHODS = "pcam+,pcam-,pcam+-,gradcam,ig,ixg,smoothgrad,occlusion,saliency,random"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--methods", default=ALL_METHODS)
    parser.add_argument("--images", type=int, default=4, help="copies of the 4 bundled photos")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as work:
        images = Path(work) / "images"
        images.mkdir()
        photos = sorted(p for p in bundled_folder().iterdir() if p.suffix != ".md")
        for index in range(args.images):
            photo = photos[index % len(photos)]
            shutil.copy(photo, images / f"{index:03d}_{photo.name}")
        config = EvaluationConfig(
            model=args.model, methods=tuple(args.methods.split(",")), batch_size=args.batch_size
        )
        start = time.perf_counter()
        evaluate(images, Path(work) / "out", config, device=args.device)
        seconds = time.perf_counter() - start
        record = json.loads((Path(work) / "out" / "run.json").read_text())

    print(
        f"{args.model} on {record['device_name']} ({args.device}), {args.images} images, "
        f"batch {args.batch_size}, 224 x 224, 224 steps, {torch.get_num_threads()} threads"
    )
    print(f"{'method':<16}{'maps s/image':>14}{'metrics s/image':>17}")
    for method, timing in record["timings"].items():
        print(
            f"{method:<16}{timing['map_seconds_per_image']:>14.2f}"
            f"{timing['metric_seconds_per_image']:>17.2f}"
        )
    print(f"whole run: {seconds:.1f} s, {seconds / args.images:.2f} s per image, all methods")


if __name__ == "__main__":
    main()
