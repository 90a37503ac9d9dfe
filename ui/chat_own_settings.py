"""The chat page's part that deals with the open chat's own settings: what it runs with, the settings panel, the
context meter's count, and a new chat from a summary (a mixin of ui.chat_page.ChatPage, kept apart for size)."""
from __future__ import annotations

from pydantic import ValidationError

from app.attachments import message_with_files
from app.chat_images import with_images
from app.settings import ChatSettings, ModelDefaults, Settings
from basics.errors import LanternError
from engine.events import GenerationRequest
from ui.chat_summary import summary_prompt
from ui.tasks import run_task
from ui.template_dialog import TemplateDialog


class ChatSettingsMixin:
    def effective_settings(self) -> Settings:
        """What the open chat runs with: the global settings, the model's defaults, the chat's own."""
        base = self.settings()
        return base.for_chat(self.models.name or base.model, self.own)

    def _toggle_chat_settings(self, shown: bool) -> None:
        if shown:
            self._show_own_settings()
        self.chat_settings.setVisible(shown)
        sizes = self.splitter.sizes()
        if shown and sizes[2] < self.chat_settings.minimumWidth():  # the splitter opens it at its own width
            width = self.chat_settings.sizeHint().width()
            self.splitter.setSizes([sizes[0], max(200, sizes[1] - width), width])

    def _show_own_settings(self) -> None:
        settings = self.effective_settings()
        every = self.toolbox(settings.model_copy(update={"tools": ["*"]}))  # all that are on, to choose from
        self.chat_settings.set_tool_choices([f"{s}/{t}" for s, t in every.keys()])
        self.chat_settings.show_settings(settings, self.own)
        self.settings_button.setText("Chat settings •" if self.own is not None else "Chat settings")

    def count_context(self) -> None:
        """The context meter counts the chat plus what is typed, as the engine will read it (on its thread)."""
        settings = self.effective_settings()
        # the files that go whole; a searched file's excerpts are chosen at sending to fit the room left
        typed = message_with_files(self.input.toPlainText(), self.attachments.inline())
        if self.conversation_id is None and not typed and not self.models.worker:
            self.meter.request_count(None, None, dropping=True)
            return
        history = self._history() if self.conversation_id is not None else self._system_only(settings)
        images = self.attachments.images()  # those the model sees, counted as the engine will place them
        messages = history + ([{"role": "user", "content": with_images(typed, images)}]
                              if typed.strip() or images else [])
        tools = tuple(self.toolbox(settings).tools())  # the tool definitions take their room in the prompt too
        request = GenerationRequest(messages=messages, max_tokens=settings.max_tokens, tools=tools) \
            if messages else None
        self.meter.request_count(self.models.worker, request, dropping=settings.overflow == "drop_oldest")

    def summarize(self) -> None:
        if self.conversation_id is None or self.busy or self.summarizer.busy:
            return
        try:
            worker = self.models.worker or self.models.load(self.settings().model)
        except LanternError as e:
            self.show_notice(f"No summary: {e}")
            return
        self.show_notice("Summarizing this chat…")
        self._summarized = next((c.title for c in self.store.conversations() if c.id == self.conversation_id), "")
        self.summarizer.summarize(worker, self._history())

    def _start_from_summary(self, summary: str, dropped: int) -> None:
        base = self.effective_settings()
        own = (self.own or ChatSettings()).model_copy(update={"system_prompt": summary_prompt(base.system_prompt,
                                                                                               summary)})
        title = f"From: {self._summarized}"[:48]
        self.new_chat()
        self.conversation_id = self.store.create(title).id
        self.own = own
        self.store.set_chat_settings(self.conversation_id, own.model_dump(exclude_none=True))
        self.sidebar.refresh(self.conversation_id)
        self._show_own_settings()
        self.count_context()
        note = f" (the {dropped} oldest messages did not fit to be read)" if dropped else ""
        self.show_notice(f"This chat starts from a summary of “{self._summarized}”{note}; it is in this chat's "
                         "system prompt (Chat settings).")

    @staticmethod
    def _system_only(settings: Settings) -> list[dict]:
        system = settings.system_prompt.strip()
        return [{"role": "system", "content": system}] if system else []

    def _own_settings_changed(self, own: ChatSettings | None) -> None:
        self.own = own
        if self.conversation_id is not None:
            self.store.set_chat_settings(self.conversation_id, own.model_dump(exclude_none=True) if own else None)
        self._show_own_settings()
        self.count_context()

    def _save_for_model(self, values: ChatSettings) -> None:
        model = self.models.name or self.settings().model
        if self.save_model_defaults is not None:  # its context size and template stay as they were
            kept = self.settings().model_defaults.get(model) or ModelDefaults()
            self.save_model_defaults(model, kept.model_copy(update=values.model_dump(exclude={"preset"})))
            self.show_notice(f"New chats with {model} start from these settings.")

    def edit_template(self) -> None:
        """The loaded model's chat template, replaced for this model (kept in its defaults); reloaded to use it."""
        model = self.models.name or self.settings().model
        kept = self.settings().model_defaults.get(model) or ModelDefaults()
        own = None
        if (worker := self.models.worker) is not None:
            try:
                own = worker.call(lambda e: e.runtime.chat_template).result(timeout=30)
            except Exception:  # not loaded (yet): the editor starts empty
                own = None
        dialog = self.template_dialog = TemplateDialog(model, kept.chat_template, own, self)
        if not dialog.exec() or dialog.template == kept.chat_template or self.save_model_defaults is None:
            return
        self.save_model_defaults(model, kept.model_copy(update={"chat_template": dialog.template}))
        self.show_notice(f"{model} now uses {'its own chat template' if dialog.template is None else 'your chat template'}"
                         "; it is loaded again to use it.")
        if self.models.worker is not None and self.models.name == model:
            self.models.reload()

    def show_draft_choices(self, model: str) -> None:
        """Fill "Draft with" and "MTP heads" for `model` once the library's headers are read (off the GUI thread)."""
        kept = self.settings().model_defaults.get(model)
        chosen = kept.draft_model if kept else None
        self.chat_settings.set_draft_choices(chosen, [])
        self.chat_settings.set_mtp(kept.mtp if kept else None, 0)
        if self.draft_choices is None:
            return

        def show(found: tuple[list[str], int]) -> None:
            if (self.models.name or self.settings().model) == model:  # not a model replaced meanwhile
                names, heads = found
                self.chat_settings.set_draft_choices(chosen, names)
                self.chat_settings.set_mtp(kept.mtp if kept else None, heads)

        run_task(lambda: self.draft_choices(model), show, lambda _e: None)

    def choose_draft(self, draft: str | None) -> None:
        """The model that drafts for the loaded one, kept in its defaults; loaded again to use it."""
        self._reload_with(draft_model=draft)

    def choose_mtp(self, mtp: str) -> None:
        """Whether the loaded model's MTP heads draft, kept in its defaults; loaded again to use it."""
        self._reload_with(mtp=None if mtp == "auto" else mtp)

    def _reload_with(self, **change) -> None:
        model = self.models.name or self.settings().model
        kept = self.settings().model_defaults.get(model) or ModelDefaults()
        if all(getattr(kept, k) == v for k, v in change.items()) or self.save_model_defaults is None:
            return
        self.save_model_defaults(model, kept.model_copy(update=change))
        if "draft_model" in change:
            draft = change["draft_model"]
            self.show_notice(f"{model} now drafts with {draft}; it is loaded again to use it." if draft else
                             f"{model} no longer uses a draft model; it is loaded again.")
        else:
            self.show_notice(f"{model}'s MTP heads: {change['mtp'] or 'auto'}; it is loaded again to use them.")
        if self.models.worker is not None and self.models.name == model:
            self.models.reload()


def own_settings(saved: dict | None) -> ChatSettings | None:
    """A chat's saved settings, checked; damaged ones are left unused (the chat follows the defaults)."""
    try:
        return ChatSettings.model_validate(saved) if saved else None
    except (ValidationError, TypeError):
        return None
