"""maskid: masked-face recognition. Images are HxWx3 uint8 numpy arrays in RGB order, or
paths of photo files; embeddings are float32 arrays. Model work releases the GIL."""

import os
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str
MASK_STYLES: List[str]
"""surgical, n95, cloth, gaiter, respirator, hand."""

ImageLike = Union[npt.NDArray[np.uint8], str, "os.PathLike[str]"]
PathLike = Union[str, "os.PathLike[str]"]

class MaskidError(Exception): ...

class BadImageError(MaskidError):
    path: str
    reason: str

class ImageTooLargeError(MaskidError):
    path: str
    width: int
    height: int
    limit_megapixels: float

class NoFaceError(MaskidError):
    path: Optional[str]
    """The photo's path; None for an array."""
    threshold: float

class SeveralFacesError(MaskidError):
    path: str
    count: int

class GalleryError(MaskidError): ...
class DuplicateError(GalleryError): ...
class NotFoundError(GalleryError): ...
class ModelMismatchError(GalleryError): ...

class Face:
    """A face found by the detector."""

    @property
    def box(self) -> Tuple[float, float, float, float]:
        """(x, y, width, height) in pixels."""
    @property
    def score(self) -> float: ...
    @property
    def landmarks(self) -> npt.NDArray[np.float32]:
        """5x2 (x, y): right eye, left eye, nose tip, right and left mouth corners."""
    @property
    def mask(self) -> Mask:
        """Whether the face wears a mask, and how."""

class Mask:
    """The mask classifier's answer for one face."""

    state: str
    """"none", "worn" (nose and mouth covered) or "below-nose" (mouth covered, nose not)."""
    none: float
    worn: float
    below_nose: float

class Verification:
    same_person: bool
    similarity: float
    threshold: float

class Candidate:
    name: str
    similarity: float
    matched: bool

class Recognizer:
    """Finds, aligns and embeds faces with one model: "teacher" (SFace), "g2d" (maskid's own
    model), "auto" (G2D for masked faces, the teacher for unmasked ones) or the path of an
    exported G2D backbone (give `threshold`)."""

    def __init__(
        self,
        model: str = "teacher",
        *,
        threshold: Optional[float] = None,
        score_threshold: Optional[float] = None,
        max_megapixels: float = 80.0,
        models_dir: Optional[PathLike] = None,
    ) -> None: ...
    @property
    def model(self) -> str: ...
    @property
    def model_sha256(self) -> str: ...
    @property
    def threshold(self) -> Optional[float]: ...
    def detect(self, image: ImageLike) -> List[Face]:
        """Every face found, best first; empty when none."""
    def align(self, image: ImageLike, face: Face) -> npt.NDArray[np.uint8]:
        """The 112x112x3 aligned crop of `face`."""
    def embed(self, image: ImageLike, *, face: str = "largest") -> npt.NDArray[np.float32]:
        """The embedding of the face `face` picks (largest, center, require-one); a
        112x112x3 array is taken as an aligned crop."""
    def verify(
        self, a: ImageLike, b: ImageLike, *, threshold: Optional[float] = None, face: str = "largest"
    ) -> Verification: ...
    def watch(
        self,
        source: str,
        gallery: "Gallery",
        *,
        fpir: Optional[float] = None,
        threshold: Optional[float] = None,
        detect_every: int = 3,
        fps: float = 25.0,
    ) -> "WatchEvents":
        """Faces in a video file, a folder of frames (at `fps`), a stream URL or a camera,
        tracked and identified against `gallery`: the events of `maskid watch`, as dicts,
        yielded as they happen. Needs FFmpeg, except for a folder of frames."""

class WatchEvents(Iterator[Dict[str, Any]]):
    """The events of a watch; the video is read on a thread of its own."""

    def __next__(self) -> Dict[str, Any]: ...
    def close(self) -> None:
        """Stops the watch: its tracks end, then `finished` comes and the iteration stops."""

def mask(
    image: npt.NDArray[np.uint8],
    *,
    style: str = "random",
    seed: int = 0,
    coverage: str = "random",
    landmarks: Optional[npt.NDArray[np.float32]] = None,
) -> Tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32]]:
    """A synthetic mask on an aligned crop (or on the face with `landmarks`): the masked
    image and the occlusion map (HxW, 1 = covered)."""

def image_seed(key: str, seed: int) -> int:
    """The seed `maskid mask` uses for face `key` ("STEM#N") under `seed`."""

class Gallery:
    """Enrolled people in an SQLite file, or in a PostgreSQL database with pgvector given as
    "postgres://user:password@host:port/db" (created unless create=False)."""

    def __init__(self, path: PathLike, recognizer: Optional[Recognizer] = None, *, create: bool = True) -> None: ...
    def enroll(
        self,
        name: str,
        image: ImageLike,
        *,
        metadata: Optional[Dict[str, Any]] = None,
        face: str = "require-one",
        keep_crop: bool = False,
        allow_poor: bool = False,
    ) -> int:
        """Enrols one face; returns its id. A face that would make a poor reference (turned
        past 55 degrees, tilted past 45, blurred, eyes under 12 px apart) raises MaskidError
        unless allow_poor."""
    def identify(
        self,
        image: ImageLike,
        *,
        top: int = 3,
        threshold: Optional[float] = None,
        fpir: Optional[float] = None,
        face: str = "largest",
    ) -> List[Candidate]:
        """Matches pass the threshold that lets a share `fpir` (default 0.001) of people not
        enrolled through for this gallery's size, or `threshold` when given."""
    def identify_all(
        self, image: ImageLike, *, top: int = 3, threshold: Optional[float] = None, fpir: Optional[float] = None
    ) -> List[Tuple[Face, List[Candidate]]]:
        """Every face of a group photo, best detection first, each with its candidates."""
    def decision_threshold(
        self, *, threshold: Optional[float] = None, fpir: Optional[float] = None
    ) -> Dict[str, Any]:
        """The threshold identify uses with these arguments: threshold, fpir (None without a
        calibration), gallery_faces, model."""
    def subjects(self) -> List[Dict[str, Any]]: ...
    def remove(self, name: str) -> None: ...
    def export_file(self, path: PathLike) -> Tuple[int, int]: ...
    def import_file(self, path: PathLike) -> Tuple[int, int]: ...
    def __len__(self) -> int: ...
