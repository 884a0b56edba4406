//! Subjects and faces in SQLite. One gallery file belongs to one embedding model: the first
//! enrolled face fixes it, and faces of another model are refused.

use std::path::Path;

use maskid_core::{Embedding, MaskState};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::Serialize;

use crate::names::{subject_metadata, subject_name};
use crate::{Duplicate, Error, Invalid, Missing, Result, Unusable};

/// The files whose faces galleries recorded before they recorded embedding spaces, and whose
/// space is SFace's: the teacher and the four G2D students maskid shipped from 2026-12-01 to
/// 2026-12-04 (each says so in its metadata; the teacher's file has none). Faces of any other
/// file recorded then get a space of their own, `sha256:<file hash>`.
macro_rules! sface_space_files {
    () => {
        "'fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee', \
         'fd7b9a269be4912d204befdb83d5d7e4d433205ca3076b4070ba6778a4a83207', \
         '57f86a26696903e3c3cc90659ae5e70f4b0c3ffb448b15b2ec915b698be2afd2', \
         '5e727e8fe117d03e967c7ff89eef5235f02ee6c4b613f9cdd075381b4fadebee', \
         'a8b8a4275ee88d60ad46f5703b4f08a3b6c4cd3b2d5c7ab07a114375d2bd7653'"
    };
}
pub(crate) use sface_space_files;

/// Schema versions, applied in order; `PRAGMA user_version` records how many ran.
pub(crate) const MIGRATIONS: &[&str] = &[
    r#"
    CREATE TABLE subjects (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        metadata TEXT NOT NULL DEFAULT '{}',
        created TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
    );
    CREATE TABLE faces (
        id INTEGER PRIMARY KEY,
        subject_id INTEGER NOT NULL REFERENCES subjects(id) ON DELETE CASCADE,
        embedding BLOB NOT NULL,
        model_id TEXT NOT NULL,
        model_sha256 TEXT NOT NULL,
        source_sha256 TEXT NOT NULL,
        score REAL NOT NULL,
        created TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
        UNIQUE (subject_id, source_sha256, model_sha256)
    );
    CREATE INDEX faces_subject ON faces(subject_id);
"#,
    r#"
    CREATE TABLE api_keys (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        role TEXT NOT NULL CHECK (role IN ('read', 'write', 'admin')),
        sha256 TEXT NOT NULL UNIQUE,
        created TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
    );
"#,
    r#"
    ALTER TABLE faces ADD COLUMN crop BLOB;
"#,
    // AUTOINCREMENT: a removed face's or subject's id is never given to another, so a retried
    // `DELETE /v1/faces/58` cannot remove someone else's face. SQLite cannot add it to a
    // table, so both are rebuilt (with foreign keys off, see `migrate`).
    r#"
    CREATE TABLE subjects_new (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        metadata TEXT NOT NULL DEFAULT '{}',
        created TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
    );
    INSERT INTO subjects_new (id, name, metadata, created) SELECT id, name, metadata, created FROM subjects;
    CREATE TABLE faces_new (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        subject_id INTEGER NOT NULL REFERENCES subjects(id) ON DELETE CASCADE,
        embedding BLOB NOT NULL,
        model_id TEXT NOT NULL,
        model_sha256 TEXT NOT NULL,
        source_sha256 TEXT NOT NULL,
        score REAL NOT NULL,
        created TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
        crop BLOB,
        UNIQUE (subject_id, source_sha256, model_sha256)
    );
    INSERT INTO faces_new (id, subject_id, embedding, model_id, model_sha256, source_sha256, score, created, crop)
        SELECT id, subject_id, embedding, model_id, model_sha256, source_sha256, score, created, crop FROM faces;
    DROP TABLE faces;
    DROP TABLE subjects;
    ALTER TABLE subjects_new RENAME TO subjects;
    ALTER TABLE faces_new RENAME TO faces;
    CREATE INDEX faces_subject ON faces(subject_id);
"#,
    // 5: each face records its model's embedding space (read from the model file since).
    concat!(
        "ALTER TABLE faces ADD COLUMN embedding_space TEXT NOT NULL DEFAULT '';",
        "UPDATE faces SET embedding_space = CASE WHEN model_sha256 IN (",
        sface_space_files!(),
        ") THEN 'sface-2021dec' ELSE 'sha256:' || model_sha256 END;"
    ),
    // 6: each face records whether it wears a mask (NULL: enrolled before maskid told).
    "ALTER TABLE faces ADD COLUMN mask TEXT;",
];

