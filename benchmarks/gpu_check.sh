#!/usr/bin/env bash
# The checks that need a GPU, in under 5 minutes on one: the CUDA tests, then Poly-CAM PCAM+-
# on 16 images in fp32, bf16 and fp16 against the inference limit, on ResNet50 and VGG16
# (random weights: they time like trained ones), and its fidelity to fp32 on the pretrained
# EfficientNet-Lite0 (benchmarks/precision_check.py). Writes each part's output to $OUT if set.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-.}"
export PYTHONUNBUFFERED=1
python3 -m pytest -q -p no:cacheprovider -k cuda tests 2>&1 | tail -5 | tee "$out/cuda_tests.txt"
for model in resnet50 vgg16; do
    python3 benchmarks/precision_check.py --model "torchvision.models:$model" --images 16 \
        --variant plusminus --no-fidelity 2>&1 | grep -v Warning | tee "$out/precision_$model.txt"
done
python3 benchmarks/precision_check.py --model efficientnet-lite0 --images 16 \
    --variant plusminus 2>&1 | grep -v Warning | tee "$out/precision_lite0.txt"
