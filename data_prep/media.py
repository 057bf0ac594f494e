"""Which files are media: video and still-image extensions, shared by the dataset
adapters and the detector.

A still image is treated as a one-frame video: `frames.open_video` reads it through
OpenCV's FFmpeg backend (its image2 demuxer), which declares no frame count, so the
frame is counted by decoding. The kind follows the extension only (any case); whether
a file really decodes is found out when it is read.
"""

from __future__ import annotations

import os

VIDEO_EXTENSIONS: tuple[str, ...] = (
    ".mp4",
    ".avi",
    ".mkv",
    ".mov",
    ".webm",
    ".m4v",
    ".mpg",
    ".mpeg",
    ".wmv",
    ".flv",
)
IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
MEDIA_EXTENSIONS: tuple[str, ...] = VIDEO_EXTENSIONS + IMAGE_EXTENSIONS


def media_kind(path: str) -> str | None:
    """ "video", "image" or None (neither), from the file's extension (any case)."""
    extension = os.path.splitext(path)[1].lower()
    if extension in VIDEO_EXTENSIONS:
        return "video"
    if extension in IMAGE_EXTENSIONS:
        return "image"
    return None


def is_media(path: str) -> bool:
    """Whether the file's extension is a video's or an image's."""
    return media_kind(path) is not None