/// The model that made a gallery's embeddings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelRef {
    /// A readable name (file name).
    pub id: String,
    /// SHA-256 of the model file.
    pub sha256: String,
    /// The embedding space, as the model file names it (`maskid.embedding_space`), else
    /// `sha256:<file hash>`: a space of its own.
    pub space: String,
}

impl ModelRef {
    /// A model of the space its file names, or of a space of its own.
    pub fn new(id: impl Into<String>, sha256: impl Into<String>, space: Option<String>) -> Self {
        let sha256 = sha256.into();
        let space = space.unwrap_or_else(|| format!("sha256:{sha256}"));
        Self { id: id.into(), sha256, space }
    }

    /// A model as galleries and exports recorded it before they recorded spaces.
    pub(crate) fn recorded_without_space(id: String, sha256: String) -> Self {
        let sface = sface_space_files!().contains(&format!("'{sha256}'"));
        Self::new(id, sha256, sface.then(|| "sface-2021dec".to_string()))
    }

    /// The one rule of a gallery: its embeddings are compared only with embeddings of its
    /// own space (the G2D student was trained into its teacher's, so a gallery takes faces and
    /// probes of either). `gallery` is `None` while the gallery has no face.
    pub(crate) fn admit(gallery: Option<&ModelRef>, offered: &ModelRef) -> Result<()> {
        match gallery {
            Some(gallery) if gallery.space != offered.space => {
                Err(Error::ModelMismatch { gallery: Box::new(gallery.clone()), other: Box::new(offered.clone()) })
            }
            _ => Ok(()),
        }
    }
}

/// The model of a gallery's faces, read in `db` (a connection or a transaction).
fn model_in(db: &Connection) -> Result<Option<ModelRef>> {
    Ok(db
        .query_row("SELECT model_id, model_sha256, embedding_space FROM faces LIMIT 1", [], |r| {
            Ok(ModelRef { id: r.get(0)?, sha256: r.get(1)?, space: r.get(2)? })
        })
        .optional()?)
}

/// A face to enroll.
#[derive(Debug, Clone)]
pub struct NewFace {
    /// The embedding (L2-normalised).
    pub embedding: Embedding,
    /// The model that made it.
    pub model: ModelRef,
    /// SHA-256 of the photo it came from (a photo is enrolled once per subject and model).
    pub source_sha256: String,
    /// Detection score.
    pub score: f32,
    /// The aligned 112x112 RGB crop, kept only when asked (biometric data): it lets
    /// `reembed` recompute the embedding with another model.
    pub crop: Option<Vec<u8>>,
    /// Whether the face wears a mask (a masked reference is a poor one).
    pub mask: Option<MaskState>,
}

/// An enrolled person.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Subject {
    /// Row id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Free JSON.
    pub metadata: serde_json::Value,
    /// Creation time (UTC, ISO 8601).
    pub created: String,
    /// Enrolled faces.
    pub faces: usize,
}

/// An enrolled face, without its embedding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaceInfo {
    /// Row id.
    pub id: i64,
    /// The model that made the embedding.
    pub model_id: String,
    /// SHA-256 of the source photo.
    pub source_sha256: String,
    /// Detection score.
    pub score: f64,
    /// Whether the face wears a mask (`None`: enrolled before maskid told).
    pub mask: Option<MaskState>,
    /// Creation time (UTC, ISO 8601).
    pub created: String,
}

/// A face as `gallery export` writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportedFace {
    /// Its subject's name.
    pub subject: String,
    /// The embedding.
    pub embedding: Vec<f32>,
    /// The model that made it.
    pub model: ModelRef,
    /// SHA-256 of the source photo.
    pub source_sha256: String,
    /// Detection score.
    pub score: f64,
    /// The kept crop, if any.
    pub crop: Option<Vec<u8>>,
    /// Whether the face wears a mask, if recorded.
    pub mask: Option<MaskState>,
    /// Creation time.
    pub created: String,
}

/// A subject as `gallery export` writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportedSubject {
    /// The name.
    pub name: String,
    /// Free JSON.
    pub metadata: serde_json::Value,
    /// Creation time.
    pub created: String,
}

/// What an API key may do. Ordered: admin can do what write can, write what read can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Search and list.
    Read,
    /// Also enrol and remove.
    Write,
    /// Also manage keys.
    Admin,
}

