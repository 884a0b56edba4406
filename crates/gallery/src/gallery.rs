//! The gallery as callers see it: one object that owns the SQLite store and the search index,
//! so that every enrolment and removal reaches both (no caller keeps an index in step by
//! hand). Safe to share between threads: writes go through one connection, reads through a
//! second (in WAL mode readers never wait for a writer, also one in another process), and
//! searches run side by side.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard};

use maskid_core::{AlignedFace, Embedding};
use serde::Serialize;

use crate::{
    ApiKey, Candidate, Error, FaceInfo, IndexKind, ModelRef, NewFace, Result, Role, SqliteStore, Subject, SubjectIndex,
};

/// A gallery file with its search index.
pub struct Gallery {
    path: PathBuf,
    writer: Mutex<SqliteStore>,
    reader: Mutex<SqliteStore>,
    /// Built on the first search (commands that only enrol never pay for it).
    index: RwLock<Option<SubjectIndex>>,
    kind: IndexKind,
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
    /// SQLite's `PRAGMA integrity_check`: `ok` or the problems found.
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
    /// Whether searches go through sketches ([`IndexKind`]).
    pub sketched: bool,
}

impl Gallery {
    /// Opens a gallery file, creating it when missing.
    pub fn open(path: &Path) -> Result<Self> {
        let writer = SqliteStore::open(path)?;
        let reader = writer.reopen()?;
        Ok(Self {
            path: path.to_path_buf(),
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
            index: RwLock::new(None),
            kind: IndexKind::Auto,
        })
    }

