//! What a gallery backend does: SQLite with an in-process index ([`crate::sqlite`]) or
//! PostgreSQL with pgvector searching on the server ([`crate::postgres`]). [`crate::Gallery`]
//! is the one face callers see; what the backends share (export, import, re-embedding) is
//! written there once.

use maskid_core::Embedding;

use crate::{
    ApiKey, Candidate, Check, Enrolment, ExportedFace, ExportedSubject, FaceInfo, IndexKind, IndexState, ModelRef,
    NewFace, Result, Role, Storage, Subject,
};

/// One storage backend of a gallery. Every method is one consistent step: a transaction on
/// the database, and the search index (where there is one) following it.
pub(crate) trait Backend: Send + Sync {
    /// How searches are served from now on.
    fn set_index(&mut self, kind: IndexKind);
    /// Prepares search (builds an in-process index) and says how it serves.
    fn index_state(&self) -> Result<IndexState>;
    /// Faces a search compares a probe with, for decisions that scale with the gallery: exact
    /// on SQLite; on PostgreSQL at most 10 s old, and the planner's estimate from 100,000.
    fn searched_faces(&self) -> Result<usize>;
    fn add_subject(&self, name: &str, metadata: &serde_json::Value) -> Result<Subject>;
    /// Enrols a face of `name` (created with `metadata` when new), refusing another model's
    /// embeddings and a photo already enrolled for the subject.
    fn enroll(&self, name: &str, metadata: &serde_json::Value, face: &NewFace) -> Result<Enrolment>;
    fn remove_subject(&self, name: &str) -> Result<()>;
    fn remove_face(&self, id: i64) -> Result<()>;
    /// Up to `top` different people most like `probe`, each by their best face.
    fn identify(&self, probe: &Embedding, top: usize, threshold: f32) -> Result<Vec<Candidate>>;
    fn subjects(&self) -> Result<Vec<Subject>>;
    /// At most `limit` subjects named after `after`, by name (names compared as bytes).
    fn subjects_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<Subject>>;
    fn subject_count(&self) -> Result<usize>;
    fn subject(&self, name: &str) -> Result<Subject>;
    fn faces(&self, name: &str) -> Result<Vec<FaceInfo>>;
    fn model(&self) -> Result<Option<ModelRef>>;
    fn check(&self) -> Result<Check>;
    fn add_key(&self, name: &str, role: Role, secret_sha256: &str) -> Result<()>;
    fn key_by_hash(&self, secret_sha256: &str) -> Result<Option<ApiKey>>;
    fn keys(&self) -> Result<Vec<ApiKey>>;
    fn remove_key(&self, name: &str) -> Result<()>;
    /// Every subject and face, as of one moment.
    fn exported(&self) -> Result<(Vec<ExportedSubject>, Vec<ExportedFace>)>;
    /// Adds exported rows with their creation times, all or nothing; returns (faces added,
    /// faces already there).
    fn import(&self, subjects: &[ExportedSubject], faces: &[ExportedFace]) -> Result<(usize, usize)>;
    /// What the faces take on disk.
    fn storage(&self) -> Result<Storage>;
    /// Every face's kept crop, by face id.
    fn crops(&self) -> Result<Vec<(i64, Option<Vec<u8>>)>>;
    /// Replaces every face's embedding and the model, all or nothing.
    fn replace_embeddings(&self, model: &ModelRef, embeddings: &[(i64, Embedding)]) -> Result<()>;
}
