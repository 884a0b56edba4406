//! Data sets and the evaluation protocols of protocols.md: the LFW reader, a generic
//! identity-per-folder reader, pair and gallery lists, verification and identification
//! metrics, and reports (JSON, ROC plot).
#![deny(missing_docs)]

mod calibration;
mod compare;
mod dataset;
mod identify;
mod protocol;
mod report;
mod verify;

pub use calibration::{
    comparison_rate, Calibration, CalibrationSource, ConditionCalibration, ImpostorTail, ParetoTail, ProbeCondition,
    TooFewPairs,
};
pub use compare::{
    compare_identification, compare_verification, Comparison, Discordance, ItemMismatch, TarDifference, RESAMPLES,
};
pub use dataset::{dataset_photos, folder_dataset, image_files, is_image_file, ImageRef, Lfw, Pair};
pub use identify::{identification_metrics, probe_ranks, FnirAtFpir, IdentificationMetrics, OpenSetResult, FPIRS};
pub use protocol::{IdentSet, MaskSetting, MaskStage, Protocol};
pub use report::{write_line_png, write_roc_png, AlignmentShift, ProbePreparation, Report, ReportMetrics};
pub use verify::{verification_metrics, TarAtFar, VerificationMetrics};

/// Errors of data set reading and reporting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A list file has a line maskid cannot read.
    #[error("{file}:{line}: {reason}")]
    List {
        /// The list file.
        file: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// File system error.
    #[error("{path}")]
    Io {
        /// The path.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The folder is not the data set asked for.
    #[error("{path}: {reason}")]
    Dataset {
        /// The folder.
        path: String,
        /// What is missing.
        reason: String,
    },
    /// A plot could not be drawn or written.
    #[error("plot {path}: {reason}")]
    Plot {
        /// The PNG file.
        path: String,
        /// The cause.
        reason: String,
    },
}

/// Result of this crate.
pub type Result<T> = std::result::Result<T, Error>;
