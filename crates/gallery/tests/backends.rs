//! One gallery suite, two backends: every test below runs on an SQLite file and on a real
//! PostgreSQL with pgvector (the pinned PyPI server, started on loopback for each test; a
//! test fails loudly when it cannot start). Then what only PostgreSQL has: concurrent
//! opening, refused logins, a server without pgvector, and a server restart.

use maskid_core::Embedding;
use maskid_gallery::{
    Check, Duplicate, Error, ExportedFace, Gallery, IndexKind, Invalid, Location, ModelRef, NewFace, PostgresOptions,
    Role, Unusable,
};
use maskid_pgserver::Throwaway;

/// A gallery and what keeps it alive.
struct Fixture {
    location: Location,
    _dir: tempfile::TempDir,
    server: Option<Throwaway>,
}

impl Fixture {
    fn open(&self) -> Gallery {
        Gallery::open(&self.location).expect("open the gallery")
    }

    /// A second, empty gallery of the same backend.
    fn sibling(&self, name: &str) -> Location {
        match &self.server {
            Some(server) => server.new_database(name).expect("create a database").parse().unwrap(),
            None => Location::File(self._dir.path().join(format!("{name}.db"))),
        }
    }
}

fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    Fixture { location: Location::File(dir.path().join("g.db")), _dir: dir, server: None }
}

fn postgres() -> Fixture {
    let server = Throwaway::start(&maskid_assets::Assets::from_env())
        .expect("PostgreSQL from the pinned PyPI wheel must start for these tests (pip and PyPI needed once)");
    let location = server.new_database("gallery").unwrap().parse().unwrap();
    Fixture { location, _dir: tempfile::tempdir().unwrap(), server: Some(server) }
}

/// Each test of the suite, on both backends.
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        $(mod $test {
            #[test]
            fn sqlite() {
                super::$test(super::sqlite());
            }
            #[test]
            fn postgres() {
                super::$test(super::postgres());
            }
        })*
    };
}

on_both_backends!(
    enrolment_identification_and_removal_keep_the_same_rules,
    keys_names_and_metadata_are_kept_alike,
    exports_move_between_backends_bit_exact,
    reembedding_is_all_or_nothing,
    exact_and_approximate_search_agree,
    reading_never_creates_a_gallery,
);

fn model(sha: &str) -> ModelRef {
    ModelRef::new("test.onnx", sha, None)
}

fn face(values: Vec<f32>, source: &str, sha: &str) -> NewFace {
    NewFace {
        embedding: Embedding::normalized(values),
        model: model(sha),
        source_sha256: source.into(),
        score: 0.9,
        crop: None,
        mask: None,
    }
}

fn none() -> serde_json::Value {
    serde_json::json!({})
}

