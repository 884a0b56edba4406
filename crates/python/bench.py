"""Photo -> embedding speed from Python, against the CLI on the same photos, and against
face_recognition (dlib) where it is installed. BENCHMARKS.md, "Python bindings".

    python crates/python/bench.py --lfw ../shared/datasets/lfw --photos 300 [--json]

Photos: every n-th file of LFW's images_deepfunneled (sorted), `--photos` of them. Each
side does the whole chain (decode, detect, align, embed the centre face) one photo after the
other; maskid's sides also with two Python threads (the GIL is released during model work).
The photos are read once before; the sides are measured in interleaved rounds (median
reported), face_recognition once on a third of the photos. The CLI side is `maskid identify` over the same photos against a one-face gallery, timed as a
process, minus the time of the same command on one photo (start-up and model loading).
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import maskid

REPO = Path(__file__).resolve().parents[2]


def photos_of(lfw: Path, count: int) -> list:
    every = sorted((lfw / "images_deepfunneled").glob("*/*.jpg"))
    step = max(1, len(every) // count)
    return every[::step][:count]


def timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


class PythonSide:
    def __init__(self, photos: list, model: str):
        self.photos, self.rec = photos, maskid.Recognizer(model)
        self.rec.embed(photos[0], face="center")  # warm-up

    def one_thread(self) -> float:
        return len(self.photos) / timed(lambda: [self.rec.embed(p, face="center") for p in self.photos])

    def two_threads(self) -> float:
        with ThreadPoolExecutor(2) as pool:
            work = lambda: list(pool.map(lambda p: self.rec.embed(p, face="center"), self.photos))
            return len(self.photos) / timed(work)


class CliSide:
    def __init__(self, photos: list, cli: Path, model: str, tmp: Path):
        self.photos, self.cli = photos, cli
        gallery = tmp / f"{model}.db"
        self.run("enroll", "--gallery", gallery, "--name", "someone", "--model", model, "--face", "largest", photos[0])
        self.base = ["identify", "--gallery", gallery, "--model", model, "--face", "center", "--json"]

    def run(self, *args):
        subprocess.run([str(self.cli), "--quiet", *map(str, args)], capture_output=True, check=False)

    def photos_per_s(self) -> float:
        startup = min(timed(lambda: self.run(*self.base, self.photos[0])) for _ in range(2))
        total = timed(lambda: self.run(*self.base, *self.photos))
        return (len(self.photos) - 1) / (total - startup)


def face_recognition_side(photos: list) -> dict:
    """face_recognition's own chain (HOG detector, 68 landmarks, dlib ResNet), one photo at a time."""
    try:
        import face_recognition
    except ImportError:
        return {"error": "face_recognition is not installed"}

    def chain(path):
        image = face_recognition.load_image_file(path)
        boxes = face_recognition.face_locations(image)  # HOG detector, dlib's default
        if boxes:
            face_recognition.face_encodings(image, boxes[:1])

    chain(photos[0])
    return {"photos": len(photos), "photos_per_s": len(photos) / timed(lambda: [chain(p) for p in photos])}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=Path, default=REPO.parent / "shared" / "datasets" / "lfw")
    parser.add_argument("--photos", type=int, default=300)
    parser.add_argument("--cli", type=Path, default=Path(os.environ.get("MASKID_BIN", REPO / "target" / "release" / "maskid")))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    photos = photos_of(args.lfw, args.photos)
    for p in photos:  # every side reads them from the page cache
        p.read_bytes()
    report = {"photos": len(photos), "cores": os.cpu_count(), "rounds": args.rounds, "maskid": maskid.__version__}
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        sides = {}
        for model in ["teacher", "g2d"]:
            python, cli = PythonSide(photos, model), CliSide(photos, args.cli, model, Path(tmp))
            sides[f"python_{model}"] = python.one_thread
            sides[f"python_{model}_two_threads"] = python.two_threads
            sides[f"cli_{model}"] = cli.photos_per_s
        # Rounds interleave the sides, so that a slow spell of a shared machine hits them all.
        for _ in range(args.rounds):
            for name, measure in sides.items():
                runs.setdefault(name, []).append(measure())
    for name, values in runs.items():
        report[name] = {"median_photos_per_s": statistics.median(values), "runs": values}
    report["face_recognition"] = face_recognition_side(photos[: args.photos // 3])
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{report['photos']} LFW photos, {report['cores']} cores, photo -> embedding, median of {args.rounds} rounds:")
    for key, value in report.items():
        if isinstance(value, dict) and "median_photos_per_s" in value:
            runs = " ".join(f"{v:.1f}" for v in value["runs"])
            print(f"  {key:<26} {value['median_photos_per_s']:6.1f} photos/s  (runs {runs})")
    print(f"  face_recognition (dlib)    {report['face_recognition']}")


if __name__ == "__main__":
    main()
