"""The chat: the sidebar of conversations, the messages, and the box to write in."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QKeyEvent, QTextCursor
from PySide6.QtWidgets import (QFrame, QHBoxLayout, QLabel, QPlainTextEdit, QProgressBar, QPushButton, QScrollArea,
                               QSplitter, QToolButton, QVBoxLayout, QWidget)

from app.attachments import TEXT_SUFFIXES, AttachmentError, message_with_files
from app.chat_images import ImageStore
from app.conversations import LATEST, ConversationStore, StoredMessage
from app.settings import ChatSettings, ModelDefaults, Settings
from basics.errors import LanternError
from engine.events import Finished, GenerationRequest
from ui import dialogs
from ui.attachment_bar import AttachmentBar
from ui.chat_follow import ScrollFollower
from ui.chat_images import ChatImagesMixin
from ui.chat_own_settings import ChatSettingsMixin, own_settings
from ui.chat_searched_files import SearchedFilesMixin
from ui.chat_session import ChatSession
from ui.chat_settings import ChatSettingsPanel
from ui.chat_summary import ChatSummarizer
from ui.context_meter import ContextMeter
from ui.conversation_list import ConversationList
from ui.empty_state import EmptyState
from ui.icons import set_icon
from ui.message_view import MessageView
from ui.model_controller import ModelController
from ui.theme import SPACE, chat_style

STILL_WRITING = "A reply is still being written: stop it first."
SAVE_EVERY_S = 0.5  # a streaming reply is saved this often, so a crash loses at most this much of it
COLUMN_CHARS = 80  # the messages' line length, in average characters
STATUS_BY_REASON = {"stop": "done", "length": "done", "cancelled": "stopped", "error": "error"}


class MessageInput(QPlainTextEdit):
    """Enter sends; Shift+Enter makes a new line; files dropped or pasted are attached."""

    sig_send_requested = Signal()
    sig_files_given = Signal(list)  # paths of local files dropped or pasted

    sig_image_pasted = Signal(object)  # a QImage pasted (a screenshot), not a file

    def canInsertFromMimeData(self, source) -> bool:
        return source.hasUrls() or source.hasImage() or super().canInsertFromMimeData(source)

    def insertFromMimeData(self, source) -> None:
        files = [Path(u.toLocalFile()) for u in source.urls() if u.isLocalFile()] if source.hasUrls() else []
        if files:
            self.sig_files_given.emit(files)
        elif source.hasImage():
            self.sig_image_pasted.emit(source.imageData())
        else:
            super().insertFromMimeData(source)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and \
                not event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            self.sig_send_requested.emit()
            return
        super().keyPressEvent(event)


COMPACT_BELOW = 520  # px of the messages' area below which message actions are icons only


@dataclass
class _Reply:
    conversation: int
    message_id: int
    text: str = ""
    saved_at: float = 0.0
    reasoning: str = ""
    model: str = ""
    before: StoredMessage | None = None  # a continued reply as it was: put back if the continuation fails


class ChatPage(ChatSettingsMixin, SearchedFilesMixin, ChatImagesMixin, QWidget):
    sig_reply_done = Signal(str)  # the reply's final status: done, stopped, error

    def __init__(self, store: ConversationStore, models: ModelController, settings: Callable[[], Settings],
                 parent=None, *, save_model_defaults: Callable[[str, ModelDefaults], None] | None = None,
                 documents=None):
        super().__init__(parent)
        self.store, self.models, self.settings = store, models, settings
        self.documents = documents  # app.chat_documents.ChatDocuments: files larger than the context, searched
        self.images = ImageStore(store.path.parent / "images")  # the chats' images, by SHA-256
        MessageView.image_source = self.images.get
        self.searching = False  # a message waits for the excerpts of its searched files
        self.save_model_defaults = save_model_defaults
        self.own: ChatSettings | None = None  # the open chat's own settings (a new chat's, until it is created)
        self.conversation_id: int | None = None
        self.editing: int | None = None  # the user message being edited
        self._reply: _Reply | None = None
        self.request_options: dict = {}  # more GenerationRequest fields (tests force a long reply with ignore_eos)
        self.session = ChatSession(parent=self)
        self.session.sig_text_received.connect(self._on_text)
        self.session.sig_reasoning_received.connect(self._on_reasoning)
        self.session.sig_reply_finished.connect(self._on_finished)
        self.session.sig_reply_failed.connect(self._on_failed)
        self.session.sig_reply_dropped.connect(self._on_dropped)
        self.session.sig_prompt_read.connect(self._on_prompt_read)

        self.sidebar = ConversationList(store, self)
        self.sidebar.sig_conversation_chosen.connect(self.open_conversation)
        self.sidebar.sig_new_chat_requested.connect(self.new_chat)
        self.sidebar.sig_conversation_deleted.connect(self._deleted)
        self.sidebar.files.sig_notice.connect(self.show_notice)
        self.sidebar.files.sig_imported.connect(lambda ids: ids and self.open_conversation(ids[0]))
        self.banner = QVBoxLayout()
        self.model_note = QLabel(wordWrap=True)  # about the loaded model, for as long as it is loaded
        self.model_note.setAccessibleName("About this model")
        self.model_note.hide()
        self.banner.addWidget(self.model_note)
        models.sig_model_loaded.connect(self._model_loaded)
        models.sig_model_unloaded.connect(self.model_note.hide)
        models.sig_switched_elsewhere.connect(lambda name: self.show_notice(
            f"A request from another app (the endpoint) loaded {name}: this chat's next reply is written by {name}. "
            "Pick another model above to switch back."))
        # The messages in one centred column about 80 characters wide: long lines are hard to read
        self.messages = QVBoxLayout()
        self._views: list[MessageView] = []  # in the layout's order (views())
        self._unanswered_why: dict[int, str] = {}  # a message's id: why its reply did not start
        self.messages.setSpacing(14)
        self.messages.addStretch(1)
        self.empty = EmptyState(self)
        self.empty.sig_example_chosen.connect(self._example)
        self.column = QWidget()
        self.column.setObjectName("chat-column")
        column = QVBoxLayout(self.column)
        column.setContentsMargins(16, 12, 16, 12)
        column.addWidget(self.empty)
        column.addLayout(self.messages)
        self.column.setMaximumWidth(self.fontMetrics().averageCharWidth() * COLUMN_CHARS + 2 * 16 + 2 * 14 + 48)
        holder = QWidget()
        holder.setObjectName("chat-area")
        centre = QHBoxLayout(holder)
        centre.setContentsMargins(0, 0, 0, 0)
        centre.addWidget(self.column)  # a widget's maximum width and the layout's centring keep it in the middle
        self.scroll = QScrollArea(self)
        self.scroll.setObjectName("chat-scroll")
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setWidgetResizable(True)
        self.scroll.setWidget(holder)
        self.scroll.setAccessibleName("Messages")
        self.follower = ScrollFollower(self.scroll)
        self.latest_button = self.follower.latest_button
        self.reading = QProgressBar(self)  # a long prompt being read, before the first word
        self.reading.setFormat("Reading the conversation: %v of %m tokens")
        self.reading.setAccessibleName("Reading the conversation")
        self.reading.hide()
        self.notice = QLabel(wordWrap=True)
        self.notice.setAccessibleName("Notice")
        self.notice.hide()
        self.input = MessageInput(self)
        self.input.setPlaceholderText("Write a message (Enter sends, Shift+Enter for a new line)")
        self.input.setAccessibleName("Message")
        self.input.setFixedHeight(self.input.fontMetrics().lineSpacing() * 3 + 12)
        self.input.sig_send_requested.connect(self.send)
        self.meter = ContextMeter(self)
        self.attachments = AttachmentBar(self)
        self.attachments.documents = documents
        self.attachments.sig_changed.connect(self.count_context)
        self.attachments.sig_forgotten.connect(self._forget_file)
        self.input.sig_files_given.connect(self.attach)
        self.input.sig_image_pasted.connect(self._attach_pasted)
        # the composer: attach, image and this chat's settings on its left, Stop and Send on its right
        self.attach_button = _composer_button(self, "Attach", "attach", "Attach files")
        self.attach_button.setToolTip("Attach text, Markdown, code, CSV, JSON, HTML, PDF or Word files (or drop them "
                                      "on the message box)")
        self.attach_button.clicked.connect(self._attach_clicked)
        self.image_button = _composer_button(self, "Image", "image", "Attach an image")
        self.image_button.setToolTip("Attach an image (for models that see)")
        self.image_button.clicked.connect(self._image_clicked)
        self.summarizer = ChatSummarizer(self)
        self.summarizer.sig_summarized.connect(self._start_from_summary)
        self.summarizer.sig_failed.connect(lambda why: self.show_notice(f"The summary failed: {why}"))
        self.summary_button = QPushButton("New chat from a summary", self)
        self.summary_button.setAccessibleName("Start a new chat with a summary of this one")
        self.summary_button.setToolTip("The model summarizes this chat; a new chat starts with the summary in its "
                                       "system prompt (Chat settings shows it), so the context is nearly empty again")
        self.summary_button.clicked.connect(self.summarize)
        self.input.textChanged.connect(self.count_context)
        self.input.setTabChangesFocus(True)  # Tab reaches Send, Stop and the messages' actions
        self.send_button = _composer_button(self, "Send", "send", "Send")
        self.send_button.setObjectName("send")
        self.send_button.setToolTip("Send (Enter)")
        set_icon(self.send_button, "send", "accent_text")
        self.send_button.clicked.connect(self.send)
        self.stop_button = _composer_button(self, "Stop", "stop", "Stop the reply")
        self.stop_button.setToolTip("Stop the reply")
        self.stop_button.clicked.connect(self.stop)
        self.stop_button.setEnabled(False)
        self.chat_settings = ChatSettingsPanel(self)
        self.chat_settings.hide()
        self.chat_settings.sig_changed.connect(self._own_settings_changed)
        self.chat_settings.sig_save_for_model.connect(self._save_for_model)
        self.chat_settings.sig_template_requested.connect(self.edit_template)
        self.settings_button = QToolButton(self, checkable=True)
        self.settings_button.setText("Chat settings")
        self.settings_button.setAccessibleName("This chat's settings")
        self.settings_button.setToolTip("A preset, the system prompt and sampling for this chat only")
        set_icon(self.settings_button, "settings")
        self.settings_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.settings_button.toggled.connect(self._toggle_chat_settings)
        self.composer = QFrame(self)
        self.composer.setObjectName("composer")
        tools = QHBoxLayout()
        tools.setSpacing(SPACE["xs"])
        for button in (self.attach_button, self.image_button, self.settings_button):
            tools.addWidget(button)
        tools.addStretch(1)
        tools.addWidget(self.stop_button)
        tools.addWidget(self.send_button)
        inside = QVBoxLayout(self.composer)
        inside.setContentsMargins(SPACE["s"], SPACE["s"], SPACE["s"], SPACE["s"])
        inside.setSpacing(SPACE["xs"])
        inside.addWidget(self.attachments)
        inside.addWidget(self.input)
        inside.addLayout(tools)
        right = QWidget(self)
        col = QVBoxLayout(right)
        col.setContentsMargins(0, 0, 0, SPACE["s"])
        col.addLayout(self.banner)
        col.addWidget(self.scroll, 1)
        col.addWidget(self.reading)
        col.addWidget(self.notice)
        meter_row = QHBoxLayout()  # under the composer: how full the context is
        meter_row.setContentsMargins(SPACE["xs"], 0, SPACE["xs"], 0)
        meter_row.addWidget(self.meter, 1)
        meter_row.addWidget(self.summary_button)
        bottom = QWidget(self)  # as wide as the messages' column, in the middle
        bottom.setMaximumWidth(860)
        under = QVBoxLayout(bottom)
        under.setContentsMargins(SPACE["l"], 0, SPACE["l"], 0)
        under.setSpacing(SPACE["xs"])
        under.addWidget(self.composer)
        under.addLayout(meter_row)
        centred = QHBoxLayout()
        centred.addWidget(bottom)
        col.addLayout(centred)
        self.splitter = QSplitter(Qt.Orientation.Horizontal, self)
        self.splitter.addWidget(self.sidebar)
        self.splitter.addWidget(right)
        self.splitter.addWidget(self.chat_settings)  # beside the messages, not over them
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([220, 780])
        QVBoxLayout(self).addWidget(self.splitter)
        self.sidebar.refresh()
        models.sig_model_loading.connect(lambda _name: self._show_empty())
        models.sig_model_unloaded.connect(self._show_empty)
        self.scroll.setStyleSheet(chat_style())  # the messages only: a style sheet slows every widget it covers
        self._show_empty()
        self._update_actions()

    def restyle(self) -> None:
        """After a change of theme: the open chat's messages drawn again (code blocks carry the theme's colours)."""
        self.scroll.setStyleSheet(chat_style())
        self.empty.restyle()
        for view in self.views():
            view.restyle()

    def _show_empty(self) -> None:
        """An empty chat says what to do; a chat with messages shows them."""
        models = self.models
        name = models.name or self.settings().model
        self.empty.set_model(name, loaded=models.state == "ready" and models.name == name)
        self.empty.setVisible(not self.views())
        self.follower.set_empty(not self.views())  # no "↓ Latest" over an empty chat's welcome

    def _example(self, prompt: str) -> None:
        self.input.setPlainText(prompt)
        self.input.moveCursor(QTextCursor.MoveOperation.End)
        self.input.setFocus()

    def _model_loaded(self, name: str, _backend: str, _reason: str) -> None:
        self.model_note.setText("" if self.models.chat_template else (
            f"{name} has no chat template: it is probably a base model, which continues text rather than answering, "
            "so replies may run on as “User: … Assistant: …”. For chatting, pick an instruct model; this one "
            "suits completions on the endpoint."))
        self.model_note.setVisible(not self.models.chat_template)
        self.chat_settings.set_thinking_controls(*self.models.thinking_controls)
        self._show_own_settings()  # the model's own defaults may apply now
        self._show_empty()
        self._ask_whether_the_model_sees()
        self.count_context()

    # -- what is on screen ------------------------------------------------------------------------

    def views(self) -> list[MessageView]:
        # Our own list, never the layout's items: a QWidgetItem's wrapper from itemAt() outlives the item Qt deletes
        # with its widget, and a widget made later at that address came back as that stale QWidgetItem.
        return list(self._views)

    def show_notice(self, text: str) -> None:
        self.notice.setText(text)
        self.notice.setVisible(bool(text))

    @property
    def busy(self) -> bool:
        return self.session.busy or self.searching

    def open_conversation(self, conversation: int) -> None:
        if conversation == self.conversation_id:
            return
        self.chat_settings.flush()
        self.cancel_edit()
        self.show_notice("")  # a notice is about the chat it appeared in
        self.conversation_id = conversation
        self.own = own_settings(self.store.chat_settings(conversation))
        self._show_own_settings()
        self._rebuild()
        self._show_chat_files()
        self.sidebar.refresh(conversation)

    def new_chat(self) -> None:
        self.chat_settings.flush()
        self.cancel_edit()
        self.show_notice("")
        self.conversation_id = None
        self.own = None
        self._show_own_settings()
        self.sidebar.list.setCurrentItem(None)
        self._rebuild()
        self._show_chat_files()
        self.input.setFocus()

    def _deleted(self, conversation: int) -> None:
        if self._reply is not None and self._reply.conversation == conversation:
            self.session.stop()  # nobody will read it, and it would hold the model for minutes
        if conversation == self.conversation_id:
            self.new_chat()

    def _rebuild(self, *, follow: bool = True) -> None:
        self.follower.forget()
        for view in self._views:
            view.setParent(None)
            view.deleteLater()
        self._views.clear()
        if self.conversation_id is None:
            self._show_empty()
            self._update_actions()
            return
        reply = self._reply if self._reply and self._reply.conversation == self.conversation_id else None
        for m in self.store.messages(self.conversation_id):
            live = reply and m.id == reply.message_id
            view = self._add_view(m.role, reply.text if live else m.content, m.id, m.status, m.stats, m.created)
            view.set_reasoning(reply.reasoning if live else m.reasoning)
            if live:
                view.set_model(reply.model)
            self._show_variants(view)
        self._update_actions()
        self._show_empty()
        self.count_context()
        if follow:
            self.follow()  # an opened chat shows its end

    def _compact(self) -> bool:
        """A narrow chat: the messages' actions show their icons only (their names stay in tooltips)."""
        return self.scroll.viewport().width() < COMPACT_BELOW

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        compact = self._compact()
        for view in self._views:
            view.set_compact(compact)

    def _add_view(self, role: str, text: str, message_id: int, status: str = "done",
                  stats: dict | None = None, created: float | None = None) -> MessageView:
        view = MessageView(role, text, message_id=message_id, status=status, stats=stats,
                           created=created or time.time())
        view.sig_edit_requested.connect(self.edit)
        view.sig_regenerate_requested.connect(self.regenerate)
        view.sig_variant_requested.connect(self.show_variant)
        view.sig_branch_requested.connect(self.branch_from)
        view.sig_delete_requested.connect(self.delete_from)
        view.sig_retry_requested.connect(self.retry)
        view.sig_continue_requested.connect(self.continue_reply)
        view.set_compact(self._compact())
        if role == "assistant" and (asked := next((v for v in reversed(self.views()) if v.role == "user"), None)):
            view.set_sources(asked.text)  # the searched files' parts it was given
        self.messages.insertWidget(self.messages.count() - 1, view)
        self._views.append(view)
        self.empty.hide()
        return view

    def _show_variants(self, view: MessageView) -> None:
        variants = self.store.variants(view.message_id)
        view.set_variants(variants.index(view.message_id) + 1 if view.message_id in variants else 1, len(variants))

    def _view_of(self, message_id: int) -> MessageView | None:
        return next((v for v in self.views() if v.message_id == message_id), None)

    def follow(self) -> None:
        """Keep the newest message in sight while it is laid out and while the reply streams in."""
        self.follower.follow()

    def _update_actions(self) -> None:
        busy = self.busy
        self.stop_button.setEnabled(busy)
        self.stop_button.setVisible(busy)  # one button in Send's place while a reply is written
        self.send_button.setVisible(not busy)
        views = self.views()
        last_reply = next((v for v in reversed(views) if v.role == "assistant"), None)
        for v in views:
            v.set_actions_enabled(not busy and (v.role == "user" or v is last_reply))
            v.set_variants_enabled(not busy)  # the branch on screen stays while a reply is written on it
            v.set_unanswered(None)
            if v.role == "assistant":  # only the chat's last reply can be written on
                v.continue_button.setVisible(v is views[-1] and not busy and v.status == "done"
                                             and (v._stats or {}).get("finish") == "length")
        self.summary_button.setVisible(bool(views))  # an empty chat has nothing to summarize
        writing_here = busy and (self.searching or self._reply is not None and
                                 self._reply.conversation == self.conversation_id)
        if views and views[-1].role == "user" and not writing_here:  # (a reply in another chat does not answer it)
            views[-1].set_unanswered(self._unanswered_why.get(views[-1].message_id, "This message has no reply."))
            views[-1].retry_button.setEnabled(not busy)  # once the other chat's reply is done

    # -- sending ----------------------------------------------------------------------------------

    def send(self) -> None:
        text = self.input.toPlainText()
        if not text.strip():
            self.show_notice("Type a message first.")
            return
        if self.busy:
            self.show_notice(STILL_WRITING)
            return
        try:  # every file as read, still there and unchanged, or nothing is sent
            files, searched = self.attachments.ready()
            files, images = self._with_stored_images(files)
        except AttachmentError as e:
            self.show_notice(str(e))
            return
        if searched:
            self._search_then_send(text, files, searched, lambda message: self._post(text, images + message))
        else:
            self._post(text, images + message_with_files(text, files))

    def _post(self, question: str, text: str) -> None:
        """Store the message (with its files) and start the reply."""
        edited = self._stored(self.editing) if self.editing is not None else None
        self.editing = None
        if self.conversation_id is None:
            self.conversation_id = self.store.create(_title(question)).id
            if self.own is not None:  # chosen before the first message
                self.store.set_chat_settings(self.conversation_id, self.own.model_dump(exclude_none=True))
        # an edit is a new branch beside the edited message: the old one and its replies stay a click away
        message = self.store.add(self.conversation_id, "user", text,
                                 parent=edited.parent if edited is not None else LATEST)
        if edited is not None:
            self.show_notice("")
            self._rebuild()
        else:
            self._show_variants(self._add_view("user", text, message.id))  # after "Branch from here": 2/2
        kept = self.attachments.sent()
        self._keep_searched(kept)  # searched again for every later message of this chat
        self.input.clear()
        self.attachments.clear()
        if kept:
            self._show_chat_files()
        self.sidebar.refresh(self.conversation_id)
        self.follow()
        self._start_reply()

    def attach(self, paths: list) -> None:
        self.attachments.worker, self.attachments.model_name = self.models.worker, self.models.name
        self.attachments.add_paths(paths)

    def _attach_clicked(self) -> None:
        patterns = " ".join(f"*{s}" for s in sorted(TEXT_SUFFIXES | {".pdf", ".docx"}))
        self.attach(dialogs.open_paths(self, "Attach files", f"Documents ({patterns});;All files (*)"))

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

    def stop(self) -> None:
        self.session.stop()

    def shutdown(self) -> None:
        """At exit: a reply still being written is kept as stopped, with the text so far and its figures (the
        engine stops within a step; a few seconds at most are waited for)."""
        self.session.stop()
        self.session.wait(5.0)
        if self._reply is not None:  # the engine did not answer in time: the text, without figures
            self._end_reply("stopped", None, None)

    def _history(self, upto: int | None = None) -> list[dict]:
        history = self._system_only(self.effective_settings())
        path = self.store.path_to(upto) if upto is not None else self.store.messages(self.conversation_id)
        for m in path:
            if m.status != "error" and m.content:
                message = {"role": m.role, "content": self._content(m.role, m.content)}
                if m.reasoning:  # for templates that keep it; the others drop it
                    message["reasoning_content"] = m.reasoning
                history.append(message)
        return history

    def _start_reply(self, *, after: int | None = None, continuing: StoredMessage | None = None) -> None:
        """A reply at the end of the branch on screen, or after message `after` (a regenerate: a new branch), or
        more of the reply `continuing` (cut at the length limit), written on to its end."""
        settings = self.effective_settings()
        try:
            worker = self.models.worker or self.models.load(settings.model)
        except LanternError as e:  # refused before it started (no such model, no server address): said, kept
            if self.views() and self.views()[-1].role == "user":
                self._unanswered_why[self.views()[-1].message_id] = f"No reply: {e}"
            else:
                self.show_notice(f"No reply: {e}")
            self._update_actions()
            self.sig_reply_done.emit("error")
            return
        options = {"stop": tuple(settings.stop), "template_options": settings.template_options(),
                   "continue_reply": continuing is not None, **self.request_options}
        request = GenerationRequest(messages=self._history(after), sampling=settings.sampling(),
                                    max_tokens=settings.max_tokens,
                                    drop_oldest_turns=settings.overflow == "drop_oldest",
                                    prompt_lookup=settings.prompt_lookup, priority=1,  # before the endpoint's
                                    **options)
        model = self.models.name or settings.model
        if continuing is not None:  # the same message grows; its figures are the continuation's
            self.store.update(continuing.id, content=continuing.content, status="streaming")
            self._reply = _Reply(self.conversation_id, continuing.id, continuing.content, time.monotonic(),
                                 continuing.reasoning, model, before=continuing)
            if (view := self._view_of(continuing.id)) is not None:
                view.finish("streaming")
        else:
            reply = self.store.add(self.conversation_id, "assistant", "", status="streaming",
                                   parent=LATEST if after is None else after)
            self._reply = _Reply(self.conversation_id, reply.id, saved_at=time.monotonic(), model=model)
            if after is None:
                self._add_view("assistant", "", reply.id, "streaming").set_model(model)
            else:
                self._rebuild()
        self.show_notice("" if self.models.state == "ready" else "Loading the model…")
        self.session.worker = worker
        self.session.send(request)
        self.sidebar.set_generating(self.conversation_id)
        self._update_actions()

    # -- the reply coming in ----------------------------------------------------------------------

    def _on_prompt_read(self, done: int, total: int) -> None:
        if self._reply is None or self._reply.conversation != self.conversation_id:
            return
        self.reading.setRange(0, total)
        self.reading.setValue(done)
        self.reading.setVisible(done < total)

    def _on_text(self, text: str) -> None:
        self.reading.hide()
        reply = self._reply
        if reply is None:
            return
        if not reply.text and self.notice.text() == "Loading the model…":
            self.show_notice("")
        reply.text += text
        if reply.conversation == self.conversation_id and (view := self._view_of(reply.message_id)):
            view.append(text)  # while following, the growing range keeps the end in sight
        if time.monotonic() - reply.saved_at >= SAVE_EVERY_S:
            self.store.update(reply.message_id, content=reply.text, reasoning=reply.reasoning or None)
            reply.saved_at = time.monotonic()

    def _on_reasoning(self, text: str) -> None:
        reply = self._reply
        if reply is None:
            return
        reply.reasoning += text
        if reply.conversation == self.conversation_id and (view := self._view_of(reply.message_id)):
            view.append_reasoning(text)
        if time.monotonic() - reply.saved_at >= SAVE_EVERY_S:
            self.store.update(reply.message_id, content=reply.text, reasoning=reply.reasoning)
            reply.saved_at = time.monotonic()

    def _on_finished(self, finished: Finished) -> None:
        status = STATUS_BY_REASON[finished.reason]
        stats = {**asdict(finished.stats), "model": self._reply.model if self._reply else "",  # who wrote it
                 "finish": finished.reason}  # "length": the reply says it was cut at the limit
        self._end_reply(status, stats, finished.error)
        if finished.stats.dropped_messages:
            self.show_notice(f"The {finished.stats.dropped_messages} oldest messages did not fit the context "
                             "window and were left out of this reply.")

    def _on_failed(self, message: str) -> None:
        if self.models.state == "failed" and self.models.error not in message:
            message = f"{message} {self.models.error}"
        reply = self._reply
        shown = reply is not None and reply.conversation == self.conversation_id and self._view_of(reply.message_id)
        if reply is not None and reply.before is not None and reply.text == reply.before.content:
            self._end_reply("error", None, message, refused=message)  # the reply stays as it was
            return
        self._end_reply("error", None, message)
        # once: in the reply where it happened when that is on screen, else above the input
        self.show_notice("" if shown else message)

    def _on_dropped(self) -> None:
        """Stopped before the model began it: kept as stopped (a continuation is put back: _end_reply)."""
        self._end_reply("stopped", None, None)

    def _end_reply(self, status: str, stats: dict | None, error: str | None, *, refused: str = "") -> None:
        """`refused`: why a continuation wrote nothing (the reply is put back as it was, and that is said)."""
        reply, self._reply = self._reply, None
        self.reading.hide()
        self.sidebar.set_generating(None)
        if reply is None:
            return
        if self.notice.text() == STILL_WRITING:
            self.show_notice("")
        if reply.before is not None and reply.text == reply.before.content and status in ("stopped", "error"):
            # a continuation that wrote nothing: the reply stays as it was (its Continue too), and that is said
            status, stats, error = reply.before.status, reply.before.stats, None
            self.show_notice(f"Not continued: {refused or 'stopped before it began'}")
        self.store.update(reply.message_id, content=reply.text, status=status, stats=stats,
                          reasoning=reply.reasoning or None)
        if reply.conversation == self.conversation_id and (view := self._view_of(reply.message_id)):
            view.finish(status, stats, error)  # its figures stay in sight while following
        self._update_actions()
        self.count_context()  # the reply takes its room too
        self.sig_reply_done.emit(status)


def _title(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= 48 else line[:47].rstrip() + "…"


def _composer_button(parent, text: str, icon_name: str, accessible: str) -> QToolButton:
    """An icon button inside the composer (its text is for screen readers and tests)."""
    button = QToolButton(parent)
    button.setText(text)
    button.setAccessibleName(accessible)
    button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)
    button.setIconSize(QSize(18, 18))
    button.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
    set_icon(button, icon_name)
    return button