impl Role {
    /// Every role, weakest first.
    pub const ALL: [Role; 3] = [Role::Read, Role::Write, Role::Admin];

    /// `read`, `write` or `admin`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == name)
            .ok_or_else(|| Error::Invalid(Invalid::Role { given: name.to_string() }))
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An API key of the service, without its secret (only the secret's SHA-256 is stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    /// A readable name.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Creation time (UTC, ISO 8601).
    pub created: String,
}

/// The gallery file: one SQLite connection to it. [`crate::Gallery`] is what callers use.
pub struct SqliteStore {
    db: Connection,
}

impl SqliteStore {
    /// Opens (or creates) a gallery file: WAL journal, foreign keys on, migrations applied.
    pub fn open(path: &Path) -> Result<Self> {
        let db = Connection::open(path).map_err(|e| Error::db(path, e))?;
        db.busy_timeout(std::time::Duration::from_secs(5)).map_err(|e| Error::db(path, e))?;
        let mode: String =
            db.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(|e| Error::db(path, e))?;
        if mode != "wal" {
            return Err(Error::Unusable { gallery: path.display().to_string(), problem: Unusable::NoWal { mode } });
        }
        db.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;").map_err(|e| Error::db(path, e))?;
        let mut gallery = Self { db };
        gallery.migrate().map_err(|e| match e {
            Error::Unusable { problem, .. } => Error::Unusable { gallery: path.display().to_string(), problem },
            Error::Database { source, .. } => Error::Database { path: Some(path.to_path_buf()), source },
            other => other,
        })?;
        Ok(gallery)
    }

    /// A second connection to the same file (readers in WAL mode never wait for a writer).
    pub fn reopen(&self) -> Result<Self> {
        match self.db.path().filter(|p| !p.is_empty()) {
            Some(path) => Self::open(Path::new(path)),
            None => Err(Error::Invalid(Invalid::InMemory)),
        }
    }

    /// How long a write waits for another connection's write lock before `Error::Busy`
    /// (5 s from `open`).
    pub fn set_busy_timeout(&self, timeout: std::time::Duration) -> Result<()> {
        Ok(self.db.busy_timeout(timeout)?)
    }

    /// Runs the migrations not yet run, in one transaction. Foreign keys are off meanwhile
    /// (SQLite's procedure for rebuilding a table: dropping the old one would otherwise
    /// cascade to its faces) and checked before the commit.
    fn migrate(&mut self) -> Result<()> {
        self.db.pragma_update(None, "foreign_keys", false)?;
        let migrated = self.run_migrations();
        self.db.pragma_update(None, "foreign_keys", true)?;
        migrated
    }

    fn run_migrations(&mut self) -> Result<()> {
        let tx = self.db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version = tx.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
        if version > MIGRATIONS.len() {
            let problem = Unusable::NewerSchema { found: version, known: MIGRATIONS.len() };
            return Err(Error::Unusable { gallery: String::new(), problem });
        }
        for sql in &MIGRATIONS[version..] {
            tx.execute_batch(sql)?;
        }
        tx.pragma_update(None, "user_version", MIGRATIONS.len() as i64)?;
        let broken: Option<String> = tx.query_row("PRAGMA foreign_key_check", [], |r| r.get(0)).optional()?;
        if let Some(table) = broken {
            return Err(Error::Unusable { gallery: String::new(), problem: Unusable::DanglingRow { table } });
        }
        tx.commit()?;
        Ok(())
    }

    /// Adds a subject under its stored name ([`subject_name`]: NFKC, trimmed, one script,
    /// nothing hidden) with bounded metadata; a taken name is `Error::Duplicate`.
    pub fn add_subject(&self, name: &str, metadata: &serde_json::Value) -> Result<i64> {
        let name = subject_name(name)?;
        let metadata = subject_metadata(metadata)?;
        match self.db.execute("INSERT INTO subjects (name, metadata) VALUES (?1, ?2)", params![name, metadata]) {
            Ok(_) => Ok(self.db.last_insert_rowid()),
            Err(e) if is_unique_violation(&e) => Err(Error::Duplicate(Duplicate::Subject { name })),
            Err(e) => Err(e.into()),
        }
    }

