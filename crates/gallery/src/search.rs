//! Identification over a gallery: the face index plus who each face belongs to, answering
//! "which enrolled people look most like this face" with one best face per person.

use std::collections::HashMap;

use serde::Serialize;

use crate::{FaceIndex, IndexKind, Result, SqliteStore};

/// An enrolled person a probe resembles.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    /// The subject's name.
    pub name: String,
    /// Cosine similarity of the subject's best face to the probe.
    pub similarity: f32,
    /// Whether the similarity reaches the threshold.
    pub matched: bool,
}

/// The searchable faces of a gallery, kept in step with it by [`crate::Gallery`].
#[derive(Debug, Clone)]
pub struct SubjectIndex {
    index: FaceIndex,
    subject_of: HashMap<i64, i64>,
    names: HashMap<i64, String>,
}

impl SubjectIndex {
    /// Every face of `gallery`, searched as `kind` says.
    pub fn load(gallery: &SqliteStore, kind: IndexKind) -> Result<Self> {
        let names = gallery.subjects()?.into_iter().map(|s| (s.id, s.name)).collect();
        let faces = gallery.embeddings()?;
        // Rows first, then every sketch at once in parallel rather than one by one.
        let mut this = Self { index: FaceIndex::new(IndexKind::Exact, 0), subject_of: HashMap::new(), names };
        for (face, subject, values) in faces {
            this.add_face(face, subject, &values)?;
        }
        this.index.set_kind(kind);
        Ok(this)
    }

    /// The embedding length (0 while empty).
    pub fn dim(&self) -> usize {
        self.index.dim()
    }

    /// Faces held.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether searches go through sketches (see [`IndexKind`]).
    pub fn is_sketched(&self) -> bool {
        self.index.is_sketched()
    }

    /// Whether it holds no face.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Records a subject's name (before its faces are added).
    pub fn add_subject(&mut self, id: i64, name: &str) {
        self.names.insert(id, name.to_string());
    }

    /// Adds an enrolled face; the first face fixes the dimension.
    pub fn add_face(&mut self, face: i64, subject: i64, values: &[f32]) -> Result<()> {
        if self.index.is_empty() && self.index.dim() != values.len() {
            self.index = FaceIndex::new(self.index.kind(), values.len());
        }
        let expected = self.index.dim();
        self.index
            .add(face, values)
            .map_err(|_| crate::Error::Invalid(crate::Invalid::Dimension { expected, got: values.len() }))?;
        self.subject_of.insert(face, subject);
        Ok(())
    }

    /// Forgets a subject and its faces.
    pub fn remove_subject(&mut self, subject: i64) {
        let faces: Vec<i64> = self.subject_of.iter().filter(|(_, &s)| s == subject).map(|(&f, _)| f).collect();
        for face in faces {
            self.remove_face(face);
        }
        self.names.remove(&subject);
    }

    /// Forgets one face.
    pub fn remove_face(&mut self, face: i64) {
        self.index.remove(face);
        self.subject_of.remove(&face);
    }

    /// Face ids held, sorted (to compare with the gallery's table).
    pub fn face_ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.subject_of.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Up to `top` different people, most similar first, each by their best face.
    pub fn candidates(&self, probe: &[f32], top: usize, threshold: f32) -> Vec<Candidate> {
        let mut candidates: Vec<Candidate> = Vec::new();
        if self.index.is_empty() || top == 0 {
            return candidates;
        }
        // Enough faces to find `top` different people in all but pathological galleries.
        for hit in self.index.search(probe, self.index.len().min(top * 32)) {
            let name = &self.names[&self.subject_of[&hit.id]];
            if candidates.len() < top && !candidates.iter().any(|c| &c.name == name) {
                candidates.push(Candidate {
                    name: name.clone(),
                    similarity: hit.score,
                    matched: hit.score >= threshold,
                });
            }
        }
        candidates
    }
}