fn enrolment_identification_and_removal_keep_the_same_rules(fixture: Fixture) {
    let g = fixture.open();
    assert_eq!(g.model().unwrap(), None);
    assert!(g.identify(&Embedding::normalized(vec![1.0, 0.0, 0.0]), &model("m"), 3, 0.5).unwrap().is_empty());
    let first = g.enroll("ann", &serde_json::json!({ "team": "a" }), &face(vec![1.0, 0.0, 0.0], "p1", "m")).unwrap();
    assert!(first.subject_created);
    assert_eq!((first.subject.name.as_str(), first.subject.faces), ("ann", 1));
    let second = g.enroll("ann", &none(), &face(vec![0.9, 0.1, 0.0], "p2", "m")).unwrap();
    assert!(!second.subject_created);
    assert_eq!(second.subject.faces, 2);
    assert_eq!(second.subject.metadata["team"], "a", "metadata comes from the enrolment that created the subject");
    let bob = g.enroll("bob", &none(), &face(vec![0.0, 1.0, 0.0], "p3", "m")).unwrap();

    // Refusals.
    let again = g.enroll("ann", &none(), &face(vec![1.0, 0.0, 0.0], "p1", "m"));
    assert!(matches!(again, Err(Error::Duplicate(Duplicate::Photo { .. }))), "{again:?}");
    let other = g.enroll("ann", &none(), &face(vec![1.0, 0.0, 0.0], "p9", "m2"));
    assert!(
        matches!(other, Err(Error::ModelMismatch { gallery, other }) if gallery.sha256 == "m" && other.sha256 == "m2")
    );
    let refused = g.enroll("carl", &none(), &face(vec![1.0, 0.0, 0.0], "p9", "m2"));
    assert!(refused.is_err());
    assert!(g.subject("carl").is_err(), "a refused enrolment creates no subject on either backend... or is undone");
    assert!(matches!(g.enroll(" ", &none(), &face(vec![1.0, 0.0, 0.0], "p9", "m")), Err(Error::Invalid(_))));

    // Identification: each person by their best face, most similar first.
    let found = g.identify(&Embedding::normalized(vec![1.0, 0.05, 0.0]), &model("m"), 3, 0.5).unwrap();
    assert_eq!(found.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["ann", "bob"]);
    assert!(found[0].matched && !found[1].matched);
    assert!((found[0].similarity - 0.99875).abs() < 1e-3, "{}", found[0].similarity);
    assert_eq!(g.identify(&Embedding::normalized(vec![0.0, 1.0, 0.0]), &model("m"), 1, 0.5).unwrap()[0].name, "bob");
    // Probes of another embedding space are refused, not answered with meaningless scores.
    let foreign = g.identify(&Embedding::normalized(vec![0.0, 1.0, 0.0]), &model("m2"), 1, 0.5);
    assert!(matches!(foreign, Err(Error::ModelMismatch { .. })), "{foreign:?}");
    let wrong = g.identify(&Embedding::normalized(vec![1.0, 0.0]), &model("m"), 3, 0.5);
    assert!(matches!(wrong, Err(Error::Invalid(Invalid::Dimension { expected: 3, got: 2 }))), "{wrong:?}");

    // Removal reaches search at once.
    g.remove_face(bob.face_id).unwrap();
    assert!(matches!(g.remove_face(bob.face_id), Err(Error::NotFound(_))));
    assert_eq!(g.identify(&Embedding::normalized(vec![0.0, 1.0, 0.0]), &model("m"), 3, 0.0).unwrap().len(), 1);
    assert_eq!(g.faces("ann").unwrap().iter().map(|f| f.source_sha256.as_str()).collect::<Vec<_>>(), ["p1", "p2"]);
    g.remove_subject("ann").unwrap();
    assert!(matches!(g.remove_subject("ann"), Err(Error::NotFound(_))));
    assert!(g.identify(&Embedding::normalized(vec![1.0, 0.0, 0.0]), &model("m"), 3, 0.0).unwrap().is_empty());
    assert_eq!(g.check().unwrap(), Check { integrity: "ok".into(), subjects: 1, faces: 0 });
    // With no face left, the gallery takes another model (and length).
    g.enroll("dan", &none(), &face(vec![0.0, 1.0], "p5", "m2")).unwrap();
    assert_eq!(g.model().unwrap().unwrap().sha256, "m2");
    assert_eq!(g.identify(&Embedding::normalized(vec![0.1, 1.0]), &model("m2"), 1, 0.5).unwrap()[0].name, "dan");

    // Models of one embedding space share a gallery: the teacher's faces and those of the G2D
    // student trained into its space, each kept with its own model, and the mixed gallery's
    // export imports whole; a model of no shared space is still refused.
    let shared = fixture.open_sibling("shared");
    let teacher = ModelRef::new("sface.onnx", "t", Some("sface-2021dec".into()));
    let student = ModelRef::new("g2d-student.onnx", "s", Some("sface-2021dec".into()));
    let of =
        |values: Vec<f32>, source: &str, model: &ModelRef| NewFace { model: model.clone(), ..face(values, source, "") };
    shared.enroll("eve", &none(), &of(vec![1.0, 0.0, 0.0], "t1", &teacher)).unwrap();
    shared.enroll("eve", &none(), &of(vec![0.9, 0.1, 0.0], "s1", &student)).unwrap();
    let foreign = shared.enroll("eve", &none(), &face(vec![0.0, 1.0, 0.0], "o1", "m"));
    assert!(matches!(foreign, Err(Error::ModelMismatch { .. })), "{foreign:?}");
    let (_, faces) = shared.exported().unwrap();
    assert_eq!(faces.iter().map(|f| f.model.clone()).collect::<Vec<_>>(), [teacher.clone(), student.clone()]);
    let file = fixture._dir.path().join("shared.jsonl");
    shared.export(&file).unwrap();
    let copy = fixture.open_sibling("shared_copy");
    copy.enroll("fay", &none(), &of(vec![0.0, 0.0, 1.0], "s2", &student)).unwrap();
    assert_eq!(copy.import(&file).unwrap(), (2, 0));
    assert_eq!(copy.identify(&Embedding::normalized(vec![1.0, 0.0, 0.0]), &teacher, 1, 0.5).unwrap()[0].name, "eve");

    // A second handle (another process on PostgreSQL) sees all of it.
    let again = fixture.open();
    assert_eq!(again.subjects().unwrap().iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["bob", "dan"]);
}

