//! Embeddings of unmasked prepared crops, cached per (prepared data set, model file), so that
//! each photo is embedded once per model: evaluation reruns, masked settings (whose references
//! stay clean) and distillation all reuse them.
//!
//! One append-only file `embeddings-<model sha256 prefix>.bin` in the prepared folder. A
//! record is `u16 path length, path bytes, u32 dimension, dimension x f32`, little-endian.
//! A record cut short by a kill is dropped when the file is opened again.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use maskid_core::Embedding;

use crate::{Error, Result};

/// The cache of one model over one prepared data set.
pub struct EmbeddingCache {
    path: PathBuf,
    file: File,
    map: HashMap<String, Embedding>,
}

/// Parses complete records from `bytes`; returns them and the length they span.
fn parse(bytes: &[u8]) -> (Vec<(String, Embedding)>, usize) {
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        let start = pos;
        let Some(len) = bytes.get(pos..pos + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize) else { break };
        pos += 2;
        let Some(path) = bytes.get(pos..pos + len).and_then(|b| std::str::from_utf8(b).ok()) else {
            return (out, start);
        };
        pos += len;
        let Some(dim) = bytes.get(pos..pos + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize) else {
            return (out, start);
        };
        pos += 4;
        let Some(raw) = bytes.get(pos..pos + 4 * dim) else { return (out, start) };
        pos += 4 * dim;
        let values = raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        out.push((path.to_string(), Embedding::from_unit(values)));
    }
    (out, pos)
}

impl EmbeddingCache {
    /// Opens (creating) the cache of the model with `model_sha256` in `prepared_dir`.
    pub fn open(prepared_dir: &Path, model_sha256: &str) -> Result<Self> {
        let prefix = model_sha256.get(..16).unwrap_or(model_sha256);
        let path = prepared_dir.join(format!("embeddings-{prefix}.bin"));
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::cache(&path, e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| Error::cache(&path, e))?;
        let (records, good) = parse(&bytes);
        if good < bytes.len() {
            file.set_len(good as u64).map_err(|e| Error::cache(&path, e))?;
        }
        Ok(Self { path, file, map: records.into_iter().collect() })
    }

    /// The cached embedding of a photo (path relative to the data set root).
    pub fn get(&self, photo: &str) -> Option<&Embedding> {
        self.map.get(photo)
    }

    /// Number of photos cached.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Appends embeddings, synced, under a file lock (other processes may append too).
    pub fn append(&mut self, items: Vec<(String, Embedding)>) -> Result<()> {
        let mut bytes = Vec::new();
        for (photo, e) in &items {
            let len =
                u16::try_from(photo.len()).map_err(|_| Error::cache(&self.path, format!("path too long: {photo}")))?;
            bytes.extend_from_slice(&len.to_le_bytes());
            bytes.extend_from_slice(photo.as_bytes());
            bytes.extend_from_slice(&(e.values().len() as u32).to_le_bytes());
            e.values().iter().for_each(|v| bytes.extend_from_slice(&v.to_le_bytes()));
        }
        self.file.lock().map_err(|e| Error::cache(&self.path, e))?;
        let written = self.file.write_all(&bytes).and_then(|_| self.file.sync_data());
        let _ = self.file.unlock();
        written.map_err(|e| Error::cache(&self.path, e))?;
        self.map.extend(items);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_a_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let e = |v: f32| Embedding::normalized(vec![v, 1.0, 2.0]);
        {
            let mut cache = EmbeddingCache::open(dir.path(), "abcdef0123456789ffff").unwrap();
            assert!(cache.is_empty());
            cache.append(vec![("a/1.jpg".into(), e(1.0)), ("b/2.jpg".into(), e(2.0))]).unwrap();
        }
        let file = dir.path().join("embeddings-abcdef0123456789.bin");
        let mut f = OpenOptions::new().append(true).open(&file).unwrap();
        f.write_all(&[7, 0, b'c', b'/']).unwrap(); // half a record
        let mut cache = EmbeddingCache::open(dir.path(), "abcdef0123456789ffff").unwrap();
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get("b/2.jpg"), Some(&e(2.0)));
        cache.append(vec![("c/3.jpg".into(), e(3.0))]).unwrap();
        let cache = EmbeddingCache::open(dir.path(), "abcdef0123456789ffff").unwrap();
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get("c/3.jpg"), Some(&e(3.0)));
        assert!(EmbeddingCache::open(dir.path(), "0000000000000000").unwrap().is_empty(), "per model");
    }
}
