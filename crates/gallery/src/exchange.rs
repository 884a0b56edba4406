//! `gallery export` / `gallery import`: a gallery as JSON Lines (a header, one line per
//! subject, one per face with its embedding's little-endian f32 bytes and its kept crop in
//! base64), so it moves between files and storage backends bit-exact.

use maskid_core::MaskState;
use std::path::Path;

use base64::Engine;
use serde_json::{json, Value};

use crate::{Error, ExportedFace, ExportedSubject, ModelRef, Result};

const FORMAT: &str = "maskid-gallery";

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

/// Writes subjects and faces to `output` (atomically: a temporary file in the same folder,
/// synced, renamed).
pub(crate) fn write(
    output: &Path,
    model: Option<&ModelRef>,
    subjects: &[ExportedSubject],
    faces: &[ExportedFace],
) -> Result<()> {
    let mut lines = vec![json!({ "format": FORMAT, "version": 1, "model": model }).to_string()];
    for s in subjects {
        lines.push(
            json!({ "kind": "subject", "name": s.name, "metadata": s.metadata, "created": s.created }).to_string(),
        );
    }
    for f in faces {
        let embedding: Vec<u8> = f.embedding.iter().flat_map(|v| v.to_le_bytes()).collect();
        lines.push(
            json!({
                "kind": "face",
                "subject": f.subject,
                "embedding_base64": b64().encode(embedding),
                "model_id": f.model.id,
                "model_sha256": f.model.sha256,
                "embedding_space": f.model.space,
                "source_sha256": f.source_sha256,
                "score": f.score,
                "created": f.created,
                "crop_base64": f.crop.as_ref().map(|c| b64().encode(c)),
                "mask": f.mask.map(MaskState::name),
            })
            .to_string(),
        );
    }
    maskid_core::write_atomic(output, (lines.join("\n") + "\n").as_bytes()).map_err(io(output))
}

/// Reads and checks a whole export: its subjects and faces, nothing written yet.
pub(crate) fn read(input: &Path) -> Result<(Vec<ExportedSubject>, Vec<ExportedFace>)> {
    let text = std::fs::read_to_string(input).map_err(io(input))?;
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let bad = |n: usize, reason: String| Error::BadExport { path: input.to_path_buf(), line: n + 1, reason };
    let (_, header) = lines.next().ok_or_else(|| bad(0, "empty file".into()))?;
    let header: Value = serde_json::from_str(header).map_err(|e| bad(0, format!("not JSON: {e}")))?;
    if header["format"] != FORMAT {
        return Err(bad(0, "not a maskid gallery export".into()));
    }
    let (mut subjects, mut faces) = (Vec::new(), Vec::new());
    for (n, line) in lines {
        let v: Value = serde_json::from_str(line).map_err(|e| bad(n, format!("not JSON: {e}")))?;
        let text = |key: &str| v[key].as_str().map(str::to_string).ok_or_else(|| bad(n, format!("no '{key}'")));
        match v["kind"].as_str() {
            Some("subject") => subjects.push(ExportedSubject {
                name: text("name")?,
                metadata: v["metadata"].clone(),
                created: text("created")?,
            }),
            Some("face") => {
                let embedding = b64().decode(text("embedding_base64")?).map_err(|e| bad(n, e.to_string()))?;
                if embedding.len() % 4 != 0 || embedding.is_empty() {
                    return Err(bad(n, "bad embedding".into()));
                }
                let crop = match v["crop_base64"].as_str() {
                    Some(c) => Some(b64().decode(c).map_err(|e| bad(n, e.to_string()))?),
                    None => None,
                };
                faces.push(ExportedFace {
                    subject: text("subject")?,
                    embedding: embedding
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect(),
                    model: match v["embedding_space"].as_str() {
                        Some(space) => {
                            ModelRef { id: text("model_id")?, sha256: text("model_sha256")?, space: space.into() }
                        }
                        None => ModelRef::recorded_without_space(text("model_id")?, text("model_sha256")?),
                    },
                    source_sha256: text("source_sha256")?,
                    score: v["score"].as_f64().ok_or_else(|| bad(n, "no 'score'".into()))?,
                    crop,
                    mask: crate::store::mask_state(v["mask"].as_str().map(str::to_string)),
                    created: text("created")?,
                });
            }
            _ => return Err(bad(n, "neither a subject nor a face".into())),
        }
    }
    Ok((subjects, faces))
}
