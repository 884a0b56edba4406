//! The embedded backend: one SQLite file and a search index in this process's memory. Writes
//! go through one connection, reads through a second (in WAL mode readers never wait for a
//! writer, also one in another process), and searches run side by side.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard};

use maskid_core::Embedding;

use crate::backend::Backend;
use crate::{
    ApiKey, Candidate, Check, Enrolment, Error, ExportedFace, ExportedSubject, FaceInfo, IndexKind, IndexState,
    Invalid, ModelRef, NewFace, Result, Role, SqliteStore, Storage, Subject, SubjectIndex,
};

/// A gallery file with its search index.
pub(crate) struct SqliteGallery {
    writer: Mutex<SqliteStore>,
    reader: Mutex<SqliteStore>,
    /// Built on the first search (commands that only enrol never pay for it).
    index: RwLock<Option<SubjectIndex>>,
    kind: IndexKind,
}

impl SqliteGallery {
    pub(crate) fn open(path: &Path, kind: IndexKind) -> Result<Self> {
        let writer = SqliteStore::open(path)?;
        let reader = writer.reopen()?;
        Ok(Self { writer: Mutex::new(writer), reader: Mutex::new(reader), index: RwLock::new(None), kind })
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
}

impl Backend for SqliteGallery {
    fn set_index(&mut self, kind: IndexKind) {
        self.kind = kind;
    }

    fn index_state(&self) -> Result<IndexState> {
        let index = self.index()?;
        let index = index.as_ref().expect("BUG: index() loads it");
        Ok(IndexState { faces: index.len(), sketched: index.is_sketched() })
    }

    fn searched_faces(&self) -> Result<usize> {
        Ok(self.index_state()?.faces)
    }

    fn add_subject(&self, name: &str, metadata: &serde_json::Value) -> Result<Subject> {
        let writer = self.writer()?;
        writer.add_subject(name, metadata)?;
        let subject = writer.subject(name)?;
        self.update_index(|index| {
            index.add_subject(subject.id, &subject.name);
            Ok(())
        })?;
        Ok(subject)
    }

    fn enroll(&self, name: &str, metadata: &serde_json::Value, face: &NewFace) -> Result<Enrolment> {
        let mut writer = self.writer()?;
        // One transaction: a refused face leaves no new subject behind.
        let enrolment = writer.atomically(|store| {
            let (subject, subject_created) = store.subject_or_create(name, metadata)?;
            let face_id = store.insert_face(subject.id, face)?;
            Ok(Enrolment { face_id, subject: store.subject(&subject.name)?, subject_created })
        })?;
        let subject = &enrolment.subject;
        self.update_index(|index| {
            index.add_subject(subject.id, &subject.name);
            index.add_face(enrolment.face_id, subject.id, face.embedding.values())
        })?;
        Ok(enrolment)
    }

    fn remove_subject(&self, name: &str) -> Result<()> {
        let writer = self.writer()?;
        let subject = writer.subject(name)?;
        writer.remove_subject(&subject.name)?;
        self.update_index(|index| {
            index.remove_subject(subject.id);
            Ok(())
        })
    }

    fn remove_face(&self, id: i64) -> Result<()> {
        let writer = self.writer()?;
        writer.remove_face(id)?;
        self.update_index(|index| {
            index.remove_face(id);
            Ok(())
        })
    }

    fn identify(&self, probe: &Embedding, top: usize, threshold: f32) -> Result<Vec<Candidate>> {
        let index = self.index()?;
        let index = index.as_ref().expect("BUG: index() loads it");
        if !index.is_empty() && index.dim() != probe.values().len() {
            return Err(Error::Invalid(Invalid::Dimension { expected: index.dim(), got: probe.values().len() }));
        }
        Ok(index.candidates(probe.values(), top, threshold))
    }

    fn subjects(&self) -> Result<Vec<Subject>> {
        self.reader()?.subjects()
    }

    fn subjects_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<Subject>> {
        self.reader()?.subjects_after(after, limit)
    }

    fn subject_count(&self) -> Result<usize> {
        self.reader()?.subject_count()
    }

    fn subject(&self, name: &str) -> Result<Subject> {
        self.reader()?.subject(name)
    }

    fn faces(&self, name: &str) -> Result<Vec<FaceInfo>> {
        self.reader()?.faces(name)
    }

    fn model(&self) -> Result<Option<ModelRef>> {
        self.reader()?.model()
    }

    fn check(&self) -> Result<Check> {
        let reader = self.reader()?;
        let (subjects, faces) = reader.counts()?;
        Ok(Check { integrity: reader.integrity_check()?, subjects, faces })
    }

    fn add_key(&self, name: &str, role: Role, secret_sha256: &str) -> Result<()> {
        self.writer()?.add_key(name, role, secret_sha256)
    }

    fn key_by_hash(&self, secret_sha256: &str) -> Result<Option<ApiKey>> {
        self.reader()?.key_by_hash(secret_sha256)
    }

    fn keys(&self) -> Result<Vec<ApiKey>> {
        self.reader()?.keys()
    }

    fn remove_key(&self, name: &str) -> Result<()> {
        self.writer()?.remove_key(name)
    }

    fn exported(&self) -> Result<(Vec<ExportedSubject>, Vec<ExportedFace>)> {
        self.reader()?.exported()
    }

    fn import(&self, subjects: &[ExportedSubject], faces: &[ExportedFace]) -> Result<(usize, usize)> {
        let counts = self.writer()?.import(subjects, faces);
        self.forget_index()?;
        counts
    }

    fn storage(&self) -> Result<Storage> {
        let bytes = self.reader()?.file_bytes()?;
        Ok(Storage { bytes, search_index_bytes: None })
    }

    fn crops(&self) -> Result<Vec<(i64, Option<Vec<u8>>)>> {
        self.reader()?.crops()
    }

    fn replace_embeddings(&self, model: &ModelRef, embeddings: &[(i64, Embedding)]) -> Result<()> {
        self.writer()?.reembed(model, embeddings)?;
        self.forget_index()
    }
}
