"""Images in the window's chats: kept by their SHA-256 beside the chats, named in the stored message by a tag.

The stored message says `<image sha256="…" name="photo.png"/>` (one line each, before the text) and the image's bytes
lie in `images/<sha256>` in the chats' folder. Every request turns the tags back into the same image parts, so the
engine gives the image the same positions each turn and its KV cache is reused. An image file gone or damaged since
(its bytes no longer hash to its name) is said in the message the model reads, never sent as another image.
"""
from __future__ import annotations

import base64
import hashlib
import html
import re
from dataclasses import dataclass
from pathlib import Path

from app.attachments import Attachment, AttachmentError, is_image, read_attachment, read_limited, split_images
from files.owned_files import atomic_write

MAX_IMAGE_BYTES = 50 * 1024 * 1024  # as the engine takes (runtimes/vision.py)


@dataclass(frozen=True)
class ImageFile:
    """An image attached to the message being written: read once, sent from these bytes."""

    name: str
    path: Path
    data: bytes
    size: int
    mtime_ns: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    still_there = Attachment.still_there  # the same check as a document's: gone or changed since it was read


def read_image(path: Path) -> ImageFile:
    """Read an image to attach; AttachmentError says why it cannot be."""
    path = Path(path)
    data, st = read_limited(path, MAX_IMAGE_BYTES, verb="sends images")
    if not is_image(data[:64], path.suffix.lower()):
        raise AttachmentError(f"{path.name} is not an image Lantern knows (PNG, JPEG, GIF, BMP, WebP...).")
    return ImageFile(path.name, path, data, st.st_size, st.st_mtime_ns)


def image_tags(images: list[ImageFile]) -> str:
    """The lines that name a message's images, before its text."""
    return "".join(f'<image sha256="{i.sha256}" name="{html.escape(i.name, quote=True)}"/>\n' for i in images)


def read_any(path: Path):
    """An attached file: an ImageFile for an image (by its first bytes or its name), else a document."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(64)
    except OSError:
        head = b""  # read_attachment says why
    return read_image(path) if is_image(head, path.suffix.lower()) else read_attachment(path)


def image_parts(images) -> list[dict]:
    """Images as the endpoint's image_url parts (data: URLs)."""
    return [{"type": "image_url", "image_url": {"url": "data:image;base64," + base64.b64encode(data).decode()}}
            for data in images]


def with_images(text: str, images: list[ImageFile]) -> str | list[dict]:
    """A message being written as the engine takes it: its images' parts, then its text."""
    return [*image_parts(i.data for i in images), {"type": "text", "text": text}] if images else text


class ImageStore:
    """The chats' images, one file per SHA-256 (the same image attached twice is kept once)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def put(self, image: ImageFile) -> str:
        digest = image.sha256
        path = self.folder / digest
        if self.get(digest) is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write(path, image.data)
        return digest

    def get(self, digest: str) -> bytes | None:
        """The image's bytes, or None when it is gone or no longer what was stored."""
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            return None
        try:
            data = (self.folder / digest).read_bytes()
        except OSError:
            return None
        return data if hashlib.sha256(data).hexdigest() == digest else None

    def content(self, message: str) -> str | list[dict]:
        """A stored user message as the engine takes it: image parts then its text (the text alone if none)."""
        images, at = split_images(message)
        if not images:
            return message
        text, found, lost = message[at:], [], []
        for digest, name in images:
            data = self.get(digest)
            if data is None:
                lost.append(name)
            else:
                found.append(data)
        if lost:  # said to the model, so it does not answer as if it saw them
            text = f"[{', '.join(lost)}: image no longer on this computer]\n{text}"
        return [*image_parts(found), {"type": "text", "text": text}]
