//! Synthetic face masks, drawn procedurally from the five landmarks: six styles with their
//! own shape models, fabric and shading, soft edges, and the occlusion map of what they
//! cover. Everything is a pure function of a seed, the same bytes on every machine (own
//! generator, no trigonometry). No asset files.
#![deny(missing_docs)]

mod geometry;
mod occlude;
mod raster;
mod render;
mod rng;
mod style;
mod transplant;

pub use geometry::FaceFrame;
pub use occlude::{occlude, Occluder, OcclusionMix};
pub use render::{mask_face, render_mask, RgbImageMut};
pub use rng::{image_seed, Rng};
pub use style::{Coverage, MaskSpec, MaskStyle, Texture};
pub use transplant::RealMasks;

/// Version of the drawing, raised whenever a seed draws different pixels: masked-protocol
/// numbers are comparable only between reports of the same version. 2: the realistic
/// fabrics, gaiter, respirator and hand of 2026-12-01.
pub const RENDER_VERSION: u32 = 2;

/// Errors of mask drawing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The landmarks cannot place a face.
    #[error("cannot place a mask: degenerate landmarks ({0})")]
    Landmarks(&'static str),
    /// The occlusion mix asks for real masks and none were given, or none is usable.
    #[error("no real masks: {0}")]
    NoRealMasks(&'static str),
    /// The pixel buffer does not match its size.
    #[error("image buffer of {bytes} bytes does not hold {width}x{height} RGB pixels")]
    Shape {
        /// Width.
        width: usize,
        /// Height.
        height: usize,
        /// Bytes given.
        bytes: usize,
    },
}

/// Result of this crate.
pub type Result<T> = std::result::Result<T, Error>;
