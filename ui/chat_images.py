"""The chat page's part that sends images to models that see (a mixin of ui.chat_page.ChatPage, kept apart for size):
the Image button, whether the loaded model sees, and the images of a message stored beside the chats."""
from __future__ import annotations

import time

from app.attachments import IMAGE_SUFFIXES, VISION_HELP, AttachmentError
from app.chat_images import ImageFile, ImageStore, image_tags
from ui import dialogs
from ui.tasks import run_task


class ChatImagesMixin:
    images: ImageStore | None = None
    model_sees: bool | None = None  # None until the loaded model was asked

    def _ask_whether_the_model_sees(self) -> None:
        worker = self.models.worker
        self.model_sees = None
        if worker is None:
            return

        def sees(e) -> bool:
            return getattr(e.runtime, "vision", None) is not None

        def told(answer: bool) -> None:
            if self.models.worker is worker:
                self.model_sees = answer
                self.image_button.setToolTip("Attach an image for the model to see" if answer else
                                             "Which models can see images")

        run_task(lambda: worker.call(sees).result(timeout=300), told, lambda _e: None)

    def _image_clicked(self) -> None:
        if self.model_sees is False:
            model = self.models.name or self.settings().model
            self.show_notice(f"{model} cannot see images. {VISION_HELP}")
            return
        patterns = " ".join(f"*{s}" for s in sorted(IMAGE_SUFFIXES))
        self.attach(dialogs.open_paths(self, "Attach images", f"Images ({patterns});;All files (*)"))

    def _attach_pasted(self, image) -> None:
        """A pasted image (a screenshot) becomes a PNG in Lantern's own folder, attached like a file."""
        if self.images is None or image is None or image.isNull():
            return
        folder = self.images.folder / "pasted"
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            self.show_notice(f"The pasted image could not be kept: {e.strerror or e}.")
            return
        path = folder / f"pasted-{time.strftime('%Y%m%d-%H%M%S')}-{time.monotonic_ns() % 1000000:06d}.png"
        if not image.save(str(path), "PNG"):
            self.show_notice("The pasted image could not be kept (is the disk full?).")
            return
        self.attach([path])

    def _with_stored_images(self, files: list) -> tuple[list, str]:
        """The documents among `files`, and the tags of its images, each kept in the image store first (an image
        that cannot be kept raises AttachmentError: nothing is sent)."""
        images = [f for f in files if isinstance(f, ImageFile)]
        if images and self.images is None:
            raise AttachmentError("Images cannot be kept here, so they cannot be sent.")
        for image in images:
            try:
                self.images.put(image)
            except OSError as e:
                raise AttachmentError(f"{image.name} could not be kept with the chat: {e.strerror or e}.") from None
        return [f for f in files if not isinstance(f, ImageFile)], image_tags(images)

    def _content(self, role: str, text: str):
        """A stored message as the engine takes it (a user message's images from the image store)."""
        return self.images.content(text) if role == "user" and self.images is not None else text
