"""Scores any video, image or face crop with an exported model folder (`model_folder`).

The pipeline of the paper (Khodabakhsh & Busch, BIOSIG 2020) applied to new input:
faces found and cropped exactly as for training (dlib, the FF++ crop, the saved
`FaceSettings`), the UBM's per-pixel log-likelihood maps (nats), and the LeNet's fake
probability per frame. A video's verdict is the mean of its frame scores, with a 95%
bootstrap interval over frames; it is fake when that mean reaches the threshold.

    detector = Detector.load("model")
    faces = detector.score_video("clip.mp4", frames_per_video=32)
    verdict = detector.verdict(faces.scores)   # Verdict(score, low, high, fake)
"""

from __future__ import annotations

import dataclasses
import os

import cv2
import keras
import numpy as np

from classifier import training
from data_prep.face_detection import FaceDetector, crop_box, crop_face, crop_video, track_faces
from data_prep.face_settings import FaceSettings, FastSettings
from data_prep.media import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, media_kind
from experiments.pipeline import model_folder
from experiments.pipeline.model_folder import ModelFolderError
from pixelcnn_pp import likelihood, run_folder

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "Detector",
    "ImageReadError",
    "ModelFolderError",
    "NoFaceError",
    "ScoredFaces",
    "Verdict",
    "face_settings_from_json",
    "input_kind",
]

BOOTSTRAP_SAMPLES = 1000
BATCH_SIZE = 64  # crops per UBM forward pass


class NoFaceError(ValueError):
    """No face was found in any frame of the input."""


class ImageReadError(ValueError):
    """A still image that cannot be read (missing, not an image, corrupt)."""


@dataclasses.dataclass
class ScoredFaces:
    """One input's scored faces, N frames."""

    frames: np.ndarray  # int [N] frame index in the video (0 for an image)
    boxes: np.ndarray  # int [N, 4] x0, y0, x1, y1 of the crop in frame pixels
    crops: np.ndarray  # uint8 [N, 64, 64, 3] RGB face crops
    maps: np.ndarray  # float32 [N, 64, 64] log-likelihood maps (nats)
    scores: np.ndarray  # float32 [N] fake probability per frame


@dataclasses.dataclass
class Verdict:
    """The decision on one input from its frame scores."""

    score: float  # mean of the frame scores
    low: float  # 95% bootstrap interval over frames
    high: float
    fake: bool  # score >= threshold


# The detector's input kinds are the datasets' media kinds.
input_kind = media_kind


def face_settings_from_json(values: dict) -> FaceSettings:
    """A FaceSettings from `FaceSettings.to_json()` (faces/config.json), unknown keys ignored.

    Folders written before the face finder had its own name hold it as `detection`.
    """
    if "detection" in values and "face_finder" not in values:
        values = {**values, "face_finder": values["detection"]}
    known = {f.name for f in dataclasses.fields(FaceSettings)} - {"methods", "fast"}
    fast_known = {f.name for f in dataclasses.fields(FastSettings)}
    fast = FastSettings(**{k: v for k, v in values.get("fast", {}).items() if k in fast_known})
    return FaceSettings(**{k: v for k, v in values.items() if k in known}, fast=fast)


def load_ubm_weights(config_values: dict, weights_path: str) -> keras.Model:
    """Rebuilds the UBM from its saved config dict and `.weights.h5` (the EMA weights)."""
    config = run_folder.ubm_config_from_dict(config_values)
    model = run_folder.build_model(config)
    model.load_weights(weights_path)
    model.ubm_config = config
    return model


