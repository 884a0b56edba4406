//! The persistent gallery of maskid: subjects and their face embeddings, searchable.
//! [`Gallery`] is the one face of it, over two backends chosen by [`Location`]: an SQLite
//! file ([`SqliteStore`]) with an in-process index (cosine search, exact or through sign
//! sketches, [`FaceIndex`]; one best face per person, [`SubjectIndex`]), or a PostgreSQL
//! database with pgvector, searched on the server (HNSW or exact) and shared by every
//! process that opens it.
#![deny(missing_docs)]

mod backend;
mod exchange;
mod gallery;
mod index;
mod names;
mod pg_url;
mod postgres;
mod search;
mod sketch;
mod sqlite;
mod store;

pub use gallery::{BoxError, Check, Enrolment, Gallery, IndexState, Location, Storage};
pub use index::{ExactIndex, FaceIndex, Hit, IndexKind, AUTO_SKETCH_FACES, DEFAULT_RESCORE};
pub use names::{escaped_name, subject_metadata, subject_name, MAX_METADATA_BYTES, MAX_NAME_CHARS};
pub use postgres::{PostgresOptions, ScratchDatabase};
pub use search::{Candidate, SubjectIndex};
pub use store::{ApiKey, ExportedFace, ExportedSubject, FaceInfo, ModelRef, NewFace, Role, SqliteStore, Subject};

/// Errors of the gallery. The variants are categories (each maps to one HTTP status in the
/// service); their fields say what exactly, typed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// SQLite failed (file unreadable, locked, corrupt...).
    #[error("gallery database{}", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Database {
        /// The gallery file, when known.
        path: Option<PathBuf>,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// A file or database this maskid cannot use as a gallery.
    #[error("{gallery}: {problem}")]
    Unusable {
        /// The file or database (URL without password).
        gallery: String,
        /// Why.
        problem: Unusable,
    },
    /// A name or photo that is already there.
    #[error("duplicate: {0}")]
    Duplicate(Duplicate),
    /// An unknown subject, face or key.
    #[error("not found: {0}")]
    NotFound(Missing),
    /// Embeddings of a model of another embedding space than the gallery's.
    #[error("model mismatch: the gallery holds embeddings of {} (sha256 {}, embedding space {}), not comparable with those of {} (sha256 {}, embedding space {}); use the gallery's model or one of its space, or re-embed the gallery (`maskid gallery reembed`)", gallery.id, gallery.sha256, gallery.space, other.id, other.sha256, other.space)]
    ModelMismatch {
        /// The gallery's model.
        gallery: Box<ModelRef>,
        /// The model of the face, probe or export offered.
        other: Box<ModelRef>,
    },
    /// A bad argument.
    #[error("invalid: {0}")]
    Invalid(Invalid),
    /// The PostgreSQL server cannot be reached now (down, restarting, overloaded, no free
    /// connection in the pool within its wait): retry later.
    #[error("gallery {gallery} is unavailable: {reason}")]
    Unavailable {
        /// The database (URL without password).
        gallery: String,
        /// What happened.
        reason: String,
    },
    /// The PostgreSQL server refused maskid (wrong password, no such database or role).
    #[error("gallery {gallery}: the server refused the connection: {reason}")]
    Refused {
        /// The database (URL without password).
        gallery: String,
        /// What the server said.
        reason: String,
    },
    /// PostgreSQL failed otherwise.
    #[error("gallery {gallery}: {}", postgres::describe(source))]
    Postgres {
        /// The database (URL without password).
        gallery: String,
        /// What the server or the client said.
        source: tokio_postgres::Error,
    },
    /// Another connection holds the write lock longer than the busy timeout: retry.
    #[error("gallery busy")]
    Busy {
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// A gallery that was to be read is not there.
    #[error("{gallery}: no such gallery (`maskid enroll --gallery ...` or `maskid gallery import` creates one)")]
    NoGallery {
        /// The file or database given (URL without password).
        gallery: String,
    },
    /// Reading or writing an export file failed.
    #[error("{}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// An export file that cannot be imported.
    #[error("{}:{line}: {reason}", path.display())]
    BadExport {
        /// The file.
        path: PathBuf,
        /// The line (from 1).
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// Re-embedding needs every face's kept crop.
    #[error("{missing} of {faces} faces have no kept crop (enrolled without keeping crops): re-enrol them from their photos")]
    NoCrops {
        /// Faces without a crop.
        missing: usize,
        /// Faces in all.
        faces: usize,
    },
    /// A kept crop that is not a 112x112 RGB image.
    #[error("face {face}: the kept crop is not 112x112 RGB")]
    BadCrop {
        /// The face's id.
        face: i64,
    },
    /// The embedding function given to [`Gallery::reembed`] failed.
    #[error("re-embedding")]
    Embedding(#[source] BoxError),
    /// A thread panicked while holding the gallery (a bug).
    #[error("the gallery's lock is poisoned (a thread panicked while holding it)")]
    Poisoned,
}

/// Why a file cannot be used as a gallery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    /// Written by a newer maskid.
    #[error("schema version {found} is newer than this maskid knows ({known}); upgrade maskid")]
    NewerSchema {
        /// The file's schema version.
        found: usize,
        /// The newest this maskid knows.
        known: usize,
    },
    /// The PostgreSQL server lacks pgvector.
    #[error("the PostgreSQL server has no pgvector extension: install pgvector >= 0.7 on it (e.g. the package postgresql-NN-pgvector, or `maskid db start` for a local server that has it)")]
    NoVector,
    /// pgvector is older than maskid needs.
    #[error("the database has pgvector {version}; maskid needs >= 0.7 (ALTER EXTENSION vector UPDATE)")]
    OldVector {
        /// The installed version.
        version: String,
    },
    /// pgvector is available but maskid's user may not create it.
    #[error("pgvector is installed on the server but not created in this database, and maskid's user may not create it ({reason}): run `CREATE EXTENSION vector;` in the database as a superuser")]
    CannotCreateVector {
        /// What the server said.
        reason: String,
    },
    /// A row refers to a row that is not there (found when migrating).
    #[error("a row of {table} refers to a missing row; restore the gallery from a backup or `gallery export` what is readable")]
    DanglingRow {
        /// The table of the row.
        table: String,
    },
    /// SQLite would not switch it to write-ahead logging.
    #[error("cannot use WAL mode (got {mode})")]
    NoWal {
        /// The journal mode SQLite kept.
        mode: String,
    },
}

/// What is already in the gallery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Duplicate {
    /// A subject of that name.
    #[error("subject '{}' exists", escaped_name(name))]
    Subject {
        /// The name.
        name: String,
    },
    /// The same photo, enrolled for the subject with the same model.
    #[error("photo {source_sha256} is already enrolled for this subject")]
    Photo {
        /// SHA-256 of the photo.
        source_sha256: String,
    },
    /// An API key of that name.
    #[error("a key named '{name}' exists")]
    Key {
        /// The name.
        name: String,
    },
}

