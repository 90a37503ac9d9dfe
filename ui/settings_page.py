"""Settings: one form over app.settings.Settings, saved as soon as a value changes."""
from __future__ import annotations

import importlib.util
import platform
import sys

from pydantic import ValidationError
from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
                               QLineEdit, QPlainTextEdit, QPushButton, QScrollArea, QSpinBox, QVBoxLayout, QWidget)

from app.settings import SEED_MAX, SettingsFile
from models.fit import layers_fit
from ui.gpu_layers import AUTO_LAYERS, GpuLayersField
from ui.stop_strings import StopStringsField

# The page's groups: (title, [(setting, label, what it does)]), in the user's words
GROUPS = (
    ("Conversation", [
        ("system_prompt", "System prompt", "Instructions the model reads before every chat, such as a role or a "
         "style. Empty: the model's own default."),
        ("max_tokens", "Longest reply (tokens)", "A reply stops after this many tokens (about ¾ of a word each)."),
        ("stop", "Stop strings", "A reply ends before any of these, one a line (\\n for a line break). At most 8."),
        ("thinking", "Thinking", "Models that think before answering (Qwen3, gpt-oss...) do so; off answers at once "
         "where the model allows it."),
        ("reasoning_effort", "Reasoning effort", "How long models that take it (gpt-oss) think."),
    ]),
    ("Sampling", [
        ("temperature", "Temperature", "How adventurous the wording is: 0 always picks the likeliest word (the same "
         "reply every time), higher values vary more."),
        ("top_p", "Top p", "Only the likeliest words that together make up this share of the probability are "
         "considered. 1: all of them."),
        ("top_k", "Top k", "Only this many of the likeliest words are considered. 0: no limit."),
        ("min_p", "Min p", "Words less likely than this fraction of the likeliest word's probability are skipped."),
        ("repeat_penalty", "Repetition penalty", "Above 1, words already used become less likely (fewer loops; "
         "too high garbles code)."),
        ("seed", "Seed", "The same seed, settings and chat give the same reply. Random: a new one each reply."),
    ]),
    ("Model and speed", [
        ("n_ctx", "Context size (tokens)", "How much of the conversation the model keeps in view. More costs "
         "memory; the oldest turns are left out when a chat grows past it."),
        ("n_gpu_layers", "GPU layers", "How many of the model's layers run on the GPU. \"As many as fit\" lets "
         "Lantern measure the free memory."),
        ("threads", "CPU threads", "Threads llama.cpp computes with. Automatic: as many as the cores that are not "
         "busy."),
        ("batch_size", "Batch size (tokens)", "Prompt tokens read per step: more reads long prompts faster and "
         "takes more memory."),
        ("kv_cache_type", "KV cache type", "What the model's memory of the conversation is stored in (llama.cpp): "
         "q8_0 takes about half of f16's memory, q4_0 about a quarter, for a longer context or a bigger model; "
         "both turn flash attention on. MLX models need f16."),
        ("flash_attn", "Flash attention", "auto: off on the CPU (slower there on long chats), llama.cpp's choice "
         "on a GPU."),
        ("prompt_lookup", "Prompt lookup", "Guesses the next words from text already in the conversation and "
         "checks them in one pass: quoted or edited text arrives several words a step, with the same reply."),
        ("draft_max", "Longest guess (tokens)", "The most words prompt lookup guesses at once."),
        ("backend", "Backend", "What runs the model: auto picks llama.cpp or MLX for this machine; remote uses "
         "another Lantern or OpenAI-compatible server."),
        ("remote_url", "Remote server", "The address of the server the remote backend uses, such as "
         "http://gpu-box:8000/v1."),
        ("remote_key", "Remote server key", "The API key the remote server asks for (vLLM's and llama.cpp's "
         "--api-key), if any; kept in this computer's settings file."),
        ("helpers", "Helper machines", "Other computers that hold a share of a model too big for this one: run "
         "`lantern worker` on each and write the addresses it prints here, separated by commas (such as "
         "192.168.1.20:50052). A model that fits here alone runs here alone; the Models page says which fit "
         "with them."),
    ]),
    ("Appearance", [
        ("theme", "Theme", "Light, dark, or whatever the system uses."),
    ]),
)
LOAD_FIELDS = ("n_ctx", "n_gpu_layers", "kv_cache_type", "flash_attn", "threads", "batch_size", "backend",
               "remote_url", "remote_key", "prompt_lookup", "draft_max", "helpers")
