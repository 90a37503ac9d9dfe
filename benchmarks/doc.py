"""Writing benchmark tables into docs/benchmarks.md, with the machine they ran on."""
from __future__ import annotations

import platform
from pathlib import Path

import llama_cpp
import psutil


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    ram = psutil.virtual_memory().total / 2 ** 30
    return (f"{cpu}, {psutil.cpu_count(logical=True)} cores, {ram:.0f} GiB RAM, {platform.system()}, "
            f"Python {platform.python_version()}, llama-cpp-python {llama_cpp.__version__}")


def write_section(doc: Path, name: str, body: str) -> None:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = doc.read_text() if doc.exists() else "# Benchmarks\n\nEach section is written by the script it names.\n\n"
    block = f"{start}\n{body}{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text)


def markdown_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