class Detector:
    """An exported model: the UBM, the LeNet detector, face settings and threshold."""

    def __init__(
        self,
        ubm: keras.Model,
        classifier: keras.Model,
        face_settings: FaceSettings,
        threshold: float,
        manifest: dict,
        model_dir: str,
    ):
        self.ubm = ubm
        self.classifier = classifier
        self.face_settings = face_settings
        self.threshold = float(threshold)
        self.manifest = manifest
        self.model_dir = model_dir
        self._face_detector: FaceDetector | None = None

    @classmethod
    def load(cls, model_dir: str) -> Detector:
        """Loads a model folder written by `export_model`, after checking it.

        Needs neither the work directory nor the training checkpoints.

        Raises:
          ModelFolderError: missing or incomplete folder (the missing file named),
            a file changed since export (named), an incompatible format or major
            project version (both said), or a file that does not load.
        """
        manifest = model_folder.verify(model_dir)
        read = model_folder.read_json_file
        try:
            ubm_values = read(model_dir, model_folder.UBM_CONFIG_FILE)["ubm"]
            ubm = load_ubm_weights(
                ubm_values, os.path.join(model_dir, model_folder.UBM_WEIGHTS_FILE)
            )
            classifier = keras.models.load_model(
                os.path.join(model_dir, model_folder.DETECTOR_FILE)
            )
            settings = face_settings_from_json(read(model_dir, model_folder.FACE_SETTINGS_FILE))
            threshold = float(read(model_dir, model_folder.DECISION_FILE)["threshold"])
        except (OSError, KeyError, TypeError, ValueError) as err:
            raise ModelFolderError(
                f"{model_dir!r} passed its checks but does not load ({err}): it was exported "
                "by an incompatible version; export the model again with this one."
            ) from None
        if settings.crop_size != ubm.ubm_config.image_size:
            raise ModelFolderError(
                f"{model_dir!r}: face crops of {settings.crop_size} px but a UBM for "
                f"{ubm.ubm_config.image_size} px images: export the model again."
            )
        return cls(ubm, classifier, settings, threshold, manifest, model_dir)

    @property
    def face_detector(self) -> FaceDetector:
        """One dlib detector, made on first use with the saved fast-mode settings."""
        if self._face_detector is None:
            self._face_detector = FaceDetector(self.face_settings.fast)
        return self._face_detector

    def score_images(self, images: np.ndarray) -> ScoredFaces:
        """Maps and fake scores of face crops already cut as in training.

        Args:
          images: uint8 [N, S, S, 3] RGB crops, S the saved crop size (64).

        Returns:
          ScoredFaces with frames = arange(N) and boxes all zeros.
        """
        images = np.asarray(images)
        size = self.face_settings.crop_size
        if images.ndim != 4 or images.shape[1:] != (size, size, 3) or images.dtype != np.uint8:
            raise ValueError(
                f"score_images expects uint8 crops [N, {size}, {size}, 3], got "
                f"{images.dtype} {list(images.shape)}: crop faces as in training first "
                "(score_video, score_image_file)."
            )
        count = images.shape[0]
        return self._score(np.arange(count), np.zeros((count, 4), np.int64), images)

    def _score(self, frames: np.ndarray, boxes: np.ndarray, crops: np.ndarray) -> ScoredFaces:
        maps, _ = likelihood.likelihood_maps(self.ubm, crops, batch_size=BATCH_SIZE)
        scores = [
            training.predict_batch(self.classifier, maps[i : i + BATCH_SIZE])
            for i in range(0, len(maps), BATCH_SIZE)
        ]
        return ScoredFaces(
            frames=np.asarray(frames, np.int64),
            boxes=np.asarray(boxes, np.int64).reshape(-1, 4),
            crops=crops,
            maps=maps,
            scores=(np.concatenate(scores) if scores else np.zeros((0,))).astype(np.float32),
        )

    def score_video(self, path: str, frames_per_video: int = 32) -> ScoredFaces:
        """Faces of a video cropped exactly as in training, and their scores.

        `data_prep.face_detection.crop_video` with the saved FaceSettings (the same
        detector mode, fast or exact, the same crop scale and size) and, as in
        training, the largest face of each frame; `frames_per_video` evenly spaced
        frames (0: every frame) over the whole video (the saved `max_frames`, a limit
        of the training data, is not applied). Frames are streamed: only the crops are
        kept (and, in fast mode, at most one keyframe interval of frames).

        Raises:
          data_prep.frames.VideoReadError: the file cannot be decoded.
          NoFaceError: no face in any sampled frame.
          ValueError: frames_per_video < 0.
        """
        if frames_per_video < 0:
            raise ValueError(
                f"frames_per_video must be >= 0 (0: every frame), got {frames_per_video}."
            )
        settings = dataclasses.replace(
            self.face_settings, frames_per_video=frames_per_video, max_frames=0
        )
        crops = crop_video(path, settings, self.face_detector)
        if not crops.frames:
            raise NoFaceError(
                f"No face found in any of the {crops.frames_read} frames read from {path!r}: "
                "the detector needs a frontal face of at least about 40 pixels."
            )
        return self._score(np.asarray(crops.frames), np.asarray(crops.boxes), crops.images)

    def score_image_file(self, path: str) -> ScoredFaces:
        """The largest face of a still image, found and cropped as in training; one frame.

        Raises:
          ImageReadError: the file cannot be read as an image.
          NoFaceError: no face found.
        """
        frame = cv2.imread(path, cv2.IMREAD_COLOR) if os.path.isfile(path) else None
        if frame is None:
            raise ImageReadError(
                f"Cannot read {path!r} as an image: check that the file exists and is a "
                f"picture ({', '.join(IMAGE_EXTENSIONS)})."
            )
        settings = self.face_settings
        # One frame through the training path: detection mode, largest face, FF++ crop.
        _, _, face = next(track_faces(iter([(0, frame)]), self.face_detector, settings.face_finder))
        height, width = frame.shape[:2]
        box = crop_box(face, width, height, settings.crop_scale) if face is not None else None
        if box is None:
            raise NoFaceError(f"No face found in {path!r}.")
        crop = crop_face(frame, box, settings.crop_size)
        return self._score(np.zeros(1), np.asarray([box]), crop[None])

    def verdict(self, scores: np.ndarray, seed: int = 0) -> Verdict:
        """The mean frame score, its 95% bootstrap interval over frames, and the decision.

        Args:
          scores: float [N] fake probabilities of the frames, N >= 1.
          seed: seeds the 1,000 resamples, so a verdict is reproducible.

        Raises:
          ValueError: no scores.
        """
        scores = np.asarray(scores, np.float64).reshape(-1)
        if scores.size == 0:
            raise ValueError("No frame scores to decide on: the input had no scored face.")
        rng = np.random.default_rng(seed)
        means = np.empty(BOOTSTRAP_SAMPLES)
        for i in range(BOOTSTRAP_SAMPLES):  # one row at a time: memory O(N), not O(1000 N)
            means[i] = scores[rng.integers(0, scores.size, scores.size)].mean()
        low, high = np.percentile(means, [2.5, 97.5])
        score = float(scores.mean())
        return Verdict(score=score, low=float(low), high=float(high), fake=score >= self.threshold)