FIELD_WIDTH = 320  # every field starts at one column and is at least this wide (they lined up nowhere before)


class SettingsPage(QWidget):
    sig_settings_changed = Signal(object)  # the new Settings
    sig_reload_requested = Signal()

    def __init__(self, file: SettingsFile, parent=None):
        super().__init__(parent)
        self.file = file
        settings = file.current
        self.widgets = self._make_fields(settings)
        self.widgets["prompt_lookup"].setChecked(settings.prompt_lookup)
        self.widgets["thinking"].setChecked(settings.thinking)
        self._hardware = self._model = None
        self.forms: dict[str, QFormLayout] = {}  # each field's group
        groups = self._make_groups()
        # what each helper machine answered, once the Models page has asked them (set_hardware)
        self.helpers_status = QLabel(wordWrap=True, objectName="hint")
        self.helpers_status.setAccessibleName("Helper machines' state")
        self.forms["helpers"].addRow("", self.helpers_status)
        for key in ("n_ctx", "kv_cache_type"):  # what the GPU layers take follows these
            _on_change(self.widgets[key], self._show_layers_fit)
        # Fields that matter only sometimes are shown only then: the server address with the remote backend, GPU
        # layers once a GPU is found (set_hardware)
        self.widgets["backend"].currentTextChanged.connect(self._show_relevant)
        self._gpu = settings.n_gpu_layers is not None  # a value the user set stays in sight
        self._show_relevant()
        self.message = QLabel(wordWrap=True)
        self.message.setAccessibleName("Settings message")
        self.reload_button = QPushButton("Reload the model with these settings")
        self.reload_button.setAccessibleName("Reload the model")
        self.reload_button.clicked.connect(self.sig_reload_requested)
        self.reload_button.hide()
        self._lay_out(groups)
        self._save_soon = QTimer(self, singleShot=True, interval=300)
        self._save_soon.timeout.connect(self.save)

    def _make_fields(self, settings) -> dict[str, QWidget]:
        """One field for each setting, holding its saved value."""
        self.system_prompt = QPlainTextEdit(settings.system_prompt)
        lines = self.system_prompt.fontMetrics().lineSpacing()
        self.system_prompt.setMinimumHeight(3 * lines + 12)  # never a single clipped line in a small window
        self.system_prompt.setMaximumHeight(6 * lines + 12)
        self.system_prompt.setMinimumWidth(320)
        self.remote_url = QLineEdit(settings.remote_url or "", placeholderText="http://gpu-box:8000/v1")
        self.remote_url.setMinimumWidth(320)
        self.remote_key = QLineEdit(settings.remote_key or "", echoMode=QLineEdit.EchoMode.Password)
        self.helpers = QLineEdit(", ".join(settings.helpers), placeholderText="192.168.1.20:50052, desk.lan:50052")
        return {
            "system_prompt": self.system_prompt,
            "temperature": _double(0, 2, 0.05, settings.temperature),
            "top_p": _double(0.01, 1, 0.01, settings.top_p),
            "top_k": _int(0, 1000, settings.top_k),
            "min_p": _double(0, 0.99, 0.01, settings.min_p),
            "repeat_penalty": _double(0.5, 10, 0.05, settings.repeat_penalty),
            "max_tokens": _int(1, 1 << 20, settings.max_tokens),
            "n_ctx": _int(0, 1 << 20, settings.n_ctx, special="the model's own (up to 8192)"),
            "n_gpu_layers": GpuLayersField(settings.n_gpu_layers),
            "threads": _int(0, 512, settings.threads or 0, special="automatic"),
            "batch_size": _int(1, 65536, settings.batch_size),
            "seed": _int(-1, SEED_MAX, -1 if settings.seed is None else settings.seed, special="random"),
            "stop": StopStringsField(settings.stop),
            "thinking": QCheckBox("think before answering"),
            "reasoning_effort": _combo(["low", "medium", "high"], settings.reasoning_effort),
            "kv_cache_type": _combo(["f16", "q8_0", "q4_0"], settings.kv_cache_type),
            "flash_attn": _combo(["auto", "on", "off"], settings.flash_attn),
            "prompt_lookup": QCheckBox("guess ahead from the conversation"),
            "draft_max": _int(1, 64, settings.draft_max),
            "backend": _combo(backends_here(settings.backend), settings.backend),
            "remote_url": self.remote_url,
            "remote_key": self.remote_key,
            "helpers": self.helpers,
            "theme": _combo(["system", "light", "dark"], settings.theme),
        }

    def _make_groups(self) -> QVBoxLayout:
        """The fields in their groups (GROUPS), each with its label and tooltip, the labels in one column."""
        groups = QVBoxLayout()
        for title, fields in GROUPS:
            box = QGroupBox(title)
            form = QFormLayout(box)
            form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.FieldsStayAtSizeHint)
            for key, label, tip in fields:
                widget = self.widgets[key]
                if not isinstance(widget, QCheckBox):
                    widget.setMinimumWidth(FIELD_WIDTH)
                widget.setAccessibleName(label)
                widget.setToolTip(tip)
                form.addRow(label, widget)
                form.labelForField(widget).setToolTip(tip)  # the label explains as well as the field
                _on_change(widget, self._changed)
                self.forms[key] = form
            groups.addWidget(box)
        labels = [f.labelForField(w) for k, w in self.widgets.items() if (f := self.forms.get(k))]
        width = max(label.sizeHint().width() for label in labels)
        for label in labels:  # one label column across the groups, so the fields line up
            label.setMinimumWidth(width)
        return groups

    def _lay_out(self, groups: QVBoxLayout) -> None:
        """The groups in a page that scrolls, under a bar for "Saved." and Reload (in sight whatever changed)."""
        inner = QWidget()
        inner.setObjectName("page")
        layout = QVBoxLayout(inner)
        layout.addLayout(groups)
        layout.addStretch(1)
        scroll = QScrollArea(self)  # below the form's height the page scrolls rather than squeezing its fields
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setWidget(inner)
        page = QVBoxLayout(self)
        bar = QHBoxLayout()  # above the form, so "Saved." and Reload are in sight whatever was changed
        bar.addWidget(self.message, 1)
        bar.addWidget(self.reload_button)
        page.addLayout(bar)
        page.addWidget(scroll, 1)

    def set_hardware(self, hardware) -> None:
        """What the machine has: GPU layers are a setting only where there is a GPU to put layers on; and what each
        helper machine answered."""
        self._gpu = self._gpu or bool(hardware.nvidia) or hardware.apple_silicon
        self._hardware = hardware
        lines = [f"{h.endpoint}: {h.free_bytes / 2 ** 30:.1f} GiB free on {len(h.devices)} device"
                 + "s" * (len(h.devices) > 1) for h in hardware.helpers]
        lines += [note for note in hardware.notes if note.startswith("Helper ")]  # the ones that cannot be used
        self.helpers_status.setText("\n".join(lines))
        self.helpers_status.setVisible(bool(lines))
        self._show_relevant()
        self._show_layers_fit()

    def set_model(self, info) -> None:
        """The chosen model's ModelInfo (None: not known): the GPU layers slider counts its layers."""
        self._model = info
        self._show_layers_fit()

    def _show_layers_fit(self, *_) -> None:
        field, hw, info = self.widgets["n_gpu_layers"], self._hardware, self._model
        if hw is None or info is None or not info.n_layers:
            field.set_model(0, None)
            return

        n_ctx, kv = self.widgets["n_ctx"].value(), self.widgets["kv_cache_type"].currentText()
        field.set_model(info.n_layers, lambda n: layers_fit(hw, info, n, n_ctx=n_ctx, kv_type=kv))

    def shown(self, key: str) -> bool:
        return self.forms[key].isRowVisible(self.widgets[key])

    def _show_relevant(self, *_) -> None:
        remote = self.widgets["backend"].currentText() == "remote"
        self.forms["remote_url"].setRowVisible(self.widgets["remote_url"], remote)
        self.forms["remote_key"].setRowVisible(self.widgets["remote_key"], remote)
        self.forms["n_gpu_layers"].setRowVisible(self.widgets["n_gpu_layers"], self._gpu)

    def values(self) -> dict:
        v = {}
        for key, w in self.widgets.items():
            if isinstance(w, StopStringsField):
                v[key] = w.strings()
            elif isinstance(w, QPlainTextEdit):
                v[key] = w.toPlainText()
            elif isinstance(w, QCheckBox):
                v[key] = w.isChecked()
            elif isinstance(w, QComboBox):
                v[key] = w.currentText()
            elif isinstance(w, QLineEdit):
                v[key] = w.text().strip() or None
            else:
                v[key] = w.value()
        v["helpers"] = [part.strip() for part in (v["helpers"] or "").split(",") if part.strip()]
        v["n_gpu_layers"] = None if v["n_gpu_layers"] == AUTO_LAYERS else v["n_gpu_layers"]
        v["threads"] = v["threads"] or None
        v["seed"] = None if v["seed"] < 0 else v["seed"]
        return v

    def _changed(self, *_) -> None:
        self._save_soon.start()

    def save(self) -> bool:
        """Validate and save now; a bad value is reported and nothing is saved."""
        self._save_soon.stop()
        old = self.file.current
        values = self.values()
        url = values.get("remote_url") or ""
        if values.get("kv_cache_type") != "f16" and values.get("flash_attn") == "off":
            self.message.setText(f"Not saved: a {values['kv_cache_type']} KV cache needs flash attention (auto or "
                                 "on), or choose f16.")
            return False
        if values.get("backend") == "remote" and not url.startswith(("http://", "https://")):
            self.message.setText("Not saved: the remote backend needs its server's address, such as "
                                 "http://gpu-box:8000/v1 (Remote server).")
            return False
        try:
            new = self.file.update(**values)
        except ValidationError as e:
            first = e.errors()[0]
            said = first["msg"].removeprefix("Value error, ").rstrip(".")
            self.message.setText(f"Not saved: {'.'.join(map(str, first['loc']))}: {said}.")
            return False
        except OSError as e:
            self.message.setText(f"Not saved: {e}")
            return False
        reload = any(getattr(new, f) != getattr(old, f) for f in LOAD_FIELDS)
        self.message.setText("Saved.")
        if reload:
            self.reload_button.show()
        self.sig_settings_changed.emit(new)
        return True


