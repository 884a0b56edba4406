//! What a new user tripped over in the trial of issue 33 (section 4), each fixed: a closed
//! pipe, empty folders, a wrong `--model`, a model that is not an embedding model, and file
//! names with terminal escapes.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};

use common::{maskid, sample, stderr};

#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    // `maskid detect ... | head -1`: the reader goes away before maskid writes.
    let photo = sample("person_a_1.jpg");
    let mut child = Command::new(env!("CARGO_BIN_EXE_maskid"))
        .args(["detect", photo.to_str().unwrap(), photo.to_str().unwrap(), "--json", "--quiet"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let status = child.wait().unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(!err.contains("panicked"), "{status:?}: {err}");
    assert_eq!(status.code(), Some(141), "the status a shell gives a SIGPIPE death: {err}");
}

#[test]
fn every_command_over_photos_says_the_same_of_an_empty_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let (empty, out, db) = (tmp.path().join("empty"), tmp.path().join("out"), tmp.path().join("g.db"));
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(empty.join("notes.txt"), "not a photo").unwrap();
    let (empty, out, db) = (empty.to_str().unwrap(), out.to_str().unwrap(), db.to_str().unwrap());
    let gallery = maskid(&["enroll", "--gallery", db, "--name", "bea", sample("person_b_1.jpg").to_str().unwrap()]);
    assert!(gallery.status.success(), "{}", stderr(&gallery));
    for args in [
        vec!["detect", empty],
        vec!["align", empty, "-o", out],
        vec!["mask", empty, "-o", out],
        vec!["enroll", "--gallery", db, "--name", "ann", empty],
        vec!["identify", "--gallery", db, empty],
    ] {
        let run = maskid(&args);
        assert_eq!(run.status.code(), Some(2), "{args:?}: {}", stderr(&run));
        assert!(stderr(&run).contains("no photos found in"), "{args:?}: {}", stderr(&run));
    }
}

#[test]
fn a_wrong_model_is_refused_before_any_photo_with_the_names_that_work() {
    let photo = sample("person_a_1.jpg");
    let photo = photo.to_str().unwrap();
    let typo = maskid(&["verify", photo, photo, "--model", "G2D"]);
    assert_eq!(typo.status.code(), Some(2), "{}", stderr(&typo));
    assert!(stderr(&typo).contains("teacher, g2d, or the path"), "{}", stderr(&typo));
    // The shipped inpainter is an ONNX file, but not an embedding model.
    let inpainter = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/g2d-small-unmask.onnx");
    let wrong = maskid(&["verify", photo, photo, "--model", inpainter.to_str().unwrap(), "--threshold", "0.3"]);
    assert_eq!(wrong.status.code(), Some(2), "{}", stderr(&wrong));
    assert!(stderr(&wrong).contains("not a face embedding model"), "{}", stderr(&wrong));
    assert!(stderr(&wrong).contains("[?, 3, 112, 112]"), "its shapes are named: {}", stderr(&wrong));
    // A model file has no built-in threshold: the error says which option gives one.
    let student = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/g2d-student.onnx");
    let plain = maskid(&["verify", photo, photo, "--model", student.to_str().unwrap()]);
    assert_eq!(plain.status.code(), Some(2), "{}", stderr(&plain));
    assert!(stderr(&plain).contains("give one with --threshold"), "{}", stderr(&plain));
}

#[test]
fn file_names_with_terminal_escapes_are_shown_escaped() {
    let tmp = tempfile::tempdir().unwrap();
    let named = tmp.path().join("alice\u{1b}[31m.jpg");
    std::fs::copy(sample("person_a_1.jpg"), &named).unwrap();
    let broken = tmp.path().join("bob\u{1b}[2J.jpg");
    std::fs::write(&broken, b"not a jpeg").unwrap();
    let run = maskid(&["detect", named.to_str().unwrap(), broken.to_str().unwrap()]);
    let (out, err) = (String::from_utf8_lossy(&run.stdout), stderr(&run));
    assert!(!out.contains('\u{1b}') && !err.contains('\u{1b}'), "raw escapes: {out:?} {err:?}");
    assert!(out.contains("alice\\u{1b}[31m.jpg"), "{out}");
    assert!(err.contains("bob\\u{1b}[2J.jpg"), "{err}");
}