/// What is not in the gallery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Missing {
    /// A subject of that name.
    #[error("no subject '{}'", escaped_name(name))]
    Subject {
        /// The name asked for.
        name: String,
    },
    /// A subject of that id.
    #[error("no subject with id {id}")]
    SubjectId {
        /// The id.
        id: i64,
    },
    /// A face of that id.
    #[error("no face {id}")]
    Face {
        /// The id.
        id: i64,
    },
    /// An API key of that name.
    #[error("no key '{name}'")]
    Key {
        /// The name asked for.
        name: String,
    },
}

/// A bad argument.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// An empty (or all-space) subject name.
    #[error("a subject needs a non-empty name")]
    EmptyName,
    /// A subject name over [`MAX_NAME_CHARS`].
    #[error("a subject name has at most {MAX_NAME_CHARS} characters, got {chars}")]
    LongName {
        /// Its length in characters.
        chars: usize,
    },
    /// A subject name with a control or invisible character.
    #[error("subject name {} holds U+{code_point:04X} at character {position}: control and invisible characters are not allowed", escaped_name(name))]
    HiddenCharacter {
        /// The name.
        name: String,
        /// The character.
        code_point: u32,
        /// Where, from 1.
        position: usize,
    },
    /// A subject name that mixes scripts (Cyrillic "А" in "Аlice"): it can pass for another.
    #[error("subject name {} mixes the scripts {scripts}: a name mixing look-alike letters can pass for another person's; write it in one script", escaped_name(name))]
    MixedScripts {
        /// The name.
        name: String,
        /// The scripts it mixes.
        scripts: String,
    },
    /// Subject metadata over [`MAX_METADATA_BYTES`] as JSON.
    #[error("subject metadata is {bytes} bytes as JSON; at most {MAX_METADATA_BYTES} are kept")]
    LongMetadata {
        /// Its size as JSON.
        bytes: usize,
    },
    /// Not a role.
    #[error("role '{given}': use read, write or admin")]
    Role {
        /// What was given.
        given: String,
    },
    /// An embedding of another length than the gallery's.
    #[error("an embedding of {got} values where the gallery's have {expected}")]
    Dimension {
        /// The gallery's length.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// New embeddings that do not cover the gallery's faces one for one.
    #[error("{embeddings} new embeddings for {faces} faces: the gallery changed meanwhile")]
    Changed {
        /// Embeddings given.
        embeddings: usize,
        /// Faces in the gallery.
        faces: usize,
    },
    /// A gallery location that is neither a file path nor a PostgreSQL URL.
    #[error("gallery location '{url}': {reason}")]
    Url {
        /// The location given (password hidden).
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A second connection asked of an in-memory gallery.
    #[error("an in-memory gallery cannot be reopened")]
    InMemory,
}

impl Error {
    /// A SQLite error about the gallery file `path`.
    fn db(path: &std::path::Path, e: rusqlite::Error) -> Self {
        match Error::from(e) {
            Error::Database { source, .. } => Error::Database { path: Some(path.to_path_buf()), source },
            other => other,
        }
    }
}

impl From<rusqlite::Error> for Error {
    fn from(source: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked};
        match source.sqlite_error_code() {
            Some(DatabaseBusy | DatabaseLocked) => Error::Busy { source },
            _ => Error::Database { path: None, source },
        }
    }
}

