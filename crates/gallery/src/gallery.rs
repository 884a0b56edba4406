//! The gallery as callers see it: one object over a storage backend, SQLite (a file and an
//! index in this process) or PostgreSQL with pgvector (search on the server, shared by every
//! process using the database). Every enrolment and removal reaches the backend's index;
//! nobody keeps one in step by hand. Safe to share between threads.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use maskid_core::{AlignedFace, Embedding};
use serde::Serialize;

use crate::backend::Backend;
use crate::pg_url::{parse_url, redacted};
use crate::postgres::{PgGallery, PostgresOptions};
use crate::sqlite::SqliteGallery;
use crate::{
    ApiKey, Candidate, Error, ExportedFace, ExportedSubject, FaceInfo, IndexKind, Invalid, ModelRef, NewFace, Result,
    Role, Subject,
};

/// Where a gallery lives: an SQLite file, or a PostgreSQL database given by URL
/// (`postgres://user:password@host:port/db`; `postgresql://` too).
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    /// An SQLite file.
    File(PathBuf),
    /// A PostgreSQL database with pgvector.
    Postgres(String),
}

impl FromStr for Location {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            parse_url(s)?;
            Ok(Location::Postgres(s.to_string()))
        } else if s.contains("://") {
            let scheme = s.split("://").next().unwrap_or_default().to_string();
            Err(Error::Invalid(Invalid::Url {
                url: redacted(s),
                reason: format!("unknown scheme '{scheme}' (use a file path or postgres://)"),
            }))
        } else if s.is_empty() {
            Err(Error::Invalid(Invalid::Url { url: String::new(), reason: "empty gallery location".into() }))
        } else {
            Ok(Location::File(PathBuf::from(s)))
        }
    }
}

impl From<&Path> for Location {
    fn from(path: &Path) -> Self {
        Location::File(path.to_path_buf())
    }
}

impl From<PathBuf> for Location {
    fn from(path: PathBuf) -> Self {
        Location::File(path)
    }
}

impl From<&PathBuf> for Location {
    fn from(path: &PathBuf) -> Self {
        Location::File(path.clone())
    }
}

impl From<&Location> for Location {
    fn from(location: &Location) -> Self {
        location.clone()
    }
}

/// The file path, or the URL without its password: safe to print and log.
impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File(path) => write!(f, "{}", path.display()),
            Location::Postgres(url) => f.write_str(&redacted(url)),
        }
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Location({self})")
    }
}

/// A gallery: subjects, their faces' embeddings, API keys, and search.
pub struct Gallery {
    location: Location,
    backend: Box<dyn Backend>,
}

/// What [`Gallery::enroll`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Enrolment {
    /// The new face's id.
    pub face_id: i64,
    /// The subject it belongs to (after the enrolment).
    pub subject: Subject,
    /// Whether the subject was created by this enrolment.
    pub subject_created: bool,
}

/// What [`Gallery::check`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// `ok` or the problems found (SQLite's `PRAGMA integrity_check`; on PostgreSQL, faces
    /// without a subject, mixed models or dimensions).
    pub integrity: String,
    /// Subjects held.
    pub subjects: usize,
    /// Faces held.
    pub faces: usize,
}

/// How a search is served, for health checks and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IndexState {
    /// Faces searchable.
    pub faces: usize,
    /// Whether searches are approximate (sketches on SQLite, HNSW on PostgreSQL).
    pub sketched: bool,
}

/// What a gallery's faces take on disk ([`Gallery::storage`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Storage {
    /// The faces with their indexes: the SQLite file, or PostgreSQL's `faces` table with
    /// its indexes and TOAST.
    pub bytes: u64,
    /// Of which the HNSW index (PostgreSQL; the SQLite backend's index is in memory).
    pub search_index_bytes: Option<u64>,
}

impl Gallery {
    /// Opens a gallery, creating it when missing (an SQLite file, or maskid's tables in a
    /// PostgreSQL database, which must exist).
    pub fn open(location: impl Into<Location>) -> Result<Self> {
        Self::open_with(location, &PostgresOptions::default())
    }

    /// [`Gallery::open`] with PostgreSQL's pool and search settings (unused for a file).
    pub fn open_with(location: impl Into<Location>, options: &PostgresOptions) -> Result<Self> {
        Self::open_backend(location.into(), options, true)
    }

    /// Opens a gallery that must exist: reading a gallery never creates one on a mistyped
    /// path or an empty database ([`Error::NoGallery`]).
    pub fn open_existing(location: impl Into<Location>) -> Result<Self> {
        Self::open_existing_with(location, &PostgresOptions::default())
    }

