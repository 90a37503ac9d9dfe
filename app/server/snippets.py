"""Ready-to-copy code that calls this endpoint: curl, Python (the openai package) and JavaScript (fetch), with the
model's id and the key filled in."""
from __future__ import annotations

import json
import socket

LANGUAGES = ("curl", "Python", "JavaScript")


def snippet(language: str, *, base_url: str, model: str, key: str | None) -> str:
    """A chat completion in `language` against `base_url` (".../v1") for `model`, streamed to the terminal."""
    ask = "Say hello in five words."
    if language == "curl":
        body = json.dumps({"model": model, "messages": [{"role": "user", "content": ask}]})
        auth = f" \\\n  -H {_sh('Authorization: Bearer ' + key)}" if key else ""
        return (f"curl {_sh(base_url + '/chat/completions')} \\\n  -H 'Content-Type: application/json'{auth} \\\n"
                f"  -d {_sh(body)}")
    if language == "Python":
        return ("from openai import OpenAI  # pip install openai\n\n"
                f"client = OpenAI(base_url={base_url!r}, api_key={key or 'unused'!r})\n"
                f"stream = client.chat.completions.create(\n    model={model!r},\n"
                f"    messages=[{{\"role\": \"user\", \"content\": {ask!r}}}],\n    stream=True,\n)\n"
                "for chunk in stream:\n"
                "    if chunk.choices and chunk.choices[0].delta.content:\n"
                "        print(chunk.choices[0].delta.content, end=\"\", flush=True)\nprint()\n")
    if language == "JavaScript":
        headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
        body = {"model": model, "messages": [{"role": "user", "content": ask}]}
        return (f"const response = await fetch({json.dumps(base_url + '/chat/completions')}, {{\n"
                f"  method: \"POST\",\n  headers: {json.dumps(headers)},\n  body: JSON.stringify({json.dumps(body)}),\n"
                "});\nconst reply = await response.json();\nconsole.log(reply.choices[0].message.content);\n")
    raise ValueError(f"no snippet for {language!r}")


def _sh(text: str) -> str:
    """`text` as one shell word."""
    return "'" + text.replace("'", "'\\''") + "'"


def lan_address() -> str | None:
    """This machine's address on the local network (the interface a packet out would use), or None when it has no
    network. Nothing is sent."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("10.255.255.255", 1))  # a UDP connect only picks the route
        address = s.getsockname()[0]
    except OSError:
        return None
    finally:
        s.close()
    return None if address.startswith("127.") or address == "0.0.0.0" else address