#[test]
fn identify_face_all_answers_every_face_of_a_group_photo() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("g.db");
    let db = db.to_str().unwrap();
    let enrolled = maskid(&["enroll", "--gallery", db, "--name", "alice", sample("person_a_1.jpg").to_str().unwrap()]);
    assert!(enrolled.status.success(), "{}", stderr(&enrolled));
    let open = |name: &str| image::open(sample(name)).unwrap().to_rgb8();
    let (a, b) = (open("person_a_2.jpg"), open("impostor_1.jpg"));
    let mut group = image::RgbImage::from_pixel(a.width() + b.width(), a.height().max(b.height()), image::Rgb([90; 3]));
    image::imageops::replace(&mut group, &a, 0, 0);
    image::imageops::replace(&mut group, &b, i64::from(a.width()), 0);
    let path = tmp.path().join("group.jpg");
    group.save(&path).unwrap();
    let run = maskid(&["identify", "--gallery", db, "--face", "all", "--top", "1", path.to_str().unwrap(), "--json"]);
    assert!(run.status.success(), "a face matched: {}", stderr(&run));
    let answer: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let mut faces: Vec<(f64, serde_json::Value)> = answer[0]["faces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["box"]["x"].as_f64().unwrap(), f["candidates"][0]["matched"].clone()))
        .collect();
    faces.sort_by(|x, y| x.0.total_cmp(&y.0));
    let matched: Vec<serde_json::Value> = faces.into_iter().map(|(_, m)| m).collect();
    assert_eq!(matched, [serde_json::Value::Bool(true), serde_json::Value::Bool(false)], "{answer}");
    let text = maskid(&["identify", "--gallery", db, "--face", "all", path.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("face 1 at") && text.contains("face 2 at") && text.contains("is alice"), "{text}");
}

#[test]
fn a_folder_of_people_is_enrolled_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let people = tmp.path().join("people");
    for (name, photo) in [("alice", "person_a_1.jpg"), ("bob", "person_b_1.jpg")] {
        std::fs::create_dir_all(people.join(name)).unwrap();
        std::fs::copy(sample(photo), people.join(name).join(photo)).unwrap();
    }
    std::fs::write(people.join("bob").join("broken.jpg"), b"not a jpeg").unwrap();
    std::fs::create_dir_all(people.join("carl")).unwrap(); // no photos: nothing to do
    let db = tmp.path().join("g.db");
    let db = db.to_str().unwrap();
    let run = maskid(&["enroll", "--gallery", db, "--people", people.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(3), "one photo failed: {}", stderr(&run));
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(out.contains("2 people: 2 of 3 photos enrolled"), "{out}");
    assert!(stderr(&run).contains("broken.jpg"), "{}", stderr(&run));
    let listed = common::stdout_json(&maskid(&["gallery", "list", "--gallery", db, "--json"]));
    let names: Vec<&str> = listed["subjects"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["alice", "bob"]);
    let both = maskid(&["enroll", "--gallery", db, "--people", people.to_str().unwrap(), "--name", "x"]);
    assert_eq!(both.status.code(), Some(2), "--people or --name, not both");
}

#[test]
fn serve_logs_each_request_with_its_key_name_never_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("g.db");
    let db = db.to_str().unwrap();
    let created = common::stdout_json(&maskid(&[
        "keys",
        "create",
        "--gallery",
        db,
        "--role",
        "read",
        "--name",
        "door",
        "--json",
    ]));
    let secret = created["secret"].as_str().unwrap().to_string();
    // Not --quiet: the access log is on.
    let mut child = Command::new(env!("CARGO_BIN_EXE_maskid"))
        .args(["serve", "--bind", "127.0.0.1:0", "--gallery", db])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, read) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let addr = loop {
        let line = read.recv_timeout(std::time::Duration::from_secs(120)).expect("serve starts");
        if let Some(rest) = line.split("http://").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let bearer = format!("Bearer {secret}");
    let (status, _) = common::server::raw_request(&addr, "GET", "/v1/subjects/ann", &[("Authorization", &bearer)], b"");
    assert_eq!(status, 404);
    let (status, _) = common::server::raw_request(&addr, "GET", "/healthz", &[], b"");
    assert_eq!(status, 200);
    let mut log = Vec::new();
    while log.len() < 2 {
        let line = read.recv_timeout(std::time::Duration::from_secs(10)).expect("an access line per request");
        if line.contains("access") {
            log.push(line);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(log[0].contains("GET /v1/subjects/{name} 404") && log[0].ends_with("key=door"), "{log:?}");
    assert!(log[1].contains("GET /healthz 200") && log[1].ends_with("key=-"), "{log:?}");
    assert!(log.iter().all(|l| !l.contains(&secret) && !l.contains("ann")), "{log:?}");
}
