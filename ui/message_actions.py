"""What can be done to a chat's messages: regenerate, continue, retry, switch variants, branch, delete and edit (a
mixin of ui.chat_page.ChatPage, kept apart for size)."""
from __future__ import annotations

from ui import dialogs
from ui.message_view import MessageView


class MessageActionsMixin:
    """Needs the page's store, views, follower, input and reply machinery (ui.chat_page.ChatPage)."""

    def regenerate(self, message_id: int) -> None:
        """Another reply in this one's place; the earlier ones stay as variants (‹ 1/2 ›)."""
        reply = self._stored(message_id)
        if self.busy or reply is None or reply.parent is None:
            return
        self._start_reply(after=reply.parent)
        self.follow()

    def continue_reply(self, message_id: int) -> None:
        """The last reply, cut at the length limit, written on from where it stopped."""
        views, stored = self.views(), self._stored(message_id)
        if self.busy or not views or views[-1].message_id != message_id or stored is None \
                or stored.role != "assistant" or not stored.content:
            return
        self._start_reply(continuing=stored)
        self.follow()

    def retry(self, message_id: int) -> None:
        """A reply to the last message, which has none (its reply failed to start, was lost or was deleted)."""
        views = self.views()
        if self.busy or not views or views[-1].message_id != message_id or views[-1].role != "user":
            return
        self._start_reply()
        self.follow()

    def show_variant(self, message_id: int, step: int) -> None:
        """The previous (step -1) or next (+1) variant of a message, with the turns that follow it."""
        variants = self.store.variants(message_id)
        if self.busy or message_id not in variants:
            return
        index = variants.index(message_id) + step
        if 0 <= index < len(variants):
            self.cancel_edit()
            shown = self._view_of(message_id)
            offset = self.follower.offset_of(shown) if shown is not None else 0
            self.store.switch_to(variants[index])
            self._rebuild(follow=False)
            if (switched := self._view_of(variants[index])) is not None:
                self.follower.keep(switched, offset)  # the user stays at the message they switched

    def branch_from(self, message_id: int) -> None:
        """The next message continues from this reply; the turns after it stay on their own branch."""
        if self.busy or self._stored(message_id) is None:
            return
        self.cancel_edit()
        self.store.cut_at(message_id)
        self._rebuild()
        self.show_notice("Your next message starts a new branch from this reply; the later turns stay a click away "
                         "(‹ › on the next message).")
        self.input.setFocus()

    def delete_from(self, message_id: int) -> None:
        if self.busy or self._stored(message_id) is None or not dialogs.confirm(
                self, "Delete messages", "Delete this message and everything after it, on every branch?"):
            return
        self.cancel_edit()
        self.store.delete_from(message_id)
        self._rebuild()

    def _stored(self, message_id: int):
        return next((m for m in self.store.messages(self.conversation_id) if m.id == message_id), None) \
            if self.conversation_id is not None else None

    def edit(self, message_id: int) -> None:
        if self.busy:
            return
        message = self._stored(message_id)
        if message is None:
            return
        self.editing = message_id
        self.input.setPlainText(message.content)
        self.input.setFocus()
        self.show_notice("Editing a message: Send starts a new branch from it (the old one stays, ‹ › on the "
                         "message). Esc cancels.")

    def _last(self, role: str) -> MessageView | None:
        return next((v for v in reversed(self.views()) if v.role == role), None)

    def regenerate_last(self) -> None:
        if (view := self._last("assistant")) is not None:
            self.regenerate(view.message_id)

    def copy_last_reply(self) -> None:
        if (view := self._last("assistant")) is not None:
            view.copy()

    def edit_last(self) -> None:
        if (view := self._last("user")) is not None:
            self.edit(view.message_id)

    def cancel_edit(self) -> None:
        if self.editing is not None:
            self.editing = None
            self.input.clear()
            self.show_notice("")
