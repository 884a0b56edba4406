//! The G2D model maskid trained itself and ships inside the binary: the files under the
//! repository's `models/` (see `models/README.md`, the model card), pinned by SHA-256.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{sha256_file, write_atomic, Error, Result};

/// A model file compiled into maskid.
#[derive(Debug)]
pub struct ShippedModel {
    /// File name (under `models/` in the repository and in the cache).
    pub name: &'static str,
    /// SHA-256 of the file.
    pub sha256: &'static str,
    bytes: &'static [u8],
}

/// The shipped G2D model, the teacher-initialised student: `faces [batch, 3, 112, 112]` RGB
/// in [-1, 1] -> `embedding [batch, 128]` in the teacher's space.
pub static G2D_BACKBONE: ShippedModel = ShippedModel {
    name: "g2d-student.onnx",
    sha256: "a8b8a4275ee88d60ad46f5703b4f08a3b6c4cd3b2d5c7ab07a114375d2bd7653",
    bytes: include_bytes!("../../../models/g2d-student.onnx"),
};

/// The shipped G2D inpainter (encoder + decoder) for unmask previews: `faces` -> `restored`.
pub static G2D_INPAINTER: ShippedModel = ShippedModel {
    name: "g2d-small-unmask.onnx",
    sha256: "dce396bea7cb4de7c4b6cb77dfc46adba989952980e8629da80f08fed9b2c178",
    bytes: include_bytes!("../../../models/g2d-small-unmask.onnx"),
};

/// YuNet tuned on masked faces (`maskid train --stage detector`), the detector's last rescue
/// pass: the same inputs and outputs as YuNet.
pub static MASKED_DETECTOR: ShippedModel = ShippedModel {
    name: "yunet-masked.onnx",
    sha256: "e4b357f1c99c8a96743e8d9ae9a294ae7b35552c8027dfa15619165cf93876ec",
    bytes: include_bytes!("../../../models/yunet-masked.onnx"),
};

/// The mask classifier (`maskid train --stage mask`): `faces [batch, 3, 112, 112]` RGB in
/// [-1, 1] -> `mask [batch, 2]`, the probabilities that the face is masked and that the mask
/// covers the nose.
pub static MASK_CLASSIFIER: ShippedModel = ShippedModel {
    name: "mask-state.onnx",
    sha256: "d0fa9ece4a473a02e714d2cf30b88b9f0c3bdd8765be9b36950ff392ab316148",
    bytes: include_bytes!("../../../models/mask-state.onnx"),
};

/// Every model file compiled into maskid.
pub static SHIPPED_MODELS: [&ShippedModel; 4] = [&G2D_BACKBONE, &G2D_INPAINTER, &MASKED_DETECTOR, &MASK_CLASSIFIER];

impl ShippedModel {
    /// The verified copy under `home/models/`, if one was written; never writes.
    pub fn cached(&self, home: &Path) -> Option<PathBuf> {
        let path = home.join("models").join(self.name);
        sha256_file(&path).is_ok_and(|h| h == self.sha256).then_some(path)
    }

    /// A verified copy of the model as a file under `home/models/` (ONNX Runtime loads
    /// files); written on first use, rewritten when the copy there is not this model.
    pub fn file(&self, home: &Path) -> Result<PathBuf> {
        let actual = hex::encode(Sha256::digest(self.bytes));
        if actual != self.sha256 {
            // The binary was built from a models/ file that is not the pinned one.
            return Err(Error::HashMismatch {
                path: PathBuf::from("models").join(self.name),
                actual,
                expected: self.sha256,
            });
        }
        match self.cached(home) {
            Some(path) => Ok(path),
            None => {
                let path = home.join("models").join(self.name);
                write_atomic(&path, self.bytes)?;
                Ok(path)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_files_are_the_pinned_ones_and_a_damaged_copy_is_replaced() {
        let home = tempfile::tempdir().unwrap();
        for model in SHIPPED_MODELS {
            let repo_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models").join(model.name);
            assert_eq!(sha256_file(&repo_file).unwrap(), model.sha256, "{}: update the pin", model.name);
            let path = model.file(home.path()).unwrap();
            assert_eq!(sha256_file(&path).unwrap(), model.sha256);
            std::fs::write(&path, b"damaged").unwrap();
            assert_eq!(sha256_file(&model.file(home.path()).unwrap()).unwrap(), model.sha256);
        }
    }
}
