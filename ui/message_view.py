"""One message in the chat: its text (Markdown for replies), its figures, and what can be done with it."""
from __future__ import annotations

import html
import time

from PySide6.QtCore import QSize, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QGuiApplication, QImage, QTextDocument
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QMenu, QSizePolicy, QToolButton, QVBoxLayout

from app.attachments import split_files, split_images
from app.chat_export import figures_text  # one wording for the window and the exports
from ui.file_viewer import FileViewer, ImageViewer
from ui.icons import icon, set_icon
from ui.markdown import render_markdown
from ui.message_body import MessageBody
from ui.theme import is_dark, set_role
from ui.tool_call_card import ToolCallCard

FOLD_LINES, FOLD_CHARS, FOLDED_LINES = 15, 1500, 8  # a message longer than this shows this many lines at first
REPLY_FOLD_LINES = 40  # a finished reply longer than this can be folded (it opens unfolded: it is what was asked for)
STATUS_NOTES = {"stopped": "Stopped.", "cut_off": "Cut off: Lantern stopped while this reply was being written.",
                "error": "Failed."}


def figures_details(stats: dict | None) -> str:
    """Everything measured, for the tooltip over the figures line."""
    if not stats:
        return ""
    lines = [f"First token after {stats.get('ttft_ms', 0):.0f} ms",
             f"{stats.get('completion_tokens', 0)} tokens at {stats.get('decode_tokens_per_s', 0):.1f} tokens/s",
             f"Prompt: {stats.get('prompt_tokens', 0)} tokens, {stats.get('cached_tokens', 0)} reused from the cache, "
             f"{stats.get('prefill_tokens', 0)} computed"]
    sources = stats.get("drafts_by_source") or {}
    for name, counts in sources.items() if isinstance(sources, dict) else ():
        if isinstance(counts, (list, tuple)) and len(counts) == 2:  # a damaged chats file may say anything
            lines.append(f"Drafts ({name}): {counts[1]} of {counts[0]} tokens accepted")
    if stats.get("drafted_tokens") and not sources:  # replies saved before sources were counted
        lines.append(f"Prompt lookup: {stats.get('accepted_tokens', 0)} of {stats['drafted_tokens']} drafted tokens "
                     "accepted")
    rounds = stats.get("tool_rounds")
    if isinstance(rounds, list) and rounds and all(isinstance(n, int) for n in rounds):
        lines.append(f"Tool rounds: {len(rounds)}; prompt tokens computed in each: "
                     f"{', '.join(str(n) for n in rounds)} (the rest from the cache)")
    if stats.get("backend"):
        lines.append(f"Model: {stats.get('model') or 'unknown'} on {stats['backend']}")
    return "\n".join(lines)