    /// The subject of that name, created (with `metadata`) when there is none; `true` when
    /// it was created.
    pub fn subject_or_create(&self, name: &str, metadata: &serde_json::Value) -> Result<(Subject, bool)> {
        let created = match self.subject(name) {
            Ok(subject) => return Ok((subject, false)),
            Err(Error::NotFound(_)) => {
                self.add_subject(name, metadata)?;
                true
            }
            Err(e) => return Err(e),
        };
        Ok((self.subject(name)?, created))
    }

    /// The subject of that name: its stored form, or exactly as given (for names stored
    /// before names were checked).
    pub fn subject(&self, name: &str) -> Result<Subject> {
        let stored = subject_name(name).unwrap_or_default();
        self.subjects_where("s.name IN (?1, ?2)", None, params![stored, name])?
            .pop()
            .ok_or_else(|| Error::NotFound(Missing::Subject { name: name.to_string() }))
    }

    /// Every subject, by name.
    pub fn subjects(&self) -> Result<Vec<Subject>> {
        self.subjects_where("1", None, params![])
    }

    /// At most `limit` subjects named after `after` (from the first without it), by name.
    pub fn subjects_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<Subject>> {
        self.subjects_where("s.name > ?1", Some(limit), params![after.unwrap_or("")])
    }

    /// How many subjects there are.
    pub fn subject_count(&self) -> Result<usize> {
        Ok(self.db.query_row("SELECT COUNT(*) FROM subjects", [], |r| r.get::<_, i64>(0))? as usize)
    }