    /// [`Gallery::open_existing`] with PostgreSQL's settings.
    pub fn open_existing_with(location: impl Into<Location>, options: &PostgresOptions) -> Result<Self> {
        Self::open_backend(location.into(), options, false)
    }

    /// The backend of `location`, created when missing if `create`.
    fn open_backend(location: Location, options: &PostgresOptions, create: bool) -> Result<Self> {
        let backend: Box<dyn Backend> = match &location {
            Location::File(path) if !create && !path.is_file() => {
                return Err(Error::NoGallery { gallery: location.to_string() })
            }
            Location::File(path) => Box::new(SqliteGallery::open(path, IndexKind::Auto)?),
            Location::Postgres(url) => Box::new(PgGallery::open(url, options, create)?),
        };
        Ok(Self { location, backend })
    }

    /// Searches with `kind` (default [`IndexKind::Auto`]).
    pub fn with_index(mut self, kind: IndexKind) -> Self {
        self.backend.set_index(kind);
        self
    }

    /// Where the gallery lives.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Prepares search now rather than on the first search (a service does so at start:
    /// the SQLite backend builds its index), and says how it serves.
    pub fn index_state(&self) -> Result<IndexState> {
        self.backend.index_state()
    }

    /// Faces a search compares a probe with, for decisions that scale with the gallery (a
    /// target FPIR): exact on SQLite; on PostgreSQL at most 10 s old, and from 100,000 faces
    /// the planner's estimate (an exact count would scan the table on every search).
    pub fn searched_faces(&self) -> Result<usize> {
        self.backend.searched_faces()
    }

    /// Adds a subject ([`crate::subject_name`] says which names are taken as they are).
    pub fn add_subject(&self, name: &str, metadata: &serde_json::Value) -> Result<Subject> {
        self.backend.add_subject(name, metadata)
    }

    /// Enrols a face of the subject `name`, created with `metadata` when new. The face's
    /// model must be the gallery's; a photo already enrolled for the subject is refused.
    pub fn enroll(&self, name: &str, metadata: &serde_json::Value, face: &NewFace) -> Result<Enrolment> {
        self.backend.enroll(name, metadata, face)
    }

    /// Removes a subject and their faces.
    pub fn remove_subject(&self, name: &str) -> Result<()> {
        self.backend.remove_subject(name)
    }

    /// Removes one face.
    pub fn remove_face(&self, id: i64) -> Result<()> {
        self.backend.remove_face(id)
    }

    /// Up to `top` different people most like `probe`, an embedding made by `model`, most
    /// similar first, each by their best face, marked matched from `threshold` (cosine
    /// similarity) on. A model of another embedding space is refused ([`Gallery::check_model`]).
    pub fn identify(&self, probe: &Embedding, model: &ModelRef, top: usize, threshold: f32) -> Result<Vec<Candidate>> {
        Ok(self.identify_each(std::slice::from_ref(probe), model, top, threshold)?.remove(0))
    }

    /// [`Gallery::identify`] for several probes of one model (the faces of a group photo), the
    /// model checked once for all of them.
    pub fn identify_each(
        &self,
        probes: &[Embedding],
        model: &ModelRef,
        top: usize,
        threshold: f32,
    ) -> Result<Vec<Vec<Candidate>>> {
        self.check_model(model)?;
        probes.iter().map(|probe| self.backend.identify(probe, top, threshold)).collect()
    }

    /// Refuses `model` unless its embeddings can be compared with the gallery's: a model of
    /// the gallery's embedding space (the G2D student and its teacher share one), or any
    /// model while the gallery has no face. Enrolment and import check the same inside their
    /// transactions.
    pub fn check_model(&self, model: &ModelRef) -> Result<()> {
        ModelRef::admit(self.model()?.as_ref(), model)
    }

    /// Every subject, by name.
    pub fn subjects(&self) -> Result<Vec<Subject>> {
        self.backend.subjects()
    }

    /// One page of subjects: at most `limit` named after `after` (from the first when
    /// `None`), by name. Pass the last name of a page to get the next.
    pub fn subjects_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<Subject>> {
        self.backend.subjects_after(after, limit)
    }

    /// How many subjects there are (without reading them).
    pub fn subject_count(&self) -> Result<usize> {
        self.backend.subject_count()
    }

    /// The subject of that name.
    pub fn subject(&self, name: &str) -> Result<Subject> {
        self.backend.subject(name)
    }

    /// The faces of a subject, oldest first.
    pub fn faces(&self, name: &str) -> Result<Vec<FaceInfo>> {
        self.backend.faces(name)
    }

    /// The model of the gallery's embeddings (`None` while it has no face).
    pub fn model(&self) -> Result<Option<ModelRef>> {
        self.backend.model()
    }

