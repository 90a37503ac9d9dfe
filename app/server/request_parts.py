"""The parts every request body is built of, after OpenAI's: strict models (unknown fields refused by name), messages,
tools, and the reply's JSON schema. The Chat Completions, Responses and Messages bodies are made of these."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from basics.errors import InvalidRequestError
from chat_format.tool_formats import json_rule
from engine.constraint import check_grammar


class UnsupportedField(InvalidRequestError):
    """A request field with a value Lantern cannot honour; `param` names it."""

    def __init__(self, param: str, message: str):
        super().__init__(message, param=param)


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


def find_invalid_text(value: Any, path: str = "") -> str | None:
    """The path of the first string holding a lone surrogate (JSON's "\ud800": not Unicode), or None."""
    stack = [(value, path)]
    while stack:
        v, where = stack.pop()
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return where or "body"
        elif isinstance(v, dict):
            for k, item in v.items():
                if find_invalid_text(k) is not None:
                    return f"{where}.{k!r}".lstrip(".")
                stack.append((item, f"{where}.{k}".lstrip(".")))
        elif isinstance(v, list):
            stack.extend((item, f"{where}[{i}]") for i, item in enumerate(v))
    return None


class RequestModel(StrictModel):
    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        where = find_invalid_text(data)
        if where is not None:
            raise InvalidText(where)
        return data


class InvalidText(ValueError):
    def __init__(self, param: str):
        super().__init__(f"{param} is not valid Unicode (a lone surrogate such as \\ud800).")
        self.param = param


class StreamOptions(StrictModel):
    include_usage: bool = False


class TextPart(StrictModel):
    type: Literal["text"]
    text: str


class FunctionCall(StrictModel):
    name: str
    arguments: str  # a JSON object's text


class ToolCallIn(StrictModel):
    id: str = Field(max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(StrictModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart | dict[str, Any]] | None = None  # other parts (images, audio) are refused by name
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None  # assistant
    tool_call_id: str | None = None  # tool
    reasoning_content: str | None = None  # assistant: its thinking, as llama.cpp's server and LM Studio name it
    refusal: str | None = None


class FunctionDef(StrictModel):
    name: str = Field(pattern=r"^[a-zA-Z0-9_.-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDef(StrictModel):
    type: Literal["function"]
    function: FunctionDef


class Prediction(StrictModel):
    type: Literal["content"]
    content: str | list[TextPart]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


def response_schema(response_format: dict | None) -> dict | None:
    """The JSON schema a reply must follow (None for free text); features llguidance cannot enforce are a 400."""
    if response_format is None or response_format == {"type": "text"}:
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        if set(response_format) != {"type"}:
            raise UnsupportedField("response_format", "json_object takes no other fields")
        return {"type": "object"}
    if kind != "json_schema":
        raise UnsupportedField("response_format.type", f"{kind!r} is not one of 'text', 'json_object', 'json_schema'")
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise UnsupportedField("response_format.json_schema", "json_schema needs a name and a schema")
    extra = set(spec) - {"name", "schema", "strict", "description"}
    if extra:
        raise UnsupportedField("response_format.json_schema", f"unknown field {sorted(extra)[0]!r}")
    schema = spec.get("schema", {})
    if not isinstance(schema, dict):
        raise UnsupportedField("response_format.json_schema.schema", "the schema must be a JSON object")
    try:
        check_grammar("start: " + json_rule(schema), param="response_format.json_schema.schema")
    except InvalidRequestError as e:
        raise UnsupportedField("response_format.json_schema.schema", str(e)) from None
    return schema