    /// Subjects matching `condition`, by name, the first `limit` of them.
    fn subjects_where(
        &self,
        condition: &str,
        limit: Option<usize>,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<Subject>> {
        let limit = limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX)); // -1: no limit
        let sql = format!(
            "SELECT s.id, s.name, s.metadata, s.created, COUNT(f.id) FROM subjects s \
             LEFT JOIN faces f ON f.subject_id = s.id WHERE {condition} GROUP BY s.id ORDER BY s.name LIMIT {limit}"
        );
        let mut stmt = self.db.prepare(&sql)?;
        let rows = stmt.query_map(args, |r| {
            let metadata: String = r.get(2)?;
            Ok(Subject {
                id: r.get(0)?,
                name: r.get(1)?,
                metadata: serde_json::from_str(&metadata).unwrap_or(serde_json::Value::Null),
                created: r.get(3)?,
                faces: r.get::<_, i64>(4)? as usize,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Removes a subject and its faces.
    pub fn remove_subject(&self, name: &str) -> Result<()> {
        let id = self.subject(name)?.id;
        self.db.execute("DELETE FROM subjects WHERE id = ?1", params![id])?;
        Ok(())
    }

    /// The model of the gallery's embeddings (`None` while it has no face).
    pub fn model(&self) -> Result<Option<ModelRef>> {
        model_in(&self.db)
    }

    /// Runs `work` in one transaction that takes the write lock at once: all or nothing.
    pub fn atomically<T>(&mut self, work: impl FnOnce(&Self) -> Result<T>) -> Result<T> {
        self.db.execute_batch("BEGIN IMMEDIATE")?;
        match work(self) {
            Ok(value) => {
                self.db.execute_batch("COMMIT")?;
                Ok(value)
            }
            Err(e) => {
                let _ = self.db.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    /// Enrolls a face of a subject, in one transaction with the model check. Returns the face id.
    pub fn enroll(&mut self, subject_id: i64, face: &NewFace) -> Result<i64> {
        self.atomically(|store| store.insert_face(subject_id, face))
    }

    /// Adds a face after checking its model against the gallery's (inside a transaction:
    /// [`SqliteStore::atomically`]).
    pub fn insert_face(&self, subject_id: i64, face: &NewFace) -> Result<i64> {
        ModelRef::admit(self.model()?.as_ref(), &face.model)?;
        let blob = embedding_blob(face.embedding.values());
        let inserted = self.db.execute(
            "INSERT INTO faces (subject_id, embedding, model_id, model_sha256, embedding_space, source_sha256, score, crop, \
             mask) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                subject_id,
                blob,
                face.model.id,
                face.model.sha256,
                face.model.space,
                face.source_sha256,
                f64::from(face.score),
                face.crop,
                face.mask.map(MaskState::name)
            ],
        );
        match inserted {
            Ok(_) => Ok(self.db.last_insert_rowid()),
            Err(e) if is_unique_violation(&e) => {
                Err(Error::Duplicate(Duplicate::Photo { source_sha256: face.source_sha256.clone() }))
            }
            Err(e) if is_foreign_key_violation(&e) => Err(Error::NotFound(Missing::SubjectId { id: subject_id })),
            Err(e) => Err(e.into()),
        }
    }

    /// Every face as (face id, subject id, embedding), ordered by face id.
    pub fn embeddings(&self) -> Result<Vec<(i64, i64, Vec<f32>)>> {
        let mut stmt = self.db.prepare("SELECT id, subject_id, embedding FROM faces ORDER BY id")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, embedding_values(&r.get::<_, Vec<u8>>(2)?))))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The faces of a subject, oldest first.
    pub fn faces(&self, name: &str) -> Result<Vec<FaceInfo>> {
        let subject = self.subject(name)?;
        let mut stmt = self.db.prepare(
            "SELECT id, model_id, source_sha256, score, created, mask FROM faces WHERE subject_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![subject.id], |r| {
            Ok(FaceInfo {
                id: r.get(0)?,
                model_id: r.get(1)?,
                source_sha256: r.get(2)?,
                score: r.get(3)?,
                mask: mask_state(r.get(5)?),
                created: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Removes one face.
    pub fn remove_face(&self, id: i64) -> Result<()> {
        match self.db.execute("DELETE FROM faces WHERE id = ?1", params![id])? {
            0 => Err(Error::NotFound(Missing::Face { id })),
            _ => Ok(()),
        }
    }

    /// Stores an API key by the SHA-256 of its secret.
    pub fn add_key(&self, name: &str, role: Role, secret_sha256: &str) -> Result<()> {
        match self.db.execute(
            "INSERT INTO api_keys (name, role, sha256) VALUES (?1, ?2, ?3)",
            params![name, role.name(), secret_sha256],
        ) {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(Error::Duplicate(Duplicate::Key { name: name.to_string() })),
            Err(e) => Err(e.into()),
        }
    }

    /// The key whose secret has this SHA-256, if any.
    pub fn key_by_hash(&self, secret_sha256: &str) -> Result<Option<ApiKey>> {
        Ok(self
            .db
            .query_row("SELECT name, role, created FROM api_keys WHERE sha256 = ?1", params![secret_sha256], api_key)
            .optional()?)
    }

    /// Every key, by name.
    pub fn keys(&self) -> Result<Vec<ApiKey>> {
        let mut stmt = self.db.prepare("SELECT name, role, created FROM api_keys ORDER BY name")?;
        let rows = stmt.query_map([], api_key)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Revokes a key.
    pub fn remove_key(&self, name: &str) -> Result<()> {
        match self.db.execute("DELETE FROM api_keys WHERE name = ?1", params![name])? {
            0 => Err(Error::NotFound(Missing::Key { name: name.to_string() })),
            _ => Ok(()),
        }
    }

    /// Every face with its kept crop (`None` where none was kept), by face id.
    pub fn crops(&self) -> Result<Vec<(i64, Option<Vec<u8>>)>> {
        let mut stmt = self.db.prepare("SELECT id, crop FROM faces ORDER BY id")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Replaces every face's embedding and model in one transaction (all or nothing).
    pub fn reembed(&mut self, model: &ModelRef, embeddings: &[(i64, Embedding)]) -> Result<()> {
        let tx = self.db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let faces: i64 = tx.query_row("SELECT COUNT(*) FROM faces", [], |r| r.get(0))?;
        if faces as usize != embeddings.len() {
            return Err(Error::Invalid(Invalid::Changed { embeddings: embeddings.len(), faces: faces as usize }));
        }
        for (id, embedding) in embeddings {
            tx.execute(
                "UPDATE faces SET embedding = ?1, model_id = ?2, model_sha256 = ?3, embedding_space = ?4 WHERE id = ?5",
                params![embedding_blob(embedding.values()), model.id, model.sha256, model.space, id],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Every face with all it holds, for export: (subject name, face, embedding, crop).
    pub fn export_faces(&self) -> Result<Vec<ExportedFace>> {
        let mut stmt = self.db.prepare(
            "SELECT s.name, f.embedding, f.model_id, f.model_sha256, f.embedding_space, f.source_sha256, f.score, \
             f.crop, f.created, f.mask \
             FROM faces f JOIN subjects s ON s.id = f.subject_id ORDER BY f.id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(ExportedFace {
                subject: r.get(0)?,
                embedding: embedding_values(&r.get::<_, Vec<u8>>(1)?),
                model: ModelRef { id: r.get(2)?, sha256: r.get(3)?, space: r.get(4)? },
                source_sha256: r.get(5)?,
                score: r.get(6)?,
                crop: r.get(7)?,
                mask: mask_state(r.get(9)?),
                created: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Adds exported subjects and faces with their creation times, in one transaction (all
    /// or nothing). Subjects already there are kept as they are; faces already there are
    /// skipped. Returns (faces added, faces skipped).
    pub fn import(&mut self, subjects: &[ExportedSubject], faces: &[ExportedFace]) -> Result<(usize, usize)> {
        let tx = self.db.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for s in subjects {
            tx.execute(
                "INSERT INTO subjects (name, metadata, created) VALUES (?1, ?2, ?3) ON CONFLICT (name) DO NOTHING",
                params![subject_name(&s.name)?, subject_metadata(&s.metadata)?, s.created],
            )?;
        }
        let mut model = model_in(&tx)?;
        let (mut added, mut skipped) = (0, 0);
        for f in faces {
            ModelRef::admit(Some(model.get_or_insert_with(|| f.model.clone())), &f.model)?;
            let name = subject_name(&f.subject)?;
            let subject: i64 = tx
                .query_row("SELECT id FROM subjects WHERE name = ?1", params![name], |r| r.get(0))
                .optional()?
                .ok_or(Error::NotFound(Missing::Subject { name }))?;
            let inserted = tx.execute(
                "INSERT INTO faces (subject_id, embedding, model_id, model_sha256, embedding_space, source_sha256, score, \
                 crop, created, mask) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT DO NOTHING",
                params![
                    subject,
                    embedding_blob(&f.embedding),
                    f.model.id,
                    f.model.sha256,
                    f.model.space,
                    f.source_sha256,
                    f.score,
                    f.crop,
                    f.created,
                    f.mask.map(MaskState::name)
                ],
            )?;
            match inserted {
                0 => skipped += 1,
                _ => added += 1,
            }
        }
        tx.commit()?;
        Ok((added, skipped))
    }

    /// Every subject and every face with all it holds, as of one moment (one read
    /// transaction), for `gallery export`.
    pub fn exported(&self) -> Result<(Vec<ExportedSubject>, Vec<ExportedFace>)> {
        self.db.execute_batch("BEGIN")?;
        let read = || -> Result<_> {
            let subjects = self.subjects()?;
            let subjects = subjects
                .into_iter()
                .map(|s| ExportedSubject { name: s.name, metadata: s.metadata, created: s.created })
                .collect();
            Ok((subjects, self.export_faces()?))
        };
        let result = read();
        self.db.execute_batch("COMMIT")?;
        result
    }

    /// (subjects, faces) held.
    pub fn counts(&self) -> Result<(usize, usize)> {
        let sql = "SELECT (SELECT COUNT(*) FROM subjects), (SELECT COUNT(*) FROM faces)";
        let (subjects, faces): (i64, i64) = self.db.query_row(sql, [], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok((subjects as usize, faces as usize))
    }

    /// Bytes of the database (pages in use times page size, write-ahead log not included).
    pub fn file_bytes(&self) -> Result<u64> {
        let sql = "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()";
        Ok(self.db.query_row(sql, [], |r| r.get::<_, i64>(0))? as u64)
    }

    /// The journal mode (`wal` once open).
    pub fn journal_mode(&self) -> Result<String> {
        Ok(self.db.query_row("PRAGMA journal_mode", [], |r| r.get(0))?)
    }

    /// `PRAGMA integrity_check`: `ok` or the problems SQLite found.
    pub fn integrity_check(&self) -> Result<String> {
        Ok(self.db.query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
    }
}

/// A row of `api_keys` (name, role, created); the table's CHECK keeps roles valid.
fn api_key(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApiKey> {
    let role: String = r.get(1)?;
    let role = role
        .parse()
        .map_err(|e: Error| rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, e.into()))?;
    Ok(ApiKey { name: r.get(0)?, role, created: r.get(2)? })
}

/// An embedding as stored: little-endian f32s.
fn embedding_blob(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn embedding_values(blob: &[u8]) -> Vec<f32> {
    blob.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

fn is_foreign_key_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY)
}

/// A recorded mask state; `None` for NULL and for a name this maskid does not know (a newer
/// one's), which reads as not recorded rather than failing the whole listing.
pub(crate) fn mask_state(name: Option<String>) -> Option<MaskState> {
    name.and_then(|n| n.parse().ok())
}
