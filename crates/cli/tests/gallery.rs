//! End-to-end tests of the gallery commands on the sample photos and the teacher: enroll,
//! identify (masked probes too), verify, list, show, remove.

mod common;

use std::process::Command;

use common::{maskid, sample, stderr, stdout_json};

#[test]
fn enroll_identify_verify_and_remove_people() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("people.db");
    let db_s = db.to_str().unwrap();
    let photo = |name: &str| sample(name).to_str().unwrap().to_string();
    for (name, file) in [("alice", "person_a_1.jpg"), ("bob", "person_b_1.jpg")] {
        let out = stdout_json(&maskid(&["enroll", "--gallery", db_s, "--name", name, &photo(file), "--json"]));
        assert!(out[0]["face_id"].as_i64().is_some(), "{out}");
    }
    // The same photo twice for one person is refused; the gallery is unchanged.
    let again = maskid(&["enroll", "--gallery", db_s, "--name", "alice", &photo("person_a_1.jpg")]);
    assert_eq!(again.status.code(), Some(3), "an input failed");
    assert!(stderr(&again).contains("already enrolled"), "{}", stderr(&again));

    // A masked photo of alice, made by maskid itself.
    let masked_dir = tmp.path().join("masked");
    let out = maskid(&["mask", &photo("person_a_2.jpg"), "-o", masked_dir.to_str().unwrap(), "--style", "surgical"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let masked = std::fs::read_dir(&masked_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name().unwrap().to_string_lossy().starts_with("person_a_2") && !p.to_string_lossy().contains(".map.")
        })
        .expect("masked photo written");

    let probes = [
        photo("person_a_2.jpg"),
        photo("person_b_2.jpg"),
        masked.to_str().unwrap().to_string(),
        photo("impostor_1.jpg"),
    ];
    let mut args = vec!["identify", "--gallery", db_s, "--json"];
    args.extend(probes.iter().map(String::as_str));
    let out = maskid(&args);
    assert_eq!(out.status.code(), Some(1), "the impostor matches nobody");
    let results: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let best = |i: usize| {
        (
            results[i]["candidates"][0]["name"].as_str().unwrap().to_string(),
            results[i]["candidates"][0]["matched"].as_bool().unwrap(),
        )
    };
    assert_eq!(best(0), ("alice".into(), true));
    assert_eq!(best(1), ("bob".into(), true));
    assert_eq!(best(2), ("alice".into(), true), "alice is recognised behind a surgical mask: {}", results[2]);
    assert!(!best(3).1, "{}", results[3]);
    // Decided at the default target FPIR for this gallery's faces: stricter than the 1:1
    // threshold (0.336); a threshold given is used as it is.
    let decided = &results[0];
    assert_eq!((decided["model"].as_str(), decided["fpir"].as_f64()), (Some("teacher"), Some(1e-3)), "{decided}");
    assert!(decided["threshold"].as_f64().unwrap() > 0.336, "{decided}");
    let given = maskid(&["identify", "--gallery", db_s, "--threshold", "0.3", masked.to_str().unwrap(), "--json"]);
    assert!((stdout_json(&given)[0]["threshold"].as_f64().unwrap() - 0.3).abs() < 1e-6);
    let both =
        maskid(&["identify", "--gallery", db_s, "--threshold", "0.3", "--fpir", "0.01", masked.to_str().unwrap()]);
    assert_eq!(both.status.code(), Some(2), "{}", stderr(&both));
    // The shipped G2D student lives in the teacher's embedding space: its embedding of the
    // masked probe is searched among the faces the teacher enrolled, without re-enrolment.
    let out = maskid(&["identify", "--gallery", db_s, "--model", "g2d", masked.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let g2d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(g2d[0]["candidates"][0]["name"], "alice", "{g2d}");
    assert_eq!(g2d[0]["candidates"][0]["matched"], true, "{g2d}");
    args.extend(["--index", "sketch"]);
    let sketched: serde_json::Value = serde_json::from_slice(&maskid(&args).stdout).unwrap();
    assert_eq!(sketched, results, "the sketched index answers as the exact one on a small gallery");
    let bad = maskid(&["identify", "--gallery", db_s, "--index", "hnsw", &probes[0]]);
    assert!(stderr(&bad).contains("auto, exact or sketch"), "{}", stderr(&bad));

    let listed = stdout_json(&maskid(&["gallery", "list", "--gallery", db_s, "--json"]));
    assert_eq!(listed["subjects"].as_array().unwrap().len(), 2);
    assert!(listed["model"]["sha256"].as_str().unwrap().len() == 64);
    let alice = stdout_json(&maskid(&["gallery", "show", "alice", "--gallery", db_s, "--json"]));
    assert_eq!(alice["faces"], 1);
    assert!(alice["face_list"][0]["id"].as_i64().is_some(), "face ids listed: {alice}");
    assert!(maskid(&["gallery", "remove", "bob", "--gallery", db_s]).status.success());
    let unknown = maskid(&["gallery", "show", "bob", "--gallery", db_s]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(stderr(&unknown).contains("no subject 'bob'"), "{}", stderr(&unknown));
    let out = maskid(&["identify", "--gallery", db_s, &photo("person_b_2.jpg"), "--json"]);
    let after: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(after[0]["candidates"][0]["matched"], false, "bob is gone: {after}");

    let same = maskid(&["verify", &photo("person_a_1.jpg"), &photo("person_a_2.jpg"), "--json"]);
    assert!(same.status.success());
    assert_eq!(stdout_json(&same)["same_person"], true);
    let different = maskid(&["verify", &photo("person_a_1.jpg"), &photo("person_b_1.jpg")]);
    assert_eq!(different.status.code(), Some(1));

    // The file is an SQLite database in WAL mode that passes its integrity check.
    let sqlite = Command::new("python3")
        .args(["-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print(c.execute('pragma journal_mode').fetchone()[0], c.execute('pragma integrity_check').fetchone()[0])", db_s])
        .output()
        .expect("python3 (maskid fetches its models with it) reads the gallery");
    assert_eq!(String::from_utf8_lossy(&sqlite.stdout).trim(), "wal ok", "{}", String::from_utf8_lossy(&sqlite.stderr));
}

#[test]
fn a_gallery_moves_between_files_and_models() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, copy) = (tmp.path().join("a.db"), tmp.path().join("b.db"));
    let (db_s, copy_s) = (db.to_str().unwrap(), copy.to_str().unwrap());
    let photo = |name: &str| sample(name).to_str().unwrap().to_string();
    for (name, file) in [("alice", "person_a_1.jpg"), ("bob", "person_b_1.jpg")] {
        let out = maskid(&["enroll", "--gallery", db_s, "--name", name, &photo(file), "--keep-crops"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    // Export, then import into a new file: the same people, faces and crops.
    let export = tmp.path().join("people.jsonl");
    assert!(maskid(&["gallery", "export", export.to_str().unwrap(), "--gallery", db_s]).status.success());
    let out = maskid(&["gallery", "import", export.to_str().unwrap(), "--gallery", copy_s]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 faces added"), "{}", stderr(&out));
    let again = maskid(&["gallery", "import", export.to_str().unwrap(), "--gallery", copy_s]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("0 faces added, 2 already there"));
    let identify = |db: &str, model: &str| {
        let out = maskid(&["identify", "--gallery", db, "--model", model, &photo("person_b_2.jpg"), "--json"]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()[0]["candidates"][0].clone()
    };
    let before = identify(copy_s, "teacher");
    assert_eq!(before["name"], "bob", "{before}");
    assert_eq!(before, identify(db_s, "teacher"), "the copy scores as the original");

    // Re-embedding with the shipped G2D model from the kept crops: the gallery now belongs
    // to g2d; the teacher (same embedding space) still searches it, a model of another space
    // is refused.
    let out = maskid(&["gallery", "reembed", "--model", "g2d", "--gallery", copy_s]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = stdout_json(&maskid(&["gallery", "list", "--gallery", copy_s, "--json"]));
    assert_eq!(listed["model"]["id"], "g2d-student", "{listed}");
    // Without --model, identify searches with the model the faces were enrolled with.
    let default = stdout_json(&maskid(&["identify", "--gallery", copy_s, &photo("person_b_2.jpg"), "--json"]));
    assert_eq!(default[0]["model"], "g2d", "{default}");
    assert_eq!(identify(copy_s, "teacher")["name"], "bob");
    // An embedding model of a space of its own: each face's mean colour (an ONNX file written
    // here, with no space in its metadata).
    let other = tmp.path().join("mean-colour.onnx");
    let mut graph = maskid_onnx::GraphWriter::default();
    let pooled = graph.op("GlobalAveragePool", &["faces"], vec![]);
    graph.node("Flatten", &[&pooled], "embedding", vec![maskid_onnx::Attribute::int("axis", 1)]);
    let faces: maskid_onnx::Shape = &[None, Some(3), Some(112), Some(112)];
    std::fs::write(&other, graph.model("mean_colour", ("faces", faces), ("embedding", &[None, Some(3)]), &[])).unwrap();
    let other = other.to_str().unwrap();
    let refused =
        maskid(&["identify", "--gallery", copy_s, "--model", other, "--threshold", "0.3", &photo("person_b_2.jpg")]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("embedding space"), "{}", stderr(&refused));
    assert!(identify(copy_s, "g2d")["similarity"].as_f64().is_some());
    // A student the user exported (another file, whose metadata names the teacher's space)
    // searches the teacher's gallery too: the space is read from the file, not from a list
    // of hashes maskid knows.
    let own = tmp.path().join("my-student.onnx");
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/g2d-student.onnx");
    let mut bytes = std::fs::read(shipped).unwrap();
    let field = |number: u8, payload: &[u8]| [&[(number << 3) | 2, payload.len() as u8][..], payload].concat();
    bytes.extend(field(14, &[field(1, b"maskid.note"), field(2, b"exported by its user")].concat()));
    std::fs::write(&own, bytes).unwrap();
    let (own, probe) = (own.to_str().unwrap(), photo("person_b_2.jpg"));
    let out = maskid(&["identify", "--gallery", db_s, "--model", own, "--threshold", "0.3", &probe, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout_json(&out)[0]["candidates"][0]["name"], "bob");
    // Faces of both models share it: the teacher enrols carol into the G2D gallery, and a
    // service of either model serves it and finds her.
    let out =
        maskid(&["enroll", "--gallery", copy_s, "--name", "carol", "--model", "teacher", &photo("impostor_1.jpg")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let carol = stdout_json(&maskid(&["gallery", "show", "carol", "--gallery", copy_s, "--json"]));
    assert_eq!(carol["face_list"][0]["model_id"], "face_recognition_sface_2021dec_int8bq", "{carol}");
    let reader = common::server::key(&copy, "read");
    let (carol_photo, stranger_photo) =
        (std::fs::read(photo("impostor_1.jpg")).unwrap(), std::fs::read(photo("impostor_2.jpg")).unwrap());
    for model in ["teacher", "g2d"] {
        let server = common::server::Server::start(&copy, &["--model", model]);
        let (status, found) = server.json("POST", "/v1/identify", &reader, "image/jpeg", &carol_photo);
        assert_eq!((status, found["match"].as_str()), (200, Some("carol")), "{model}: {found}");
        let (_, stranger) = server.json("POST", "/v1/identify", &reader, "image/jpeg", &stranger_photo);
        assert_eq!(stranger["match"], serde_json::Value::Null, "{model}: {stranger}");
    }

    // Without kept crops there is nothing to re-embed from.
    let bare = tmp.path().join("bare.db");
    maskid(&["enroll", "--gallery", bare.to_str().unwrap(), "--name", "carol", &photo("impostor_1.jpg")]);
    let out = maskid(&["gallery", "reembed", "--model", "g2d", "--gallery", bare.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no kept crop"), "{}", stderr(&out));
    // A file that is not an export is refused with its name.
    std::fs::write(tmp.path().join("x.jsonl"), "{\"format\": \"other\"}\n").unwrap();
    let out = maskid(&["gallery", "import", tmp.path().join("x.jsonl").to_str().unwrap(), "--gallery", copy_s]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not a maskid gallery export"), "{}", stderr(&out));
}

#[test]
fn a_missing_gallery_is_named_the_same_way_everywhere_and_never_created() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("typo.db");
    let db_s = db.to_str().unwrap();
    let photo = sample("person_a_1.jpg");
    for args in [
        vec!["identify", "--gallery", db_s, photo.to_str().unwrap()],
        vec!["gallery", "list", "--gallery", db_s],
        vec!["gallery", "check", "--gallery", db_s],
        vec!["keys", "list", "--gallery", db_s],
    ] {
        let out = maskid(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains("typo.db: no such gallery (`maskid enroll --gallery ...`"), "{}", stderr(&out));
        assert!(!db.exists(), "{args:?} created the gallery");
    }
}
