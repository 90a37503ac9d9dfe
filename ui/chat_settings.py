"""One chat's own settings: a preset in one click, its system prompt and sampling, and "save as this model's
defaults". The values live in app.settings (ChatSettings, presets, model defaults); this is only the form."""
from __future__ import annotations

from pydantic import ValidationError
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QFrame, QLabel, QListWidget,
                               QListWidgetItem, QPlainTextEdit, QPushButton, QSpinBox, QVBoxLayout)

from app.settings import SEED_MAX, ChatSettings, Settings
from ui.stop_strings import StopStringsField

CUSTOM = "Custom"
DEFAULTS = "Defaults"  # the chat has no settings of its own: it follows the model's defaults and the global settings
# (field, label, kind, low, high, step)
FIELDS = (("temperature", "Temperature", float, 0.0, 2.0, 0.05), ("top_p", "Top p", float, 0.01, 1.0, 0.01),
          ("top_k", "Top k", int, 0, 1000, 1), ("min_p", "Min p", float, 0.0, 0.99, 0.01),
          ("max_tokens", "Longest reply (tokens)", int, 1, 1 << 20, 64), ("seed", "Seed", int, -1, SEED_MAX, 1))
FIELD_NAMES = {"stop": "Stop strings", "system_prompt": "System prompt", "seed": "Seed"}
RANDOM_SEED = -1  # the seed box's "random" (None: a new seed for every reply)