fn keys_names_and_metadata_are_kept_alike(fixture: Fixture) {
    let g = fixture.open();
    g.add_key("ops", Role::Admin, "hash1").unwrap();
    assert!(matches!(g.add_key("ops", Role::Read, "hash2"), Err(Error::Duplicate(Duplicate::Key { .. }))));
    g.add_key("door", Role::Read, "hash3").unwrap();
    assert_eq!(g.key_by_hash("hash1").unwrap().map(|k| k.role), Some(Role::Admin));
    assert_eq!(g.key_by_hash("nope").unwrap(), None);
    assert_eq!(g.keys().unwrap().iter().map(|k| k.name.as_str()).collect::<Vec<_>>(), ["door", "ops"]);
    g.remove_key("ops").unwrap();
    assert!(matches!(g.remove_key("ops"), Err(Error::NotFound(_))));

    // Names: stored composed and trimmed, found in either form, hidden characters refused;
    // listed by bytes (so "Zoe" before "ann" on both).
    let jose = g.add_subject("Jose\u{301} ", &serde_json::json!({ "n": 1.5, "tags": ["x"] })).unwrap();
    assert_eq!(jose.name, "José");
    assert!(matches!(g.add_subject("José", &none()), Err(Error::Duplicate(_))));
    assert!(matches!(g.add_subject("bob\u{1b}[2J", &none()), Err(Error::Invalid(_))));
    g.add_subject("ann", &none()).unwrap();
    g.add_subject("Zoe", &none()).unwrap();
    let names: Vec<String> = g.subjects().unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["José", "Zoe", "ann"]);
    let found = g.subject("Jose\u{301}").unwrap();
    assert_eq!((found.metadata["n"].as_f64(), found.created.len()), (Some(1.5), "2026-12-02T03:00:00Z".len()));
}

