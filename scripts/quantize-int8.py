#!/usr/bin/env python3
"""Static int8 (QDQ, per-channel) quantisation of an exported student, for the trial in
models/README.md ("int8"). Not part of the build: the shipped model stays f32 because this
one loses accuracy (numbers in the model card).

Calibration: aligned crops of DevTrain people (never DevTest), half of them masked by
`maskid mask`. Needs a virtual environment with `onnxruntime==1.32.0 onnx numpy pillow`:

    python3 scripts/quantize-int8.py --model models/g2d-student.onnx --out /tmp/g2d-int8.onnx \
        --data ../shared/datasets/lfw --maskid target/release/maskid
"""
import argparse
import pathlib
import random
import subprocess
import tempfile

import numpy as np
import onnx
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                      QuantType, quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process
from PIL import Image


def calibration_crops(data, maskid, people, seed, workdir):
    """Aligned crops of `people` seeded DevTrain people (one photo each), clean and masked."""
    names = [line.split("\t")[0] for line in (data / "peopleDevTrain.txt").read_text().splitlines()[1:] if line]
    random.Random(seed).shuffle(names)
    photos = [sorted((data / "images_deepfunneled" / name).glob("*.jpg"))[0] for name in names[:people]]
    clean, masked = workdir / "clean", workdir / "masked"
    subprocess.run([maskid, "--quiet", "align", "-o", clean, *photos], check=True)
    subprocess.run([maskid, "--quiet", "mask", "--aligned", "--seed", str(seed), "-o", masked, clean], check=True)
    return sorted(clean.rglob("*.png")) + sorted(masked.rglob("*.png"))


def face_batch(paths):
    """The model's input: RGB in [-1, 1], [batch, 3, 112, 112]."""
    faces = [np.asarray(Image.open(p).convert("RGB"), np.float32) / 127.5 - 1.0 for p in paths]
    return np.stack(faces).transpose(0, 3, 1, 2)


class Faces(CalibrationDataReader):
    def __init__(self, paths, batch=16):
        self.batches = iter([{"faces": face_batch(paths[i:i + batch])} for i in range(0, len(paths), batch)])

    def get_next(self):
        return next(self.batches, None)


def pixel_stem(model):
    """The first two convolutions on the pixel path: int8 there costs the most accuracy."""
    consumers = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    stem = [n for n in consumers["faces"] if n.op_type == "Conv" and consumers[n.output[0]][0].op_type == "PRelu"][0]
    prelu = consumers[stem.output[0]][0]
    return [stem.name, consumers[prelu.output[0]][0].name]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=pathlib.Path, required=True)
    parser.add_argument("--out", type=pathlib.Path, required=True)
    parser.add_argument("--data", type=pathlib.Path, required=True, help="the LFW folder")
    parser.add_argument("--maskid", default="target/release/maskid")
    parser.add_argument("--people", type=int, default=48, help="calibration people (x2 crops)")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        crops = calibration_crops(args.data, args.maskid, args.people, args.seed, tmp)
        prepared = tmp / "prepared.onnx"
        quant_pre_process(str(args.model), str(prepared), skip_symbolic_shape=True)
        # Percentile ranges: min/max ones gave a mean cosine of 0.915 to the f32 embeddings, these 0.994.
        quantize_static(str(prepared), str(args.out), Faces(crops), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.Percentile,
                        nodes_to_exclude=pixel_stem(onnx.load(str(args.model))))
    source, quantised = onnx.load(str(args.model)), onnx.load(str(args.out))
    del quantised.metadata_props[:]
    quantised.metadata_props.extend(source.metadata_props)
    quantised.metadata_props.add(key="maskid.quantized", value=f"int8 QDQ per-channel, {len(crops)} DevTrain crops")
    onnx.save(quantised, str(args.out))
    print(f"wrote {args.out} from {len(crops)} calibration crops")


if __name__ == "__main__":
    main()
