"""The chat: the sidebar of conversations, the messages, and the box to write in."""
from __future__ import annotations

import time
from typing import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QSplitter, QVBoxLayout, QWidget

from app.attachments import TEXT_SUFFIXES, AttachmentError, message_with_files
from app.chat_images import ImageStore
from app.conversations import LATEST, ConversationStore
from app.settings import ChatSettings, ModelDefaults, Settings
from ui import dialogs
from ui.chat_images import ChatImagesMixin
from ui.chat_own_settings import ChatSettingsMixin, own_settings
from ui.chat_reply import STILL_WRITING, Reply, ReplyMixin
from ui.chat_searched_files import SearchedFilesMixin
from ui.chat_session import ChatSession
from ui.chat_settings import ChatSettingsPanel
from ui.chat_summary import ChatSummarizer
from ui.chat_tools import ToolsReplyMixin
from ui.composer import Composer
from ui.context_meter import ContextMeter
from ui.conversation_list import ConversationList
from ui.message_actions import MessageActionsMixin
from ui.message_area import MessageArea
from ui.message_view import MessageView
from ui.model_controller import ModelController
from ui.theme import SPACE, chat_style

COMPACT_BELOW = 520  # px of the messages' area below which message actions are icons only


class ChatPage(ReplyMixin, ToolsReplyMixin, MessageActionsMixin, ChatSettingsMixin, SearchedFilesMixin, ChatImagesMixin,
               QWidget):
    sig_reply_done = Signal(str)  # the reply's final status: done, stopped, error

    def __init__(self, store: ConversationStore, models: ModelController, settings: Callable[[], Settings],
                 parent=None, *, save_model_defaults: Callable[[str, ModelDefaults], None] | None = None,
                 documents=None, draft_choices: Callable[[str], tuple[list[str], int]] | None = None):
        super().__init__(parent)
        self.store, self.models, self.settings = store, models, settings
        self.documents = documents  # app.chat_documents.ChatDocuments: files larger than the context, searched
        self.images = ImageStore(store.path.parent / "images")  # the chats' images, by SHA-256
        MessageView.image_source = self.images.get
        self.searching = False  # a message waits for the excerpts of its searched files
        self.save_model_defaults = save_model_defaults
        # a model's name -> the library's models that can draft for it, and its MTP blocks (reads files: a task)
        self.draft_choices = draft_choices
        self.own: ChatSettings | None = None  # the open chat's own settings (a new chat's, until it is created)
        self.conversation_id: int | None = None
        self.editing: int | None = None  # the user message being edited
        self._reply: Reply | None = None
        self.request_options: dict = {}  # more GenerationRequest fields (tests force a long reply with ignore_eos)
        self._views: list[MessageView] = []  # in the layout's order (views())
        self._unanswered_why: dict[int, str] = {}  # a message's id: why its reply did not start
        self.session = ChatSession(parent=self)
        self.sidebar = ConversationList(store, self)
        self._make_banner()
        self.scroll = MessageArea(self)
        self.messages, self.empty, self.column = self.scroll.messages, self.scroll.empty, self.scroll.column
        self.follower, self.latest_button = self.scroll.follower, self.scroll.follower.latest_button
        self.reading = QProgressBar(self)  # a long prompt being read, before the first word
        self.reading.setFormat("Reading the conversation: %v of %m tokens")
        self.reading.setAccessibleName("Reading the conversation")
        self.reading.hide()
        self.notice = QLabel(wordWrap=True)
        self.notice.setAccessibleName("Notice")
        self.notice.hide()
        self.composer = Composer(self)
        self.input, self.attachments = self.composer.input, self.composer.attachments
        self.attachments.documents = documents
        self.attach_button, self.image_button = self.composer.attach_button, self.composer.image_button
        self.send_button, self.stop_button = self.composer.send_button, self.composer.stop_button
        self.settings_button = self.composer.settings_button
        self.meter = ContextMeter(self)
        self.summarizer = ChatSummarizer(self)
        self.summary_button = QPushButton("New chat from a summary", self)
        self.summary_button.setAccessibleName("Start a new chat with a summary of this one")
        self.summary_button.setToolTip("The model summarizes this chat; a new chat starts with the summary in its "
                                       "system prompt (Chat settings shows it), so the context is nearly empty again")
        self.chat_settings = ChatSettingsPanel(self)
        self.chat_settings.hide()
        self._lay_out()
        self._connect()
        self.sidebar.refresh()
        self.scroll.setStyleSheet(chat_style())  # the messages only: a style sheet slows every widget it covers
        self._show_empty()
        self._update_actions()

    def _make_banner(self) -> None:
        """Above the messages: what to know about the loaded model, for as long as it is loaded."""
        self.banner = QVBoxLayout()
        self.model_note = QLabel(wordWrap=True)
        self.model_note.setAccessibleName("About this model")
        self.model_note.hide()
        self.banner.addWidget(self.model_note)

    def _lay_out(self) -> None:
        """The chat list, the messages with the composer and the context meter under them, and this chat's settings
        beside them (not over them)."""
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
        self.splitter.addWidget(self.chat_settings)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([220, 780])
        QVBoxLayout(self).addWidget(self.splitter)

    def _connect(self) -> None:
        session, sidebar, models = self.session, self.sidebar, self.models
        session.sig_text_received.connect(self._on_text)
        session.sig_reasoning_received.connect(self._on_reasoning)
        session.sig_reply_finished.connect(self._on_finished)
        session.sig_reply_failed.connect(self._on_failed)
        session.sig_reply_dropped.connect(self._on_dropped)
        session.sig_prompt_read.connect(self._on_prompt_read)
        self._init_tools()
        sidebar.sig_conversation_chosen.connect(self.open_conversation)
        sidebar.sig_new_chat_requested.connect(self.new_chat)
        sidebar.sig_conversation_deleted.connect(self._deleted)
        sidebar.files.sig_notice.connect(self.show_notice)
        sidebar.files.sig_imported.connect(lambda ids: ids and self.open_conversation(ids[0]))
        models.sig_model_loaded.connect(self._model_loaded)
        models.sig_model_unloaded.connect(self.model_note.hide)
        models.sig_switched_elsewhere.connect(lambda name: self.show_notice(
            f"A request from another app (the endpoint) loaded {name}: this chat's next reply is written by {name}. "
            "Pick another model above to switch back."))
        models.sig_model_loading.connect(lambda _name: self._show_empty())
        models.sig_model_unloaded.connect(self._show_empty)
        self.empty.sig_example_chosen.connect(self._example)
        self.input.sig_send_requested.connect(self.send)
        self.input.sig_files_given.connect(self.attach)
        self.input.sig_image_pasted.connect(self._attach_pasted)
        self.input.textChanged.connect(self.count_context)
        self.attachments.sig_changed.connect(self.count_context)
        self.attachments.sig_forgotten.connect(self._forget_file)
        self.attach_button.clicked.connect(self._attach_clicked)
        self.image_button.clicked.connect(self._image_clicked)
        self.send_button.clicked.connect(self.send)
        self.stop_button.clicked.connect(self.stop)
        self.settings_button.toggled.connect(self._toggle_chat_settings)
        self.summarizer.sig_summarized.connect(self._start_from_summary)
        self.summarizer.sig_failed.connect(lambda why: self.show_notice(f"The summary failed: {why}"))
        self.summary_button.clicked.connect(self.summarize)
        self.chat_settings.sig_changed.connect(self._own_settings_changed)
        self.chat_settings.sig_save_for_model.connect(self._save_for_model)
        self.chat_settings.sig_template_requested.connect(self.edit_template)
        self.chat_settings.sig_draft_chosen.connect(self.choose_draft)
        self.chat_settings.sig_mtp_chosen.connect(self.choose_mtp)

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
        self.show_draft_choices(name)
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
        return self.session.busy or self.agent.busy or self.searching

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
            view.set_tools(reply.tools if live else m.tools)
            for card in view.cards.values() if live else ():
                self._wire_card(card)
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
        for signal, action in ((view.sig_edit_requested, self.edit), (view.sig_regenerate_requested, self.regenerate),
                               (view.sig_variant_requested, self.show_variant),
                               (view.sig_branch_requested, self.branch_from),
                               (view.sig_delete_requested, self.delete_from), (view.sig_retry_requested, self.retry),
                               (view.sig_continue_requested, self.continue_reply)):
            signal.connect(action)
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


def _title(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= 48 else line[:47].rstrip() + "…"