def backends_here(chosen: str) -> list[str]:
    """The backends this machine can run: MLX on Apple silicon, or where it is installed (Linux's CPU wheel)."""
    mlx = (sys.platform == "darwin" and platform.machine() == "arm64") or importlib.util.find_spec("mlx") is not None
    return ["auto", "llamacpp", *(["mlx"] if mlx or chosen == "mlx" else []), "remote"]


def _double(lo: float, hi: float, step: float, value: float) -> QDoubleSpinBox:
    w = QDoubleSpinBox()
    w.setRange(lo, hi)
    w.setSingleStep(step)
    w.setDecimals(2)
    w.setValue(value)
    return w


def _int(lo: int, hi: int, value: int, *, special: str = "") -> QSpinBox:
    w = QSpinBox()
    w.setRange(lo, hi)
    w.setValue(value)
    if special:
        w.setSpecialValueText(special)  # shown at the minimum
    return w


def _combo(items: list[str], value: str) -> QComboBox:
    w = QComboBox()
    w.addItems(items)
    w.setCurrentText(value)
    return w


def _on_change(widget: QWidget, slot) -> None:
    for signal in ("textChanged", "valueChanged", "toggled", "currentTextChanged"):
        if hasattr(widget, signal):
            getattr(widget, signal).connect(slot)
            return
