//! The `prepare` cache: every photo of a data set detected and aligned once.
//!
//! One folder per (data set root, detector model, score threshold) under
//! `<MASKID_HOME>/prepared/`. `crops.bin` holds the 112x112 RGB crops back to back and
//! `index.jsonl` one record per photo. Crops are synced before their records are appended,
//! so after a kill the cache reopens at the last complete record and work resumes there.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use maskid_core::{AlignedFace, Landmarks5};
use maskid_face::{central_crop, FacePolicy};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::models::Models;
use crate::{Error, Progress, ProgressFn, Result};

/// What `prepare` knows of one photo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreparedRecord {
    /// Path relative to the data set root.
    pub path: String,
    /// Index of the crop in `crops.bin`; `None` when the photo could not be read.
    pub crop: Option<u64>,
    /// True when no face was found and the fixed central crop stands in.
    pub fallback: bool,
    /// Detector score of the chosen face.
    pub score: f32,
    /// Landmarks of the chosen face, in the photo's pixels.
    pub landmarks: Option<Landmarks5>,
    /// Why the photo could not be used.
    pub error: Option<String>,
}

/// Counts of one `prepare` run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PrepareSummary {
    /// Photos asked for.
    pub total: usize,
    /// Photos already in the cache.
    pub cached: usize,
    /// Photos processed now.
    pub processed: usize,
    /// Photos (in all) that needed the central-crop fallback.
    pub fallbacks: usize,
    /// Photos (in all) that could not be read.
    pub unreadable: usize,
    /// The cache folder.
    pub cache_dir: PathBuf,
}

/// An opened prepare cache.
pub struct PreparedSet {
    dir: PathBuf,
    records: HashMap<String, PreparedRecord>,
    crops: File,
}

const CHUNK: usize = 64;

/// The cache folder of a data set under the current detector.
pub fn cache_dir(home: &Path, data_root: &Path, models: &Models) -> Result<PathBuf> {
    let root = data_root.canonicalize().map_err(|e| Error::cache(data_root, e))?;
    // v2: the detector runs on a canvas of the photo's size rounded up to 32 px, not 640x640.
    let key = format!("v2|{}|yunet-2023mar-int8bq|{}", root.display(), models.detector.config().score_threshold);
    let hash = hex::encode(Sha256::digest(key.as_bytes()));
    Ok(home.join("prepared").join(&hash[..16]))
}