class MessageView(QFrame):
    sig_edit_requested = Signal(int)  # the user message's id
    sig_regenerate_requested = Signal(int)  # the reply's id
    sig_variant_requested = Signal(int, int)  # this message's id, and -1 (the previous variant) or +1 (the next)
    sig_branch_requested = Signal(int)  # continue from this reply on a new branch
    sig_delete_requested = Signal(int)  # delete this message and what follows it
    sig_retry_requested = Signal(int)  # a reply to this message, which has none
    sig_continue_requested = Signal(int)  # this reply, cut at the length limit, written on

    def __init__(self, role: str, text: str, *, message_id: int, status: str = "done", stats: dict | None = None,
                 created: float | None = None, parent=None):
        super().__init__(parent)
        self.role, self.message_id, self.status = role, message_id, status
        self._expanded = role != "user"  # a long message of the user's opens folded, a long reply unfolded
        self._text, self._code_blocks = text, []
        self._files: list = []  # a user message's attached files (app.attachments.FileInMessage), opened by a click
        self.setObjectName(f"message-{role}")  # styled by ui.theme.chat_style: the user's words in a bubble
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground)
        self._reasoning, self._stats = "", stats
        layout = QVBoxLayout(self)
        layout.setContentsMargins(14, 10, 14, 6)
        layout.setSpacing(4)
        self._make_header(layout, role, created)
        self._make_reasoning(layout)
        self.tools_area = QVBoxLayout()  # a reply's tool rounds: what it said, each call (ui/tool_call_card.py)
        self.tools_area.setSpacing(6)
        layout.addLayout(self.tools_area)
        self.cards: dict[str, ToolCallCard] = {}
        self._make_typing(layout)
        self._make_body(layout, role)
        self._make_notes(layout)
        self._make_actions(layout, role)
        self._render()
        self.finish(status, stats)

    def _make_header(self, layout: QVBoxLayout, role: str, created: float | None) -> None:
        """The speaker's picture and name, the model that wrote it, and when."""
        header = QHBoxLayout()
        header.setSpacing(8)
        self.avatar = avatar = QLabel(self)
        self._draw_avatar()
        who = QLabel("You" if role == "user" else "Lantern", self)
        who.setObjectName("speaker")
        self.model_label = QLabel(self)  # the model that wrote this reply
        self.model_label.setObjectName("speaker-model")
        self.model_label.setAccessibleName("Written by")
        # a long model name gives way in a narrow chat (its tooltip keeps it) instead of widening the column
        self.model_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.model_label.setMinimumWidth(40)
        self.time_label = QLabel(_when(created), self)  # when it was written; the full date on hover
        self.time_label.setObjectName("speaker-model")
        self.time_label.setAccessibleName("Written at")
        if created:
            self.time_label.setToolTip(time.strftime("%A %d %B %Y, %H:%M:%S", time.localtime(created)))
        header.addWidget(avatar)
        header.addWidget(who)
        header.addWidget(self.model_label)
        header.addStretch(1)
        header.addWidget(self.time_label)
        layout.addLayout(header)

    def _make_reasoning(self, layout: QVBoxLayout) -> None:
        """The model's thinking, folded above the answer: "Thought for 12 s", a click away."""
        self.reasoning_toggle = QToolButton(self, checkable=True)
        self.reasoning_toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.reasoning_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.reasoning_toggle.setAutoRaise(True)
        self.reasoning_toggle.setAccessibleName("Show the model's thinking")
        self.reasoning_toggle.toggled.connect(self._fold)
        self.reasoning_body = MessageBody(self)
        self.reasoning_body.setAccessibleName("The model's thinking")
        self.reasoning_body.setStyleSheet("color: gray")
        layout.addWidget(self.reasoning_toggle)
        layout.addWidget(self.reasoning_body)
        self.reasoning_toggle.hide()
        self.reasoning_body.hide()

    def _make_typing(self, layout: QVBoxLayout) -> None:
        """Three dots that move while the model reads the conversation and thinks of its first word."""
        self.typing = QLabel(self)
        self.typing.setObjectName("typing")
        self.typing.setAccessibleName("Lantern is writing")
        self._typing_step = 0
        self._typing_clock = QTimer(self, interval=350)
        self._typing_clock.timeout.connect(self._type)
        layout.addWidget(self.typing)
        self.typing.hide()

    def _make_body(self, layout: QVBoxLayout, role: str) -> None:
        """The message itself, folded when long; right-click for copy, branch from here, delete."""
        self.body = MessageBody(self)
        self.body.setAccessibleName("Your message" if role == "user" else "Reply")
        self.body.anchorClicked.connect(self._link)
        for w in (self, self.body):  # right-click: copy, branch from here, delete
            w.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
            w.customContextMenuRequested.connect(lambda pos, w=w: self.menu().exec(w.mapToGlobal(pos)))
        layout.addWidget(self.body)
        self.expand_button = QToolButton(self)  # a long pasted message is folded to a few lines
        self.expand_button.setObjectName("message-action")
        self.expand_button.setAccessibleName("Show the whole message")
        self.expand_button.clicked.connect(self._toggle_expanded)
        self.expand_button.hide()
        layout.addWidget(self.expand_button)

    def _make_notes(self, layout: QVBoxLayout) -> None:
        """Under the message: a note (why it failed), its sources (searched files) and its figures."""
        self.note = QLabel(wordWrap=True)
        self.note.setObjectName("message-note")
        self.figures = QLabel(wordWrap=True)
        self.figures.setObjectName("figures")
        font = self.figures.font()
        font.setPointSizeF(font.pointSizeF() * 0.88)
        self.figures.setFont(font)
        self.figures.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.figures.setAccessibleName("Reply figures")
        self.sources = QLabel(wordWrap=True)  # a reply's excerpts of searched files, by page or lines
        self.sources.setObjectName("figures")
        self.sources.setFont(font)
        self.sources.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.sources.setAccessibleName("Sources")
        self.sources.hide()
        layout.addWidget(self.note)
        layout.addWidget(self.sources)
        layout.addWidget(self.figures)

    def _make_actions(self, layout: QVBoxLayout, role: str) -> None:
        """Its actions: copy, edit or retry (the user's), regenerate or continue (a reply), ‹ 2/3 › between
        versions."""
        row = QHBoxLayout()
        row.setSpacing(2)
        if role == "user":
            row.addStretch(1)  # the user's actions under the bubble's right edge, the reply's under its text
        self.copy_button = self._button(row, "Copy", "copy", "Copy this message", self.copy)
        if role == "user":
            self.edit_button = self._button(row, "Edit", "edit", "Edit this message and send it again",
                                            lambda: self.sig_edit_requested.emit(self.message_id))
            # a message left without a reply (a failure, a crash, a deleted reply) can be answered again
            self.retry_button = self._button(row, "Retry", "regenerate", "Write a reply to this message",
                                             lambda: self.sig_retry_requested.emit(self.message_id))
            self.retry_button.hide()
        else:
            self.regenerate_button = self._button(row, "Regenerate", "regenerate", "Write this reply again",
                                                  lambda: self.sig_regenerate_requested.emit(self.message_id))
            self.continue_button = self._button(
                row, "Continue", "send", "Write on from where the length limit cut this reply",
                lambda: self.sig_continue_requested.emit(self.message_id))
            self.continue_button.hide()
        # ‹ 2/3 ›: the other replies written in this one's place, or the other versions of an edited message
        self.previous_variant = self._button(row, "‹", "", "Show the previous version",
                                             lambda: self.sig_variant_requested.emit(self.message_id, -1))
        self.variant_label = QLabel(self)
        self.variant_label.setAccessibleName("Version")
        row.addWidget(self.variant_label)
        self.next_variant = self._button(row, "›", "", "Show the next version",
                                         lambda: self.sig_variant_requested.emit(self.message_id, +1))
        self.set_variants(1, 1)
        if role != "user":
            row.addStretch(1)
        layout.addLayout(row)

    def _button(self, row, label: str, icon_name: str, accessible: str, slot) -> QToolButton:
        b = QToolButton(self)
        b.setObjectName("message-action")
        b.setText(label)
        if icon_name:
            set_icon(b, icon_name)
        b.setIconSize(QSize(15, 15))
        b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        b.setAccessibleName(accessible)
        b.setToolTip(accessible)
        b.setFocusPolicy(Qt.FocusPolicy.StrongFocus)  # reachable with Tab
        b.clicked.connect(slot)
        row.addWidget(b)
        return b

    # -- tool rounds -----------------------------------------------------------------------------------------------

    def set_tools(self, rounds) -> None:
        """A stored reply's tool rounds, each call finished."""
        for r in rounds:
            if r.get("text"):
                self.add_round_text(r["text"])
            for call in r.get("calls", ()):
                self.add_call(call)

    def add_round_text(self, text: str) -> None:
        """What the model said before calling tools (plain text, as it came)."""
        label = QLabel(text, self)
        label.setWordWrap(True)
        label.setTextFormat(Qt.TextFormat.PlainText)
        label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.tools_area.addWidget(label)

    def add_call(self, call: dict) -> ToolCallCard:
        card = self.cards.get(call["id"])
        if card is None:
            card = self.cards[call["id"]] = ToolCallCard(call, self)
            self.tools_area.addWidget(card)
        else:
            card.set_state(call)
        return card

    def set_sources(self, question: str) -> None:
        """Show, under this reply, where the excerpts in `question` (the message it answers) come from."""
        text = sources_text(split_files(question)[0])
        self.sources.setText(text)
        self.sources.setToolTip("The parts of the searched files the model was given with the question")
        self.sources.setVisible(bool(text))

    def set_model(self, name: str) -> None:
        self.model_label.setText(name[:80])
        self.model_label.setToolTip(name[:200])
        self.model_label.setVisible(bool(name) and self.role == "assistant")

    def _type(self) -> None:
        self._typing_step = (self._typing_step + 1) % 3
        self.typing.setText("  ".join("●" if i <= self._typing_step else "○" for i in range(3)))

    def _show_typing(self) -> None:
        waiting = self.status == "streaming" and not self._text and not self._reasoning
        if waiting and not self._typing_clock.isActive():
            self._type()
            self._typing_clock.start()
        elif not waiting:
            self._typing_clock.stop()
        self.typing.setVisible(waiting)

    @property
    def text(self) -> str:
        return self._text

    @property
    def code_blocks(self) -> list[str]:
        return list(self._code_blocks)

    def append(self, text: str) -> None:
        self._text += text
        self._render()
        self._show_typing()

    @property
    def reasoning(self) -> str:
        return self._reasoning

    def set_reasoning(self, text: str) -> None:
        self._reasoning = ""
        self.append_reasoning(text)

    def append_reasoning(self, text: str) -> None:
        self._reasoning += text
        if not self._reasoning:
            return
        self.reasoning_toggle.show()
        self.reasoning_body.setPlainText(self._reasoning)
        self._label_reasoning()
        self._show_typing()

    def _label_reasoning(self) -> None:
        ms = (self._stats or {}).get("reasoning_ms") or 0
        if self.status == "streaming" and not self._text:
            label = "Thinking…"
        elif ms:
            label = f"Thought for {ms / 1000:.0f} s" if ms >= 1000 else f"Thought for {ms / 1000:.1f} s"
        else:
            label = "Thoughts"
        self.reasoning_toggle.setText(label)

    def _fold(self, open_: bool) -> None:
        self.reasoning_toggle.setArrowType(Qt.ArrowType.DownArrow if open_ else Qt.ArrowType.RightArrow)
        self.reasoning_body.setVisible(open_)

    def finish(self, status: str, stats: dict | None = None, error: str | None = None) -> None:
        self.status = status
        self._stats = stats
        if self._reasoning:
            self._label_reasoning()
        note = error or STATUS_NOTES.get(status, "")
        cut = not note and (stats or {}).get("finish") == "length"
        if cut:
            note = (f"Cut at the length limit ({stats.get('completion_tokens', 0)} tokens: Max tokens in Settings or "
                    "this chat's settings). Continue writes on.")
        if self.role != "user":
            self.continue_button.setVisible(cut)
        self.note.setText(note)
        self.note.setVisible(bool(note))
        set_role(self.note, "message-cut" if cut else "message-note")  # a cut reply is no failure: not in red
        self.figures.setText(figures_text(stats))
        self.figures.setToolTip(figures_details(stats))
        self.figures.setVisible(bool(stats))
        self.set_model((stats or {}).get("model") or self.model_label.text())
        self._show_typing()
        if self.role != "user":
            self._fold_if_long(self._text)  # finished: a long reply can be folded now

    def set_compact(self, compact: bool) -> None:
        """Icons only for the actions under the message (a narrow chat), or icons with their names."""
        style = Qt.ToolButtonStyle.ToolButtonIconOnly if compact else Qt.ToolButtonStyle.ToolButtonTextBesideIcon
        for button in self.findChildren(QToolButton, "message-action"):
            if button.property("lantern_icon"):
                button.setToolButtonStyle(style)

    def set_unanswered(self, why: str | None) -> None:
        """A user message with no reply after it says why (None: it has one, or one is being written)."""
        if self.role != "user":
            return
        self.note.setText(why or "")
        self.note.setVisible(bool(why))
        self.retry_button.setVisible(why is not None)

    def menu(self) -> QMenu:
        menu = QMenu(self)
        if selected := self.body.textCursor().selectedText().replace("\u2029", "\n"):
            menu.addAction("Copy the selection", lambda: QGuiApplication.clipboard().setText(selected))
        menu.addAction("Copy message", self.copy)
        if self.role == "assistant":
            branch = menu.addAction("Branch from here", lambda: self.sig_branch_requested.emit(self.message_id))
            branch.setToolTip("Your next message continues from this reply; the later turns stay on their branch")
            branch.setEnabled(self._variant_enabled)
        menu.addSeparator()
        delete = menu.addAction("Delete from here…", lambda: self.sig_delete_requested.emit(self.message_id))
        delete.setEnabled(self._variant_enabled)
        return menu

    def set_variants(self, index: int, count: int) -> None:
        """This message is version `index` of `count` (1-based); the arrows show only when there are others."""
        self._variant = (index, count)
        self.variant_label.setText(f"{index}/{count}")
        for w in (self.previous_variant, self.variant_label, self.next_variant):
            w.setVisible(count > 1)
        self.set_variants_enabled(True)

    def set_variants_enabled(self, enabled: bool) -> None:
        """Moving between branches (and cutting or deleting them) waits while a reply is being written."""
        self._variant_enabled = enabled
        index, count = self._variant
        self.previous_variant.setEnabled(enabled and index > 1)
        self.next_variant.setEnabled(enabled and index < count)

    def set_actions_enabled(self, enabled: bool) -> None:
        for name in ("edit_button", "regenerate_button"):
            if hasattr(self, name):
                getattr(self, name).setEnabled(enabled)

    def restyle(self) -> None:
        self._draw_avatar()
        self._render()

    def _draw_avatar(self) -> None:
        self.avatar.setPixmap(icon("user" if self.role == "user" else "lantern").pixmap(QSize(22, 22)))

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(self._text)
        self.copy_button.setText("Copied")  # said where the user looks, for a moment
        set_icon(self.copy_button, "check")
        QTimer.singleShot(1500, self.copy_button, self._copied)  # gone with the view

    def _copied(self) -> None:
        self.copy_button.setText("Copy")
        set_icon(self.copy_button, "copy")

    def _toggle_expanded(self) -> None:
        self._expanded = not self._expanded
        self._render()

    def _fold_if_long(self, shown: str) -> None:
        lines = shown.count("\n") + 1
        if self.role == "user":
            long = lines > FOLD_LINES or len(shown) > FOLD_CHARS
        else:  # a reply folds once it is written: folding text as it streams in would hide it
            long = self.status != "streaming" and lines > REPLY_FOLD_LINES
        self.body.collapsed_height = None if self._expanded or not long else \
            self.body.fontMetrics().lineSpacing() * FOLDED_LINES
        self.expand_button.setVisible(long)
        self.expand_button.setText("Show less" if self._expanded else f"Show all ({lines:,} lines)")
        self.expand_button.setAccessibleName("Fold this message" if self._expanded else "Show the whole message")
        self.body._fit()

    def _render(self) -> None:
        if self.role == "user":  # the user's own words, exactly as typed; attached files as a line each
            files, question = split_files(self._text)
            chips = "".join(self._image_line(digest, name) for digest, name in split_images(self._text)[0])
            self._files = files
            chips += "".join(f'<p><a href="lantern-file:{i}">{_file_line(f)}</a></p>' for i, f in enumerate(files))
            self.body.setHtml(f'{chips}<p style="white-space: pre-wrap">{html.escape(question)}</p>')
            self._fold_if_long(question)
            return
        markup, self._code_blocks = render_markdown(self._text, theme="dark" if is_dark() else "light")
        self.body.setHtml(markup)
        self._fold_if_long(self._text)

    # the chat page's image store (app/chat_images.ImageStore.get): a user message's images shown small
    image_source = None
    THUMBNAIL = 160

    def _image_line(self, digest: str, name: str) -> str:
        data = type(self).image_source(digest) if type(self).image_source is not None else None
        image = QImage.fromData(data) if data else QImage()
        line = f'<p style="color: gray">Image: {html.escape(name)}</p>'
        if image.isNull():
            return line
        small = image.scaled(self.THUMBNAIL, self.THUMBNAIL, Qt.AspectRatioMode.KeepAspectRatio,
                             Qt.TransformationMode.SmoothTransformation)
        url = QUrl(f"lantern-image:{digest}")
        self.body.document().addResource(QTextDocument.ResourceType.ImageResource, url, small)
        # its own line height: the text's airier 135% would pad the picture by a third of its height
        return f'{line}<p style="line-height: 100%"><a href="{url.toString()}"><img src="{url.toString()}" ' \
               f'width="{small.width()}" height="{small.height()}"></a></p>'

    def _link(self, url: QUrl) -> None:
        if url.scheme() == "copy-code":
            index = int(url.path() or url.toString().split(":", 1)[1])
            if 0 <= index < len(self._code_blocks):
                QGuiApplication.clipboard().setText(self._code_blocks[index])
        elif url.scheme() == "lantern-file":  # an attached file, shown as the model was given it
            index = int(url.path() or url.toString().split(":", 1)[1])
            if 0 <= index < len(self._files):
                self.viewer = FileViewer(self._files[index].name, self._files[index].text, self)
                self.viewer.show()
        elif url.scheme() == "lantern-image" and type(self).image_source is not None:
            digest = url.path() or url.toString().split(":", 1)[1]
            if data := type(self).image_source(digest):
                self.viewer = ImageViewer(digest, data, self)
                self.viewer.show()
        elif url.scheme() in ("http", "https"):
            QDesktopServices.openUrl(url)


def _file_line(f) -> str:
    if f.excerpts:
        shown, _, parts = f.excerpts.partition(" of ")
        return (f"Searched: {html.escape(f.name)} · {shown} excerpt{'s' if shown != '1' else ''} of {parts} "
                f"parts")
    return f'Attached: {html.escape(f.name)} · {f.lines:,} line{"s" if f.lines != 1 else ""}'


def sources_text(files) -> str:
    """Under a reply: the searched files' excerpts the model was given, by where they come from."""
    return "Sources: " + "; ".join(f"{f.name}: {', '.join(f.places)}" for f in files if f.excerpts and f.places) \
        if any(f.excerpts and f.places for f in files) else ""


def _when(created: float | None) -> str:
    """14:03 today, "Mon 14:03" this week, "3 Nov 14:03" before (the full date is on hover)."""
    if not created:
        return ""
    then, now = time.localtime(created), time.localtime()
    if then[:3] == now[:3]:
        return time.strftime("%H:%M", then)
    if 0 <= time.time() - created < 6 * 86400:
        return time.strftime("%a %H:%M", then)
    return time.strftime("%d %b %Y, %H:%M" if then.tm_year != now.tm_year else "%d %b, %H:%M", then).lstrip("0")