fn exports_move_between_backends_bit_exact(fixture: Fixture) {
    let g = fixture.open();
    let mut crop_face = face(vec![1.0, 0.0, 0.25], "p1", "m");
    crop_face.crop = Some((0..112 * 112 * 3).map(|i| (i % 251) as u8).collect());
    crop_face.mask = Some(maskid_core::MaskState::BelowNose);
    g.enroll("ann", &serde_json::json!({ "team": "a" }), &crop_face).unwrap();
    g.enroll("bob", &none(), &face(vec![0.1, 0.7, -0.3], "p2", "m")).unwrap();
    g.add_subject("carl", &serde_json::json!({ "note": "no face yet" })).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("g.jsonl");
    assert_eq!(g.export(&file).unwrap(), (3, 2));

    // Into the other backend and back: the same rows, bit for bit, creation times too.
    let other = match &fixture.server {
        Some(_) => sqlite(),
        None => postgres(),
    };
    let copy = other.open();
    assert_eq!(copy.import(&file).unwrap(), (2, 0));
    assert_eq!(copy.import(&file).unwrap(), (0, 2), "a second import skips what is there");
    assert_eq!(copy.exported().unwrap(), g.exported().unwrap());
    let back_file = dir.path().join("back.jsonl");
    copy.export(&back_file).unwrap();
    assert_eq!(std::fs::read(&back_file).unwrap(), std::fs::read(&file).unwrap(), "the export files are identical");
    let back = fixture.open_sibling("back");
    assert_eq!(back.import(&back_file).unwrap(), (2, 0));
    assert_eq!(back.exported().unwrap(), g.exported().unwrap());
    let (_, faces): (_, Vec<ExportedFace>) = back.exported().unwrap();
    assert_eq!(faces[0].embedding, Embedding::normalized(vec![1.0, 0.0, 0.25]).values().to_vec());
    // The mask state travels with the face, and the listing shows it.
    assert_eq!(faces[0].mask, Some(maskid_core::MaskState::BelowNose));
    assert_eq!(back.faces("ann").unwrap()[0].mask, Some(maskid_core::MaskState::BelowNose));
    assert_eq!(back.faces("bob").unwrap()[0].mask, None);
    assert_eq!(
        copy.identify(&Embedding::normalized(vec![0.1, 0.7, -0.3]), &model("m"), 1, 0.5).unwrap()[0].name,
        "bob"
    );

    // An import of another model, or a broken file, changes nothing.
    let foreign = fixture.open_sibling("foreign");
    foreign.enroll("x", &none(), &face(vec![1.0, 0.0, 0.0], "q", "other")).unwrap();
    let foreign_file = dir.path().join("foreign.jsonl");
    foreign.export(&foreign_file).unwrap();
    assert!(matches!(g.import(&foreign_file), Err(Error::ModelMismatch { .. })));
    std::fs::write(&file, "{\"format\": \"maskid-gallery\"}\n{\"kind\": \"face\"}\n").unwrap();
    assert!(matches!(g.import(&file), Err(Error::BadExport { line: 2, .. })));
    assert_eq!(g.check().unwrap(), Check { integrity: "ok".into(), subjects: 3, faces: 2 });
}

impl Fixture {
    fn open_sibling(&self, name: &str) -> Gallery {
        Gallery::open(self.sibling(name)).unwrap()
    }
}

fn reembedding_is_all_or_nothing(fixture: Fixture) {
    let g = fixture.open();
    for (name, fill, values) in [("ann", 7u8, vec![1.0, 0.0]), ("bob", 9, vec![0.0, 1.0])] {
        let mut f = face(values, name, "m");
        f.crop = Some(vec![fill; 112 * 112 * 3]);
        g.enroll(name, &none(), &f).unwrap();
    }
    assert_eq!(g.identify(&Embedding::normalized(vec![1.0, 0.1]), &model("m"), 1, 0.5).unwrap()[0].name, "ann");
    // To a model with longer embeddings that swaps the two people.
    let other = ModelRef::new("other.onnx", "m2", None);
    let swapped = g.reembed(&other, |faces| {
        Ok(faces
            .iter()
            .map(|f| Embedding::normalized(if f.rgb()[0] == 7 { vec![0.0, 1.0, 0.0] } else { vec![1.0, 0.0, 0.0] }))
            .collect())
    });
    assert_eq!(swapped.unwrap(), 2);
    assert_eq!(g.model().unwrap(), Some(other.clone()));
    assert_eq!(g.identify(&Embedding::normalized(vec![0.0, 1.0, 0.1]), &other, 1, 0.5).unwrap()[0].name, "ann");
    let approximate = fixture.open().with_index(IndexKind::Sketch);
    assert_eq!(
        approximate.identify(&Embedding::normalized(vec![0.0, 1.0, 0.1]), &other, 1, 0.5).unwrap()[0].name,
        "ann"
    );
    let failed = g.reembed(&model("m3"), |_| Err("the model broke".into())).unwrap_err();
    assert!(maskid_core::error_message(&failed).contains("the model broke"), "{failed}");
    assert_eq!(g.model().unwrap().unwrap().sha256, "m2", "a failed re-embed changes nothing");
    g.enroll("carl", &none(), &face(vec![0.0, 0.0, 1.0], "c", "m2")).unwrap();
    assert!(matches!(g.reembed(&model("m3"), |_| unreachable!()), Err(Error::NoCrops { missing: 1, faces: 3 })));
}