impl PreparedSet {
    /// Opens (creating if needed) a cache folder, dropping any half-written tail.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::cache(dir, e))?;
        let index_path = dir.join("index.jsonl");
        let crops_path = dir.join("crops.bin");
        let mut records = HashMap::new();
        let mut good_len = 0u64;
        let mut crop_count = 0u64;
        if let Ok(file) = File::open(&index_path) {
            let mut reader = BufReader::new(file);
            let mut line = String::new();
            loop {
                line.clear();
                let n = reader.read_line(&mut line).map_err(|e| Error::cache(&index_path, e))?;
                if n == 0 || !line.ends_with('\n') {
                    break; // end, or a line cut short by a kill
                }
                let Ok(record) = serde_json::from_str::<PreparedRecord>(&line) else { break };
                good_len += n as u64;
                if let Some(c) = record.crop {
                    crop_count = crop_count.max(c + 1);
                }
                records.insert(record.path.clone(), record);
            }
        }
        let index =
            OpenOptions::new().create(true).append(true).open(&index_path).map_err(|e| Error::cache(&index_path, e))?;
        index.set_len(good_len).map_err(|e| Error::cache(&index_path, e))?;
        let crops = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&crops_path)
            .map_err(|e| Error::cache(&crops_path, e))?;
        let have = crops.metadata().map_err(|e| Error::cache(&crops_path, e))?.len();
        let need = crop_count * AlignedFace::BYTES as u64;
        if have < need {
            return Err(Error::cache(
                &crops_path,
                format!("holds {have} bytes, its index needs {need}; delete the folder"),
            ));
        }
        crops.set_len(need).map_err(|e| Error::cache(&crops_path, e))?;
        Ok(Self { dir: dir.to_path_buf(), records, crops })
    }

    /// The cache folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The record of a photo (path relative to the data set root).
    pub fn record(&self, path: &str) -> Option<&PreparedRecord> {
        self.records.get(path)
    }

    /// Number of photos recorded.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The aligned crop of a photo.
    pub fn face(&self, path: &str) -> Result<AlignedFace> {
        let record =
            self.records.get(path).ok_or_else(|| Error::cache(&self.dir, format!("{path} is not prepared")))?;
        let index = match (record.crop, &record.error) {
            (Some(i), _) => i,
            (None, Some(e)) => return Err(Error::cache(&self.dir, format!("{path} could not be prepared: {e}"))),
            (None, None) => return Err(Error::cache(&self.dir, format!("{path} has no crop"))),
        };
        let mut bytes = vec![0u8; AlignedFace::BYTES];
        // Positional read: safe from many threads at once.
        self.crops
            .read_exact_at(&mut bytes, index * AlignedFace::BYTES as u64)
            .map_err(|e| Error::cache(&self.dir, e))?;
        Ok(AlignedFace::from_rgb(bytes).expect("BUG: read exactly one crop"))
    }

    fn append(&mut self, batch: Vec<(PreparedRecord, Option<AlignedFace>)>) -> Result<()> {
        let crops_path = self.dir.join("crops.bin");
        let mut next =
            self.crops.seek(SeekFrom::End(0)).map_err(|e| Error::cache(&crops_path, e))? / AlignedFace::BYTES as u64;
        let mut lines = String::new();
        let mut records = Vec::with_capacity(batch.len());
        for (mut record, face) in batch {
            if let Some(face) = face {
                self.crops.write_all(face.rgb()).map_err(|e| Error::cache(&crops_path, e))?;
                record.crop = Some(next);
                next += 1;
            }
            lines.push_str(&serde_json::to_string(&record).expect("BUG: records serialise"));
            lines.push('\n');
            records.push(record);
        }
        self.crops.sync_data().map_err(|e| Error::cache(&crops_path, e))?;
        let index_path = self.dir.join("index.jsonl");
        let mut index = OpenOptions::new().append(true).open(&index_path).map_err(|e| Error::cache(&index_path, e))?;
        index.write_all(lines.as_bytes()).map_err(|e| Error::cache(&index_path, e))?;
        index.sync_data().map_err(|e| Error::cache(&index_path, e))?;
        self.records.extend(records.into_iter().map(|r| (r.path.clone(), r)));
        Ok(())
    }
}

/// Detects and aligns `photos` (paths relative to `data_root`) into the cache, skipping those
/// already there, in parallel, `CHUNK` photos per synced append. Protocol fallback: where no
/// face is found, the fixed central crop is stored and flagged.
pub fn prepare(
    home: &Path,
    data_root: &Path,
    photos: &[PathBuf],
    models: &Models,
    progress: ProgressFn<'_>,
) -> Result<(PreparedSet, PrepareSummary)> {
    let dir = cache_dir(home, data_root, models)?;
    std::fs::create_dir_all(&dir).map_err(|e| Error::cache(&dir, e))?;
    // One writer per cache folder, across processes.
    let lock_path = dir.join("lock");
    let lock = File::create(&lock_path).map_err(|e| Error::cache(&lock_path, e))?;
    lock.lock().map_err(|e| Error::cache(&lock_path, e))?;
    let meta = serde_json::json!({ "data_root": data_root.display().to_string(), "detector": "yunet-2023mar-int8bq",
        "score_threshold": models.detector.config().score_threshold });
    maskid_assets::write_atomic(&dir.join("meta.json"), meta.to_string().as_bytes())?;
    let mut set = PreparedSet::open(&dir)?;

    let keys: Vec<String> = photos.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let todo: Vec<&String> = keys.iter().filter(|k| set.record(k).is_none()).collect();
    let mut summary = PrepareSummary {
        total: keys.len(),
        cached: keys.len() - todo.len(),
        cache_dir: dir.clone(),
        ..Default::default()
    };
    let mut done = summary.cached;
    progress(Progress { stage: "prepare", done, total: keys.len() });
    for chunk in todo.chunks(CHUNK) {
        let batch: Vec<(PreparedRecord, Option<AlignedFace>)> =
            chunk.par_iter().map(|key| prepare_one(models, data_root, key)).collect();
        set.append(batch)?;
        summary.processed += chunk.len();
        done += chunk.len();
        progress(Progress { stage: "prepare", done, total: keys.len() });
    }
    for key in &keys {
        if let Some(r) = set.record(key) {
            summary.fallbacks += usize::from(r.fallback);
            summary.unreadable += usize::from(r.error.is_some());
        }
    }
    Ok((set, summary))
}

