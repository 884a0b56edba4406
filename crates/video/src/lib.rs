//! Faces in video: frames from files, folders, streams and cameras (through FFmpeg), faces
//! tracked from frame to frame, and each track identified from its best frames against a
//! gallery, as a stream of events (`maskid watch`).
#![deny(missing_docs)]

mod annotate;
pub mod ffmpeg;
mod report;
mod source;
mod track;
mod watch;

pub use annotate::{Annotator, TrackView};
pub use report::WatchReport;
pub use source::{Delivery, Frame, FrameReader, ReadOptions, VideoSource};
pub use track::{Observation, Track, Tracker, TrackerConfig, Update};
pub use watch::{Event, StageTimes, Summary, WatchOptions, WatchProgress, WatchSink, Watcher};

/// Errors of video input and watching.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// FFmpeg is not installed.
    #[error("{program} not found: maskid reads video through FFmpeg; install it (Debian/Ubuntu: `apt-get install ffmpeg`; scripts/setup-ffmpeg does it for this repository) or point ${variable} at the program")]
    NoFfmpeg {
        /// `ffmpeg` or `ffprobe`.
        program: String,
        /// The variable that names it.
        variable: String,
    },
    /// FFmpeg could not be started.
    #[error("starting {program}: {source}")]
    Spawn {
        /// Which program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// A file FFmpeg cannot read as video.
    #[error("{}: not a video maskid can read ({why})", path.display())]
    NotVideo {
        /// The file.
        path: std::path::PathBuf,
        /// What ffprobe said.
        why: String,
    },
    /// Decoding failed.
    #[error("decoding {input}: {why}")]
    Decode {
        /// The source.
        input: String,
        /// FFmpeg's last messages, or what was wrong with its output.
        why: String,
    },
    /// Encoding failed.
    #[error("writing {}: {why}", path.display())]
    Encode {
        /// The video file.
        path: std::path::PathBuf,
        /// FFmpeg's last messages.
        why: String,
    },
    /// A source that cannot be used.
    #[error("{0}")]
    Source(String),
    /// From the recogniser.
    #[error(transparent)]
    Pipeline(#[from] maskid_pipeline::Error),
    /// From the gallery.
    #[error(transparent)]
    Gallery(#[from] maskid_gallery::Error),
    /// Writing events.
    #[error("writing events: {0}")]
    Events(#[source] std::io::Error),
}

/// Result of this crate.
pub type Result<T> = std::result::Result<T, Error>;