    /// The backend's consistency check and the counts of subjects and faces.
    pub fn check(&self) -> Result<Check> {
        self.backend.check()
    }

    /// What the faces take on disk.
    pub fn storage(&self) -> Result<Storage> {
        self.backend.storage()
    }

    /// Stores an API key of the service by the SHA-256 of its secret.
    pub fn add_key(&self, name: &str, role: Role, secret_sha256: &str) -> Result<()> {
        self.backend.add_key(name, role, secret_sha256)
    }

    /// The key whose secret has this SHA-256, if any.
    pub fn key_by_hash(&self, secret_sha256: &str) -> Result<Option<ApiKey>> {
        self.backend.key_by_hash(secret_sha256)
    }

    /// Every key, by name.
    pub fn keys(&self) -> Result<Vec<ApiKey>> {
        self.backend.keys()
    }

    /// Revokes a key.
    pub fn remove_key(&self, name: &str) -> Result<()> {
        self.backend.remove_key(name)
    }

    /// Every subject and face with all it holds (embeddings, kept crops, creation times), as
    /// of one moment, by face id.
    pub fn exported(&self) -> Result<(Vec<ExportedSubject>, Vec<ExportedFace>)> {
        self.backend.exported()
    }

    /// Adds subjects and faces as [`Gallery::exported`] gives them, keeping their creation
    /// times, all or nothing (same model; subjects already there are kept, faces already
    /// there skipped). Returns (faces added, faces skipped).
    pub fn add_exported(&self, subjects: &[ExportedSubject], faces: &[ExportedFace]) -> Result<(usize, usize)> {
        self.backend.import(subjects, faces)
    }

    /// Writes every subject and face to a JSON Lines file, atomically. Returns (subjects,
    /// faces) written.
    pub fn export(&self, output: &Path) -> Result<(usize, usize)> {
        let (subjects, faces) = self.exported()?;
        crate::exchange::write(output, self.model()?.as_ref(), &subjects, &faces)?;
        Ok((subjects.len(), faces.len()))
    }

    /// Adds the subjects and faces of a file written by [`Gallery::export`] from either
    /// backend (the file is read whole and checked before anything is written). Returns
    /// (faces added, faces skipped).
    pub fn import(&self, input: &Path) -> Result<(usize, usize)> {
        let (subjects, faces) = crate::exchange::read(input)?;
        self.add_exported(&subjects, &faces)
    }

    /// Recomputes every face's embedding from its kept crop with `embed` (the crops, by face
    /// id, in one call), stored as made by `model`: all or nothing. Faces enrolled without a
    /// kept crop make it fail before `embed` runs. Returns the number of faces.
    pub fn reembed(
        &self,
        model: &ModelRef,
        embed: impl FnOnce(&[AlignedFace]) -> std::result::Result<Vec<Embedding>, BoxError>,
    ) -> Result<usize> {
        let crops = self.backend.crops()?;
        let missing = crops.iter().filter(|(_, c)| c.is_none()).count();
        if missing > 0 {
            return Err(Error::NoCrops { missing, faces: crops.len() });
        }
        let mut faces = Vec::with_capacity(crops.len());
        for (id, crop) in &crops {
            let crop = crop.clone().expect("checked above");
            faces.push(AlignedFace::from_rgb(crop).ok_or(Error::BadCrop { face: *id })?);
        }
        let embeddings = embed(&faces).map_err(Error::Embedding)?;
        let ids = crops.iter().map(|(id, _)| *id);
        self.backend.replace_embeddings(model, &ids.zip(embeddings).collect::<Vec<_>>())?;
        Ok(faces.len())
    }
}

/// An error of the caller's embedding function, kept as the source of [`Error::Embedding`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_tell_files_from_databases_and_hide_passwords() {
        assert_eq!("people.db".parse::<Location>().unwrap(), Location::File("people.db".into()));
        let url = "postgres://maskid:s3cret@db.example:5433/faces?sslmode=disable";
        let location: Location = url.parse().unwrap();
        assert_eq!(location, Location::Postgres(url.into()));
        assert_eq!(location.to_string(), "postgres://maskid:***@db.example:5433/faces?sslmode=disable");
        assert!(!format!("{location:?}").contains("s3cret"));
        assert_eq!(redacted("postgresql://u@h/db"), "postgresql://u@h/db");
        for bad in ["mysql://x@y/z", "", "postgres://u:p@h:notaport/db"] {
            let err = bad.parse::<Location>().unwrap_err();
            assert!(matches!(err, Error::Invalid(Invalid::Url { .. })), "{bad}: {err}");
            assert!(!err.to_string().contains(":p@"), "{err}");
        }
    }
}