fn prepare_one(models: &Models, data_root: &Path, key: &str) -> (PreparedRecord, Option<AlignedFace>) {
    let mut record =
        PreparedRecord { path: key.to_string(), crop: None, fallback: false, score: 0.0, landmarks: None, error: None };
    let image = match models.load_photo(&data_root.join(key)) {
        Ok(image) => image,
        Err(e) => {
            record.error = Some(maskid_core::error_message(&e));
            return (record, None);
        }
    };
    match models.aligned_faces(&image, FacePolicy::Center) {
        Ok(mut faces) => {
            let (detection, face) = faces.remove(0);
            record.score = detection.score;
            record.landmarks = Some(detection.landmarks);
            (record, Some(face))
        }
        Err(crate::Error::Face(maskid_face::Error::NoFace { .. } | maskid_face::Error::Landmarks(_))) => {
            record.fallback = true;
            (record, Some(central_crop(&image)))
        }
        Err(e) => {
            record.error = Some(maskid_core::error_message(&e));
            (record, None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(path: &str) -> PreparedRecord {
        PreparedRecord { path: path.into(), crop: None, fallback: false, score: 0.9, landmarks: None, error: None }
    }

    #[test]
    fn reopen_after_a_torn_write_keeps_complete_records() {
        let dir = tempfile::tempdir().unwrap();
        let face = |v: u8| AlignedFace::from_rgb(vec![v; AlignedFace::BYTES]).unwrap();
        {
            let mut set = PreparedSet::open(dir.path()).unwrap();
            set.append(vec![(record("a.jpg"), Some(face(1))), (record("b.jpg"), Some(face(2)))]).unwrap();
        }
        // A kill mid-append: half a crop and half a record line.
        let mut crops = OpenOptions::new().append(true).open(dir.path().join("crops.bin")).unwrap();
        crops.write_all(&[9u8; 1000]).unwrap();
        let mut index = OpenOptions::new().append(true).open(dir.path().join("index.jsonl")).unwrap();
        index.write_all(b"{\"path\":\"c.jpg\",\"cro").unwrap();

        let mut set = PreparedSet::open(dir.path()).unwrap();
        assert_eq!(set.len(), 2);
        assert!(set.record("c.jpg").is_none());
        assert_eq!(set.face("b.jpg").unwrap().rgb()[0], 2);
        set.append(vec![(record("c.jpg"), Some(face(3)))]).unwrap();
        let set = PreparedSet::open(dir.path()).unwrap();
        assert_eq!(set.face("c.jpg").unwrap().rgb()[0], 3);
        assert_eq!(set.face("a.jpg").unwrap().rgb()[0], 1);
        assert!(set.face("zzz.jpg").is_err());
    }

    #[test]
    fn index_pointing_past_the_crops_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = record("a.jpg");
        r.crop = Some(5);
        std::fs::write(dir.path().join("index.jsonl"), serde_json::to_string(&r).unwrap() + "\n").unwrap();
        let err = PreparedSet::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("delete the folder"), "{err}");
    }
}