use std::path::PathBuf;

/// Result of this crate.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;
    use maskid_core::Embedding;

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

    #[test]
    fn subjects_and_faces_persist_and_duplicates_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gallery.db");
        {
            let mut g = SqliteStore::open(&path).unwrap();
            let ann = g.add_subject("ann", &serde_json::json!({ "team": "a" })).unwrap();
            assert!(matches!(g.add_subject("ann", &serde_json::json!({})), Err(Error::Duplicate(_))));
            assert!(matches!(g.add_subject(" ", &serde_json::json!({})), Err(Error::Invalid(_))));
            g.enroll(ann, &face(vec![1.0, 0.0, 0.0], "photo1", "m1")).unwrap();
            g.enroll(ann, &face(vec![0.9, 0.1, 0.0], "photo2", "m1")).unwrap();
            assert!(matches!(g.enroll(ann, &face(vec![1.0, 0.0, 0.0], "photo1", "m1")), Err(Error::Duplicate(_))));
            let other = g.enroll(ann, &face(vec![1.0, 0.0, 0.0], "photo3", "m2"));
            assert!(
                matches!(other, Err(Error::ModelMismatch { gallery, other }) if gallery.sha256 == "m1" && other.sha256 == "m2")
            );
            assert!(matches!(g.enroll(999, &face(vec![1.0, 0.0, 0.0], "photo4", "m1")), Err(Error::NotFound(_))));
        }
        let g = SqliteStore::open(&path).unwrap();
        assert_eq!(g.journal_mode().unwrap(), "wal");
        let ann = g.subject("ann").unwrap();
        assert_eq!((ann.faces, ann.metadata["team"].as_str()), (2, Some("a")));
        assert_eq!(g.model().unwrap(), Some(model("m1")));
        assert_eq!(g.embeddings().unwrap().len(), 2);
        assert_eq!(g.integrity_check().unwrap(), "ok");
        g.remove_subject("ann").unwrap();
        assert!(g.embeddings().unwrap().is_empty(), "faces go with their subject");
        assert!(matches!(g.subject("ann"), Err(Error::NotFound(_))));
        assert!(matches!(g.remove_subject("ann"), Err(Error::NotFound(_))));
    }

    #[test]
    fn names_are_stored_normalised_and_found_in_either_form() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.db");
        let g = SqliteStore::open(&path).unwrap();
        // Decomposed "José" with a trailing space: stored composed and trimmed.
        let (jose, created) = g.subject_or_create("Jose\u{301} ", &serde_json::json!({})).unwrap();
        assert!(created);
        assert_eq!(jose.name, "José");
        let (again, created) = g.subject_or_create("José", &serde_json::json!({})).unwrap();
        assert_eq!((again.id, created), (jose.id, false));
        assert!(matches!(g.add_subject("Jose\u{301}", &serde_json::json!({})), Err(Error::Duplicate(_))));
        assert!(matches!(g.add_subject("bob\u{1b}[2J", &serde_json::json!({})), Err(Error::Invalid(_))));
        assert!(matches!(g.subject_or_create("a\u{202E}b", &serde_json::json!({})), Err(Error::Invalid(_))));
        // A name stored raw by an older maskid is still found, printed escaped, and removable.
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute("INSERT INTO subjects (name) VALUES ('old\u{1b}[31m ')", []).unwrap();
        let old = g.subject("old\u{1b}[31m ").unwrap();
        assert_eq!(escaped_name(&old.name), "old\\u{1b}[31m ");
        g.remove_subject("old\u{1b}[31m ").unwrap();
        assert_eq!(g.subjects().unwrap().len(), 1);
    }

    #[test]
    fn ids_are_never_reused_also_in_galleries_made_before_autoincrement() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        // A gallery as schema 3 left it: plain INTEGER PRIMARY KEYs.
        let old = rusqlite::Connection::open(&path).unwrap();
        old.execute_batch("PRAGMA foreign_keys = ON;").unwrap();
        for sql in &store::MIGRATIONS[..3] {
            old.execute_batch(sql).unwrap();
        }
        old.execute_batch(
            "PRAGMA user_version = 3;
             INSERT INTO subjects (id, name) VALUES (1, 'ann'), (2, 'bob');
             INSERT INTO faces (id, subject_id, embedding, model_id, model_sha256, source_sha256, score, crop)
                 VALUES (7, 1, x'0000803f', 'm', 'm1', 'p1', 0.9, x'01'), (8, 2, x'0000803f', 'm', 'm1', 'p2', 0.8, NULL);",
        )
        .unwrap();
        drop(old);
        let mut g = SqliteStore::open(&path).unwrap();
        assert_eq!(g.integrity_check().unwrap(), "ok");
        assert_eq!(g.subjects().unwrap().iter().map(|s| (s.id, s.faces)).collect::<Vec<_>>(), [(1, 1), (2, 1)]);
        assert_eq!(g.faces("ann").unwrap()[0].id, 7, "ids kept by the rebuild");
        // Remove the newest face and subject; new ones get new ids.
        g.remove_face(8).unwrap();
        g.remove_subject("bob").unwrap();
        let cy = g.add_subject("cy", &serde_json::json!({})).unwrap();
        assert_eq!(cy, 3, "bob's id 2 is not reused");
        let face = g.enroll(cy, &face(vec![1.0], "p3", "m1")).unwrap();
        assert_eq!(face, 9, "face 8's id is not reused");
        // Still cascading: a subject's faces go with it.
        g.remove_subject("cy").unwrap();
        assert!(g.embeddings().unwrap().iter().all(|(id, _, _)| *id == 7));
    }

    #[test]
    fn galleries_made_before_spaces_were_recorded_get_them_from_the_files_they_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let old = rusqlite::Connection::open(&path).unwrap();
        for sql in &store::MIGRATIONS[..4] {
            old.execute_batch(sql).unwrap();
        }
        let sface = "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee";
        old.execute_batch(&format!(
            "PRAGMA user_version = 4;
             INSERT INTO subjects (id, name) VALUES (1, 'ann'), (2, 'bob');
             INSERT INTO faces (subject_id, embedding, model_id, model_sha256, source_sha256, score)
                 VALUES (1, x'0000803f', 'sface', '{sface}', 'p1', 0.9), (2, x'0000803f', 'own', 'm1', 'p2', 0.8);"
        ))
        .unwrap();
        drop(old);
        let g = SqliteStore::open(&path).unwrap();
        let spaces: Vec<String> = g.export_faces().unwrap().into_iter().map(|f| f.model.space).collect();
        assert_eq!(spaces, ["sface-2021dec", "sha256:m1"]);
        // Exports of that time carry no space either: the same rule.
        assert_eq!(ModelRef::recorded_without_space("s".into(), sface.into()).space, "sface-2021dec");
        assert_eq!(ModelRef::recorded_without_space("o".into(), "m1".into()), ModelRef::new("o", "m1", None));
    }

    #[test]
    fn subjects_come_in_pages_by_name_and_are_counted_without_reading_them() {
        let dir = tempfile::tempdir().unwrap();
        let g = SqliteStore::open(&dir.path().join("g.db")).unwrap();
        for name in ["dee", "ann", "cy", "bob", "Émile"] {
            g.add_subject(name, &serde_json::json!({})).unwrap();
        }
        assert_eq!(g.subject_count().unwrap(), 5);
        let names = |page: Vec<Subject>| page.into_iter().map(|s| s.name).collect::<Vec<_>>();
        assert_eq!(names(g.subjects_after(None, 2).unwrap()), ["ann", "bob"]);
        assert_eq!(names(g.subjects_after(Some("bob"), 2).unwrap()), ["cy", "dee"]);
        assert_eq!(names(g.subjects_after(Some("dee"), 2).unwrap()), ["Émile"]);
        assert!(g.subjects_after(Some("Émile"), 2).unwrap().is_empty());
        // Metadata over the limit is refused, not stored.
        let big = serde_json::json!({ "blob": "x".repeat(MAX_METADATA_BYTES) });
        assert!(matches!(g.add_subject("eve", &big), Err(Error::Invalid(Invalid::LongMetadata { .. }))));
        assert_eq!(g.subject_count().unwrap(), 5);
    }

    #[test]
    fn a_write_lock_held_elsewhere_is_a_busy_error_not_a_database_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.db");
        let g = SqliteStore::open(&path).unwrap();
        let other = rusqlite::Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE; INSERT INTO subjects (name) VALUES ('held');").unwrap();
        g.set_busy_timeout(std::time::Duration::from_millis(50)).unwrap();
        assert!(matches!(g.add_subject("ann", &serde_json::json!({})), Err(Error::Busy { .. })));
        // Readers are not blocked by the writer (WAL).
        assert!(g.subjects().unwrap().is_empty());
        other.execute_batch("COMMIT").unwrap();
        g.add_subject("ann", &serde_json::json!({})).unwrap();
    }

    #[test]
    fn keys_are_kept_by_hash_and_faces_can_be_removed_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut g = SqliteStore::open(&dir.path().join("g.db")).unwrap();
        g.add_key("ops", Role::Admin, "hash1").unwrap();
        assert!(matches!(g.add_key("ops", Role::Read, "hash2"), Err(Error::Duplicate(_))));
        assert!(matches!("root".parse::<Role>(), Err(Error::Invalid(Invalid::Role { .. }))));
        assert!(Role::Read < Role::Write && Role::Write < Role::Admin);
        assert_eq!(g.key_by_hash("hash1").unwrap().map(|k| k.role), Some(Role::Admin));
        assert_eq!(g.key_by_hash("nope").unwrap(), None);
        assert_eq!(g.keys().unwrap().len(), 1);
        g.remove_key("ops").unwrap();
        assert!(g.key_by_hash("hash1").unwrap().is_none());
        assert!(matches!(g.remove_key("ops"), Err(Error::NotFound(_))));

        let ann = g.add_subject("ann", &serde_json::json!({})).unwrap();
        let first = g.enroll(ann, &face(vec![1.0, 0.0], "p1", "m")).unwrap();
        g.enroll(ann, &face(vec![0.0, 1.0], "p2", "m")).unwrap();
        assert_eq!(g.faces("ann").unwrap().len(), 2);
        g.remove_face(first).unwrap();
        assert!(matches!(g.remove_face(first), Err(Error::NotFound(_))));
        let left = g.faces("ann").unwrap();
        assert_eq!((left.len(), left[0].source_sha256.as_str()), (1, "p2"));
        let index = SubjectIndex::load(&g, IndexKind::Auto).unwrap();
        assert_eq!(index.face_ids(), vec![left[0].id]);
        let found = index.candidates(&[0.0, 1.0], 3, 0.5);
        assert_eq!((found.len(), found[0].name.as_str(), found[0].matched), (1, "ann", true));
    }

    #[test]
    fn a_file_that_is_not_a_gallery_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not.db");
        std::fs::write(&path, b"this is not an SQLite database, just some text padding it out").unwrap();
        let err = SqliteStore::open(&path).err().expect("refused").to_string();
        assert!(err.contains("not.db"), "{err}");
    }

    #[test]
    fn exact_search_ranks_by_cosine_and_survives_removal() {
        // Deterministic pseudo-random unit vectors, more than one block.
        let dim = 16;
        let mut state = 1u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        };
        let vectors: Vec<Vec<f32>> =
            (0..9000).map(|_| Embedding::normalized((0..dim).map(|_| next()).collect()).values().to_vec()).collect();
        let mut index = ExactIndex::new(dim);
        for (i, v) in vectors.iter().enumerate() {
            index.add(i as i64, v).unwrap();
        }
        assert!(index.add(1, &[0.0; 3]).is_err());
        let query = &vectors[1234];
        let hits = index.search(query, 5);
        assert_eq!(hits[0].id, 1234);
        assert!((hits[0].score - 1.0).abs() < 1e-5);
        let mut brute: Vec<(f32, i64)> = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| (v.iter().zip(query).map(|(a, b)| a * b).sum(), i as i64))
            .collect();
        brute.sort_by(|a, b| b.0.total_cmp(&a.0));
        assert_eq!(hits.iter().map(|h| h.id).collect::<Vec<_>>(), brute[..5].iter().map(|b| b.1).collect::<Vec<_>>());
        assert_eq!(index.remove(1234), Some(1234));
        assert_eq!(index.remove(1234), None);
        assert_eq!(index.len(), 8999);
        assert_eq!(index.search(query, 1)[0].id, brute[1].1, "the next best once the exact match is gone");
        let moved = &vectors[8999];
        assert_eq!(index.search(moved, 1)[0].id, 8999, "the last row moved into the hole keeps its id");
        assert!(index.add(8999, moved).is_err(), "an id already there");
        let many = index.search_many(&[query.clone(), moved.clone()].concat(), 5);
        assert_eq!(many, vec![index.search(query, 5), index.search(moved, 5)]);
    }

    #[test]
    fn sketched_search_finds_the_enrolled_face_of_a_noisy_probe_and_follows_removals() {
        // 20,000 random 128-d faces; probes are enrolled faces plus noise, at cosine ~0.6 to
        // them (a genuine pair), above any other face (the best of 20,000 others is ~0.35).
        let dim = 128;
        let mut state = 7u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 23) as f32) - 1.0
        };
        let faces: Vec<Vec<f32>> =
            (0..20_000).map(|_| Embedding::normalized((0..dim).map(|_| next()).collect()).values().to_vec()).collect();
        let mut sketched = FaceIndex::new(IndexKind::Sketch, dim).with_rescore(200);
        let mut exact = FaceIndex::new(IndexKind::Exact, dim);
        for (i, f) in faces.iter().enumerate() {
            sketched.add(i as i64, f).unwrap();
            exact.add(i as i64, f).unwrap();
        }
        assert!(sketched.is_sketched() && !exact.is_sketched());
        let probes: Vec<(i64, Vec<f32>)> = (0..200)
            .map(|p| {
                let target = (p * 97) as i64;
                let v = faces[target as usize].iter().map(|x| x + 2.2 * next() / (dim as f32).sqrt()).collect();
                (target, Embedding::normalized(v).values().to_vec())
            })
            .collect();
        for (t, p) in &probes {
            assert_eq!(exact.search(p, 1)[0].id, *t);
        }
        let found = probes.iter().filter(|(t, p)| sketched.search(p, 1)[0].id == *t).count();
        assert!(found >= 199, "recall@1 {found}/200");
        // Remove every probe's target: the sketches must move with the rows.
        for (t, _) in &probes {
            assert!(sketched.remove(*t) && exact.remove(*t));
        }
        let agree = probes.iter().filter(|(_, p)| sketched.search(p, 1) == exact.search(p, 1)).count();
        assert!(agree >= 150, "after removals the sketched top-1 still mostly matches exact: {agree}/200");
        let last = &faces[19_999];
        assert_eq!(sketched.search(last, 1)[0].id, 19_999, "the moved last row is still found");

        // Auto turns sketches on at its size; a kind switch sketches all rows at once.
        let mut auto = FaceIndex::new(IndexKind::Auto, dim);
        auto.add(1, &faces[1]).unwrap();
        assert!(!auto.is_sketched());
        auto.set_kind(IndexKind::Sketch);
        assert!(auto.is_sketched());
        assert_eq!(auto.search(&faces[1], 1)[0].id, 1);
        assert_eq!("sketch".parse::<IndexKind>(), Ok(IndexKind::Sketch));
        assert!("hnsw".parse::<IndexKind>().is_err());
    }
}