class ChatSettingsPanel(QFrame):
    """Shows the settings a chat runs with; a change becomes the chat's own (saved at once by the chat page)."""

    sig_changed = Signal(object)  # ChatSettings, or None: the chat follows the defaults again
    sig_save_for_model = Signal(object)  # ChatSettings: new chats with this model start from these
    sig_template_requested = Signal()  # edit the loaded model's chat template
    sig_draft_chosen = Signal(object)  # the model that drafts for the loaded one (a library name), or None
    sig_mtp_chosen = Signal(str)  # auto, on, off: whether the loaded model's MTP heads draft

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("chat-settings")
        self.setAccessibleName("This chat's settings")
        self._filling = False
        self.preset = QComboBox(self)
        self.preset.setAccessibleName("Preset")
        self.preset.setToolTip("A named set of system prompt and sampling, applied to this chat")
        self.preset.activated.connect(self._preset_chosen)
        self.system_prompt = QPlainTextEdit(self)
        self.system_prompt.setAccessibleName("This chat's system prompt")
        self.system_prompt.setFixedHeight(self.system_prompt.fontMetrics().lineSpacing() * 6 + 12)
        self._typing = QTimer(self, singleShot=True, interval=400)  # saved when the typing pauses
        self._typing.timeout.connect(self._changed)
        self.system_prompt.textChanged.connect(lambda: self._filling or self._typing.start())
        form = QFormLayout()
        self.overflow = QComboBox(self)
        self.overflow.setAccessibleName("At the context's limit")
        self.overflow.setToolTip("When the chat outgrows the model's context: leave out its oldest turns, or refuse "
                                 "the message (nothing is ever cut silently: the reply says what was left out)")
        self.overflow.addItem("Leave out the oldest turns", "drop_oldest")
        self.overflow.addItem("Refuse the message", "refuse")
        self.overflow.currentIndexChanged.connect(lambda _i: self._filling or self._changed())
        form.addRow("Preset", self.preset)
        form.addRow("System prompt", self.system_prompt)
        form.addRow("At the limit", self.overflow)
        self._add_sampling(form)
        self._add_thinking(form)
        self._add_tools(form)
        self.form = form
        self.set_thinking_controls(False, False)
        self._make_buttons()
        self.problem = QLabel(self, wordWrap=True)
        self.problem.setObjectName("message-note")
        self.problem.setAccessibleName("Why the chat's settings were not saved")
        self.problem.hide()
        title = QLabel("This chat's settings", self)
        title.setObjectName("speaker")
        layout = QVBoxLayout(self)
        layout.addWidget(title)
        layout.addLayout(form)
        layout.addWidget(self.problem)
        layout.addWidget(self.reset_button)
        layout.addWidget(self.save_button)
        model_title = QLabel("This model, in every chat", self)  # loaded with these: a change reloads it
        model_title.setObjectName("speaker")
        layout.addSpacing(8)
        layout.addWidget(model_title)
        layout.addWidget(self.template_button)
        drafting = self.drafting = QFormLayout()
        drafting.addRow("Draft with", self.draft)
        drafting.addRow("MTP heads", self.mtp)
        layout.addLayout(drafting)
        self.set_mtp(None, 0)
        layout.addStretch(1)
        self.setMinimumWidth(240)
        self.setMaximumWidth(360)

    def _add_sampling(self, form: QFormLayout) -> None:
        """The sampling fields (FIELDS) and the stop strings."""
        self.boxes = {}
        for name, label, kind, low, high, step in FIELDS:
            box = QDoubleSpinBox(self, decimals=2) if kind is float else QSpinBox(self)
            box.setRange(low, high)
            box.setSingleStep(step)
            box.setAccessibleName(label)
            box.valueChanged.connect(lambda _v: self._filling or self._changed())
            self.boxes[name] = box
            form.addRow(label, box)
        self.boxes["seed"].setSpecialValueText("random")
        self.boxes["seed"].setToolTip("The same seed, settings and chat give the same reply")
        self.stop = StopStringsField(parent=self)
        self.stop.setAccessibleName("Stop strings")
        self.stop.setToolTip("The reply ends before any of these, one a line (\\n for a line break)")
        self.stop.textChanged.connect(lambda: self._filling or self._typing.start())
        form.addRow("Stop strings", self.stop)

    def _add_thinking(self, form: QFormLayout) -> None:
        """For models that think (their template reads these): shown once such a model is loaded."""
        self.thinking = QCheckBox("Think before answering", self)
        self.thinking.setAccessibleName("Thinking")
        self.thinking.toggled.connect(lambda _v: self._filling or self._changed())
        self.effort = QComboBox(self)
        self.effort.setAccessibleName("Reasoning effort")
        self.effort.addItems(["low", "medium", "high"])
        self.effort.currentIndexChanged.connect(lambda _i: self._filling or self._changed())
        form.addRow("Thinking", self.thinking)
        form.addRow("Reasoning effort", self.effort)

    def _add_tools(self, form: QFormLayout) -> None:
        """The tools this chat offers the model (Tools page: what is on), and how many rounds of calls at most."""
        self.tools = QComboBox(self)
        self.tools.setAccessibleName("Tools on offer")
        self.tools.setToolTip("The tools the model may call in this chat; each call waits for your answer")
        for text, value in (("All that are on", "all"), ("None", "none"), ("Chosen ones", "chosen")):
            self.tools.addItem(text, value)
        self.tools.currentIndexChanged.connect(self._tools_mode)
        self.tool_list = QListWidget(self)
        self.tool_list.setAccessibleName("The tools chosen for this chat")
        self.tool_list.setMaximumHeight(120)
        self.tool_list.itemChanged.connect(lambda _i: self._filling or self._changed())
        self.tool_rounds = QSpinBox(self)
        self.tool_rounds.setRange(1, 50)
        self.tool_rounds.setAccessibleName("Tool rounds")
        self.tool_rounds.setToolTip("Rounds of tool calls in one reply at most; then the model stops")
        self.tool_rounds.valueChanged.connect(lambda _v: self._filling or self._changed())
        form.addRow("Tools", self.tools)
        form.addRow("", self.tool_list)
        form.addRow("Tool rounds", self.tool_rounds)
        self._tool_names: list[str] = []

    def set_tool_choices(self, names: list[str]) -> None:
        """The tools that can be chosen ("server/tool"): the ready servers' and Lantern's own that are on."""
        self._tool_names = list(names)

    def _tools_mode(self, _index: int) -> None:
        chosen = self.tools.currentData() == "chosen"
        self.form.setRowVisible(self.tool_list, chosen)
        if self._filling:
            return
        if chosen and not self._chosen_tools():  # choosing starts from every tool: uncheck what is not wanted
            self._filling = True
            for i in range(self.tool_list.count()):
                self.tool_list.item(i).setCheckState(Qt.CheckState.Checked)
            self._filling = False
        self._changed()

    def _fill_tools(self, chosen: list[str]) -> None:
        mode = "all" if "*" in chosen else "none" if not chosen else "chosen"
        self.tools.setCurrentIndex(self.tools.findData(mode))
        self.tool_list.clear()
        for name in dict.fromkeys([*self._tool_names, *(c for c in chosen if c != "*")]):
            item = QListWidgetItem(name, self.tool_list)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if name in chosen else Qt.CheckState.Unchecked)
        self.form.setRowVisible(self.tool_list, mode == "chosen")

    def _chosen_tools(self) -> list[str]:
        mode = self.tools.currentData()
        if mode != "chosen":
            return ["*"] if mode == "all" else []
        return [self.tool_list.item(i).text() for i in range(self.tool_list.count())
                if self.tool_list.item(i).checkState() == Qt.CheckState.Checked]

    def _make_buttons(self) -> None:
        """Back to the defaults, save them as the model's, and the model's chat template."""
        self.reset_button = QPushButton("Use the defaults", self)
        self.reset_button.setToolTip("Forget this chat's own settings: it follows the model's defaults and the "
                                     "global settings")
        self.reset_button.clicked.connect(lambda: self.sig_changed.emit(None))
        self.save_button = QPushButton("Save as this model's defaults", self)
        self.save_button.setToolTip("New chats with this model start from these settings")
        self.save_button.clicked.connect(lambda: (v := self.checked_values()) and self.sig_save_for_model.emit(v))
        self.template_button = QPushButton("Model's chat template…", self)
        self.template_button.setToolTip("Use another chat template for this model (a fixed or simpler one)")
        self.template_button.clicked.connect(self.sig_template_requested)
        self.draft = QComboBox(self)
        self.draft.setAccessibleName("Draft with")
        self.draft.setToolTip("A smaller model with the same vocabulary guesses a few tokens ahead and this model "
                              "checks them in one step: the same replies, sooner where the guesses are good (on a "
                              "GPU). Lantern stops drafting when it does not pay. For this model, in every chat.")
        self.draft.activated.connect(lambda _i: self.sig_draft_chosen.emit(self.draft.currentData()))
        self.mtp = QComboBox(self)
        self.mtp.setAccessibleName("MTP heads")
        self.mtp.setToolTip("Some models (Qwen3.5/3.6, GLM, DeepSeek, Nemotron 3...) carry heads trained to guess the "
                            "next few tokens: this model checks the guesses in one step. Auto: on where the model runs "
                            "on a GPU. For this model, in every chat.")
        for text, value in (("Auto", "auto"), ("On", "on"), ("Off", "off")):
            self.mtp.addItem(text, value)
        self.mtp.activated.connect(lambda _i: self.sig_mtp_chosen.emit(self.mtp.currentData()))
        self.set_draft_choices(None, [])

    def show_settings(self, settings: Settings, own: ChatSettings | None) -> None:
        """Fill the form with what the chat runs with (`settings`, already resolved) and its own preset's name."""
        self._filling = True
        try:
            self.preset.clear()
            self.preset.addItems([DEFAULTS, CUSTOM, *(p.name for p in settings.all_presets())])
            name = DEFAULTS if own is None else own.preset or CUSTOM
            self.preset.setCurrentText(name if self.preset.findText(name) >= 0 else CUSTOM)
            self._presets = {p.name: p for p in settings.all_presets()}
            self.system_prompt.setPlainText(settings.system_prompt)
            for name, box in self.boxes.items():
                value = getattr(settings, name)
                box.setValue(RANDOM_SEED if value is None else value)
            self.stop.set_strings(settings.stop)
            self.thinking.setChecked(settings.thinking)
            self.effort.setCurrentText(settings.reasoning_effort)
            self.overflow.setCurrentIndex(max(0, self.overflow.findData(settings.overflow)))
            self._fill_tools(list(settings.tools))
            self.tool_rounds.setValue(settings.tool_rounds)
            self.reset_button.setEnabled(own is not None)
        finally:
            self._filling = False

    def set_draft_choices(self, chosen: str | None, names: list[str]) -> None:
        """The library's models that can draft for the loaded model (same vocabulary, smaller), and the one chosen.
        A chosen one that is no longer compatible still shows, so that it can be changed."""
        self.draft.clear()
        self.draft.addItem("Nothing (no draft model)", None)
        for name in names:
            self.draft.addItem(name, name)
        if chosen is not None and chosen not in names:
            self.draft.addItem(f"{chosen} (not compatible, or gone)", chosen)
        self.draft.setCurrentIndex(max(0, self.draft.findData(chosen)))
        self.draft.setEnabled(bool(names) or chosen is not None)

    def set_mtp(self, chosen: str | None, heads: int) -> None:
        """The MTP choice for the loaded model; shown where it has heads (`heads`: how many blocks)."""
        self.mtp.setCurrentIndex(max(0, self.mtp.findData(chosen or "auto")))
        self.drafting.setRowVisible(self.mtp, heads > 0)

    def set_thinking_controls(self, switch: bool, effort: bool) -> None:
        """Show the thinking switch and the effort where the loaded model reads them."""
        self.form.setRowVisible(self.thinking, switch)
        self.form.setRowVisible(self.effort, effort)

    def flush(self) -> None:
        """Typing not yet saved is saved now, before the panel shows another chat (it belongs to this one)."""
        if self._typing.isActive():
            self._typing.stop()
            self._changed()

    def values(self) -> ChatSettings:
        preset = self.preset.currentText()
        values = {name: box.value() for name, box in self.boxes.items()}
        values["seed"] = None if values["seed"] == RANDOM_SEED else values["seed"]
        return ChatSettings(system_prompt=self.system_prompt.toPlainText(),
                            preset=None if preset in (CUSTOM, DEFAULTS) else preset,
                            overflow=self.overflow.currentData(), stop=self.stop.strings(),
                            thinking=self.thinking.isChecked(), reasoning_effort=self.effort.currentText(),
                            tools=self._chosen_tools(), tool_rounds=self.tool_rounds.value(), **values)

    def checked_values(self) -> ChatSettings | None:
        """The form's values, or None with the reason shown under the form (a stop string too long...)."""
        try:
            values = self.values()
        except ValidationError as e:
            first = e.errors()[0]
            where = FIELD_NAMES.get(str(first["loc"][0]), str(first["loc"][0])) if first.get("loc") else "A value"
            self.problem.setText(f"Not saved: {where}: {first['msg'].lower()}.")
            self.problem.show()
            return None
        self.problem.hide()
        return values

    def _changed(self) -> None:
        self._filling = True
        self.preset.setCurrentText(CUSTOM)  # a changed value is no longer the preset
        self._filling = False
        if (values := self.checked_values()) is not None:
            self.sig_changed.emit(values)

    def _preset_chosen(self, _index: int) -> None:
        if self.preset.currentText() == DEFAULTS:
            self.sig_changed.emit(None)  # as "Use the defaults"
            return
        preset = self._presets.get(self.preset.currentText())
        if preset is None:
            return
        self._filling = True
        try:
            if preset.system_prompt is not None:
                self.system_prompt.setPlainText(preset.system_prompt)
            for name, value in preset.overrides().items():
                if name in self.boxes and value is not None:
                    self.boxes[name].setValue(value)
        finally:
            self._filling = False
        if (values := self.checked_values()) is not None:
            self.sig_changed.emit(values)