fn exact_and_approximate_search_agree(fixture: Fixture) {
    // 3,000 random 128-d faces of 1,000 people; probes are enrolled faces plus noise, at
    // cosine ~0.6 from them: the true best is far above the rest, so HNSW must find it.
    let dim = 128;
    let mut state = 11u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 40) as f32 / (1u64 << 23) as f32) - 1.0
    };
    let vectors: Vec<Vec<f32>> =
        (0..3000).map(|_| Embedding::normalized((0..dim).map(|_| next()).collect()).values().to_vec()).collect();
    let subjects = (0..1000)
        .map(|i| maskid_gallery::ExportedSubject {
            name: format!("p{i:04}"),
            metadata: none(),
            created: "2026-12-02T00:00:00Z".into(),
        })
        .collect::<Vec<_>>();
    let faces = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| ExportedFace {
            subject: format!("p{:04}", i % 1000),
            embedding: v.clone(),
            model: model("m"),
            source_sha256: format!("s{i}"),
            score: 0.9,
            crop: None,
            mask: None,
            created: "2026-12-02T00:00:00Z".into(),
        })
        .collect::<Vec<_>>();
    assert_eq!(fixture.open().add_exported(&subjects, &faces).unwrap(), (3000, 0));
    let exact = fixture.open().with_index(IndexKind::Exact);
    let approximate = fixture.open().with_index(IndexKind::Sketch);
    assert!(approximate.index_state().unwrap().sketched);
    assert_eq!(exact.index_state().unwrap().faces, 3000);
    for (i, v) in vectors.iter().enumerate().step_by(97) {
        let noisy: Vec<f32> = v.iter().map(|x| x + 0.09 * next()).collect();
        let probe = Embedding::normalized(noisy);
        let a = exact.identify(&probe, &model("m"), 5, 0.3).unwrap();
        let b = approximate.identify(&probe, &model("m"), 5, 0.3).unwrap();
        assert_eq!(a[0].name, format!("p{:04}", i % 1000));
        assert_eq!(b[0].name, a[0].name);
        assert!((a[0].similarity - b[0].similarity).abs() < 1e-5);
        assert_eq!(a.len(), 5);
        let mut names: Vec<_> = a.iter().map(|c| &c.name).collect();
        names.dedup();
        assert_eq!(names.len(), 5, "one entry per person");
    }
}

fn reading_never_creates_a_gallery(fixture: Fixture) {
    let missing = fixture.sibling("empty");
    let err = Gallery::open_existing(&missing).err().expect("refused");
    assert!(matches!(err, Error::NoGallery { .. }), "{err}");
    if let Location::File(path) = &missing {
        assert!(!path.exists(), "reading never creates a file");
    }
    // Still not there: a refused open wrote nothing.
    assert!(matches!(Gallery::open_existing(&missing), Err(Error::NoGallery { .. })));
    Gallery::open(&missing).unwrap();
    Gallery::open_existing(&missing).unwrap();
}

// ---- PostgreSQL only ----