    /// Opens a gallery file that must exist: reading a gallery never creates one on a
    /// mistyped path ([`Error::NoGallery`]).
    pub fn open_existing(path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::NoGallery { path: path.to_path_buf() });
        }
        Self::open(path)
    }

    /// Searches with `kind` (default [`IndexKind::Auto`]).
    pub fn with_index(mut self, kind: IndexKind) -> Self {
        self.kind = kind;
        self
    }

    /// The gallery file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn writer(&self) -> Result<MutexGuard<'_, SqliteStore>> {
        self.writer.lock().map_err(|_| Error::Poisoned)
    }

    fn reader(&self) -> Result<MutexGuard<'_, SqliteStore>> {
        self.reader.lock().map_err(|_| Error::Poisoned)
    }

    /// Applies `change` to a loaded index (an unloaded one is built later from the file).
    fn update_index(&self, change: impl FnOnce(&mut SubjectIndex) -> Result<()>) -> Result<()> {
        match self.index.write().map_err(|_| Error::Poisoned)?.as_mut() {
            Some(index) => change(index),
            None => Ok(()),
        }
    }

    /// Drops the index after changes too wide to follow face by face (it is rebuilt from
    /// the file on the next search).
    fn forget_index(&self) -> Result<()> {
        *self.index.write().map_err(|_| Error::Poisoned)? = None;
        Ok(())
    }

    /// The index, built from the file when not yet loaded.
    fn index(&self) -> Result<RwLockReadGuard<'_, Option<SubjectIndex>>> {
        {
            let loaded = self.index.read().map_err(|_| Error::Poisoned)?;
            if loaded.is_some() {
                return Ok(loaded);
            }
        }
        // The writer's lock keeps this process's changes out while the rows are read.
        let writer = self.writer()?;
        let mut slot = self.index.write().map_err(|_| Error::Poisoned)?;
        if slot.is_none() {
            *slot = Some(SubjectIndex::load(&writer, self.kind)?);
        }
        drop((slot, writer));
        self.index.read().map_err(|_| Error::Poisoned)
    }

    /// Builds the search index now rather than on the first search (a service does so at
    /// start), and says how it serves.
    pub fn index_state(&self) -> Result<IndexState> {
        let index = self.index()?;
        let index = index.as_ref().expect("BUG: index() loads it");
        Ok(IndexState { faces: index.len(), sketched: index.is_sketched() })
    }

    /// How long a write waits for another connection's write lock before [`Error::Busy`]
    /// (5 s by default).
    pub fn set_busy_timeout(&self, timeout: std::time::Duration) -> Result<()> {
        self.writer()?.set_busy_timeout(timeout)
    }

    /// Adds a subject ([`crate::subject_name`] says which names are taken as they are).
    pub fn add_subject(&self, name: &str, metadata: &serde_json::Value) -> Result<Subject> {
        let writer = self.writer()?;
        writer.add_subject(name, metadata)?;
        let subject = writer.subject(name)?;
        self.update_index(|index| {
            index.add_subject(subject.id, &subject.name);
            Ok(())
        })?;
        Ok(subject)
    }

    /// Enrols a face of the subject `name`, created with `metadata` when new. The face's
    /// model must be the gallery's; a photo already enrolled for the subject is refused.
    pub fn enroll(&self, name: &str, metadata: &serde_json::Value, face: &NewFace) -> Result<Enrolment> {
        let mut writer = self.writer()?;
        let (subject, subject_created) = writer.subject_or_create(name, metadata)?;
        let face_id = writer.enroll(subject.id, face)?;
        self.update_index(|index| {
            index.add_subject(subject.id, &subject.name);
            index.add_face(face_id, subject.id, face.embedding.values())
        })?;
        let subject = writer.subject(&subject.name)?;
        Ok(Enrolment { face_id, subject, subject_created })
    }

    /// Removes a subject and their faces.
    pub fn remove_subject(&self, name: &str) -> Result<()> {
        let writer = self.writer()?;
        let subject = writer.subject(name)?;
        writer.remove_subject(&subject.name)?;
        self.update_index(|index| {
            index.remove_subject(subject.id);
            Ok(())
        })
    }

    /// Removes one face.
    pub fn remove_face(&self, id: i64) -> Result<()> {
        let writer = self.writer()?;
        writer.remove_face(id)?;
        self.update_index(|index| {
            index.remove_face(id);
            Ok(())
        })
    }

    /// Up to `top` different people most like `probe`, most similar first, each by their
    /// best face, marked matched from `threshold` (cosine similarity) on.
    pub fn identify(&self, probe: &Embedding, top: usize, threshold: f32) -> Result<Vec<Candidate>> {
        let index = self.index()?;
        Ok(index.as_ref().expect("BUG: index() loads it").candidates(probe.values(), top, threshold))
    }

    /// Every subject, by name.
    pub fn subjects(&self) -> Result<Vec<Subject>> {
        self.reader()?.subjects()
    }

    /// The subject of that name.
    pub fn subject(&self, name: &str) -> Result<Subject> {
        self.reader()?.subject(name)
    }

    /// The faces of a subject, oldest first.
    pub fn faces(&self, name: &str) -> Result<Vec<FaceInfo>> {
        self.reader()?.faces(name)
    }

    /// The model of the gallery's embeddings (`None` while it has no face).
    pub fn model(&self) -> Result<Option<ModelRef>> {
        self.reader()?.model()
    }

    /// Every face as (face id, subject id, embedding), by face id.
    pub fn embeddings(&self) -> Result<Vec<(i64, i64, Vec<f32>)>> {
        self.reader()?.embeddings()
    }

    /// SQLite's integrity check and the counts of subjects and faces.
    pub fn check(&self) -> Result<Check> {
        let reader = self.reader()?;
        let (subjects, faces) = reader.counts()?;
        Ok(Check { integrity: reader.integrity_check()?, subjects, faces })
    }

    /// The journal mode (`wal` once open).
    pub fn journal_mode(&self) -> Result<String> {
        self.reader()?.journal_mode()
    }

    /// Stores an API key of the service by the SHA-256 of its secret.
    pub fn add_key(&self, name: &str, role: Role, secret_sha256: &str) -> Result<()> {
        self.writer()?.add_key(name, role, secret_sha256)
    }

    /// The key whose secret has this SHA-256, if any.
    pub fn key_by_hash(&self, secret_sha256: &str) -> Result<Option<ApiKey>> {
        self.reader()?.key_by_hash(secret_sha256)
    }

    /// Every key, by name.
    pub fn keys(&self) -> Result<Vec<ApiKey>> {
        self.reader()?.keys()
    }

    /// Revokes a key.
    pub fn remove_key(&self, name: &str) -> Result<()> {
        self.writer()?.remove_key(name)
    }

    /// Writes every subject and face (embeddings, kept crops) to a JSON Lines file,
    /// atomically. Returns (subjects, faces) written.
    pub fn export(&self, output: &Path) -> Result<(usize, usize)> {
        crate::exchange::export(&*self.reader()?, output)
    }

    /// Adds the subjects and faces of a file written by [`Gallery::export`] (same model;
    /// faces already there are skipped). Returns (faces added, faces skipped).
    pub fn import(&self, input: &Path) -> Result<(usize, usize)> {
        let counts = crate::exchange::import(&mut *self.writer()?, input);
        self.forget_index()?;
        counts
    }

    /// Recomputes every face's embedding from its kept crop with `embed` (the crops, by face
    /// id, in one call), stored as made by `model`: all or nothing. Faces enrolled without a
    /// kept crop make it fail before `embed` runs. Returns the number of faces.
    pub fn reembed(
        &self,
        model: &ModelRef,
        embed: impl FnOnce(&[AlignedFace]) -> std::result::Result<Vec<Embedding>, BoxError>,
    ) -> Result<usize> {
        let mut writer = self.writer()?;
        let crops = writer.crops()?;
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
        writer.reembed(model, &ids.zip(embeddings).collect::<Vec<_>>())?;
        drop(writer);
        self.forget_index()?;
        Ok(faces.len())
    }
}

/// An error of the caller's embedding function, kept as the source of [`Error::Embedding`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