#[test]
fn postgres_many_processes_open_a_new_database_at_once_and_share_it() {
    let fixture = postgres();
    let location = fixture.sibling("race");
    // Eight handles migrating at once: one applies the schema, all succeed.
    let handles: Vec<Gallery> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..8).map(|_| s.spawn(|| Gallery::open(&location).unwrap())).collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    // Enrolments through all of them at once: each visible through every other at once.
    std::thread::scope(|s| {
        for (i, g) in handles.iter().enumerate() {
            s.spawn(move || {
                let mut v = vec![0.0f32; 8];
                v[i] = 1.0;
                g.enroll(&format!("p{i}"), &none(), &face(v, &format!("s{i}"), "m")).unwrap();
            });
        }
    });
    for (i, g) in handles.iter().enumerate() {
        let mut v = vec![0.0f32; 8];
        v[7 - i] = 1.0;
        assert_eq!(g.identify(&Embedding::normalized(v), &model("m"), 1, 0.5).unwrap()[0].name, format!("p{}", 7 - i));
    }
    // Two first faces of different models at once: exactly one model gets in.
    let location = fixture.sibling("models");
    let results: Vec<_> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..6)
            .map(|i| {
                let location = &location;
                s.spawn(move || {
                    let g = Gallery::open(location).unwrap();
                    g.enroll(&format!("p{i}"), &none(), &face(vec![1.0, i as f32], "s", &format!("m{}", i % 2)))
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let models: std::collections::BTreeSet<usize> =
        results.iter().enumerate().filter(|(_, r)| r.is_ok()).map(|(i, _)| i % 2).collect();
    assert_eq!(models.len(), 1, "{results:?}");
    assert!(results.iter().all(|r| r.is_ok() || matches!(r, Err(Error::ModelMismatch { .. }))), "{results:?}");
    assert_eq!(Gallery::open(&location).unwrap().check().unwrap().integrity, "ok", "one model in the gallery");
}

#[test]
fn postgres_bad_urls_wrong_passwords_and_missing_databases_are_clear_errors() {
    let fixture = postgres();
    let Location::Postgres(url) = &fixture.location else { unreachable!() };
    let (before, after) = url.rsplit_once('@').unwrap();
    let user = before.rsplit_once(':').unwrap().0;
    let bad_password = format!("{user}:not-the-password@{after}");
    let err = Gallery::open(bad_password.parse::<Location>().unwrap()).err().expect("refused");
    assert!(matches!(err, Error::Refused { .. }), "{err}");
    assert!(err.to_string().contains("password authentication failed"), "{err}");
    assert!(!err.to_string().contains("not-the-password"), "the password is never shown: {err}");
    let no_db = format!("{}/nowhere", url.rsplit_once('/').unwrap().0);
    let err = Gallery::open(no_db.parse::<Location>().unwrap()).err().expect("refused");
    assert!(matches!(err, Error::Refused { .. }) && err.to_string().contains("nowhere"), "{err}");
    let closed_port = url.replace(&format!(":{}/", fixture.server.as_ref().unwrap().server().port()), ":1/");
    let err = Gallery::open(closed_port.parse::<Location>().unwrap()).err().expect("refused");
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    for bad in ["postgres://u:p@host:port/db", "postgres://u:p@host/db?sslmode=sideways"] {
        let err = bad.parse::<Location>().unwrap_err();
        assert!(matches!(err, Error::Invalid(Invalid::Url { .. })), "{bad}: {err}");
    }
}

#[test]
fn postgres_without_pgvector_says_what_to_install() {
    let fixture = postgres();
    // The server's own files: take pgvector away from this throw-away server.
    let server = fixture.server.as_ref().unwrap().server();
    let extension = server.dir().join("server/pgserver/pginstall/share/postgresql/extension/vector.control");
    std::fs::remove_file(&extension).unwrap();
    let err = Gallery::open(fixture.sibling("plain")).err().expect("refused");
    assert!(matches!(err, Error::Unusable { problem: Unusable::NoVector, .. }), "{err}");
    assert!(err.to_string().contains("install pgvector >= 0.7"), "{err}");
}

#[test]
fn postgres_calls_fail_as_unavailable_while_the_server_is_down_and_recover_after() {
    let fixture = postgres();
    let options = PostgresOptions { wait_timeout: std::time::Duration::from_secs(2), ..Default::default() };
    let g = Gallery::open_with(&fixture.location, &options).unwrap();
    g.enroll("ann", &none(), &face(vec![1.0, 0.0], "p", "m")).unwrap();
    let server = fixture.server.as_ref().unwrap().server();
    server.kill().unwrap();
    let probe = Embedding::normalized(vec![1.0, 0.1]);
    let err = g.identify(&probe, &model("m"), 1, 0.5).unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    server.resume().unwrap();
    // The pool replaces its dead connections by itself: no reopening.
    let started = std::time::Instant::now();
    let found = loop {
        match g.identify(&probe, &model("m"), 1, 0.5) {
            Ok(found) => break found,
            Err(Error::Unavailable { .. }) if started.elapsed().as_secs() < 10 => {}
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(found[0].name, "ann", "committed data survives a crash of the server");
}
