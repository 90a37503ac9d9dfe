"""Files attached to a message: read as text (plain text, Markdown, source code, CSV, JSON, HTML; PDF's text layer with
pypdf; DOCX with python-docx), and written into the message so the model can tell each file from the question. Qt-free.

A file is hostile until read: its size is checked first, binary content renamed .txt is refused, an encrypted or
scanned PDF says so, and a file that changed or went away after it was attached is refused at sending, never sent half.
"""
from __future__ import annotations

import html
import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from basics.errors import LanternError

MAX_BYTES = 50_000_000  # a 300-page PDF is a few MB; larger files are refused, not read
MAX_CHARS = 4_000_000  # the text Lantern keeps from one file (a model's context is far smaller still)
TEXT_SUFFIXES = {
    ".txt", ".md", ".markdown", ".rst", ".csv", ".tsv", ".json", ".jsonl", ".yaml", ".yml", ".toml", ".ini", ".cfg",
    ".xml", ".html", ".htm", ".log", ".py", ".js", ".ts", ".tsx", ".jsx", ".c", ".h", ".cc", ".cpp", ".hpp", ".rs",
    ".go", ".java", ".kt", ".swift", ".rb", ".php", ".cs", ".sh", ".bash", ".sql", ".css", ".scss", ".lua", ".r",
    ".m", ".tex", ".diff", ".patch", ".env", ".dockerfile", ".mk", ".cmake", ".gradle", ".vue", ".svelte", ".ipynb",
}


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".heic"}
_IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")
# Said wherever an image is given: what can see, and why it cannot be sent here.
VISION_HELP = ("Models that see images (Gemma 3 4B and larger, SmolVLM, LLaVA) need their projector file "
               "(mmproj-….gguf) beside the model: Lantern finds it there, and a pull from the Hub brings it along. "
               "Pick such a model, or describe the image in words.")


class AttachmentError(LanternError):
    """A file that cannot be attached, with the reason in the user's words."""


def is_image(data: bytes, suffix: str = "") -> bool:
    return data.startswith(_IMAGE_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP") or \
        data[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1") or (suffix in IMAGE_SUFFIXES and not data.isascii())


@dataclass(frozen=True)
class Attachment:
    name: str  # the file's name, for the chip and the model
    path: Path
    text: str
    kind: str  # "text", "pdf", "docx"
    size: int
    mtime_ns: int
    pages: int = 0

    def still_there(self) -> None:
        """Raise AttachmentError if the file went away or changed since it was read (checked when sending)."""
        try:
            st = self.path.stat()
        except OSError:
            raise AttachmentError(f"{self.name} is gone since it was attached; attach it again.") from None
        if (st.st_size, st.st_mtime_ns) != (self.size, self.mtime_ns):
            raise AttachmentError(f"{self.name} changed since it was attached; attach it again.")


def read_limited(path: Path, limit: int, *, verb: str):
    """(bytes, stat) of a file of at most `limit` bytes; AttachmentError says why not (not a file, too large, gone,
    unreadable). `verb`: what Lantern does with such files, for the message ("attaches files")."""
    name = path.name
    try:
        st = path.stat()
        if not path.is_file():
            raise AttachmentError(f"{name} is not a file.")
        if st.st_size > limit:
            raise AttachmentError(f"{name} is {st.st_size / 1e6:,.0f} MB; Lantern {verb} up to {limit / 1e6:.0f} MB.")
        with path.open("rb") as f:
            data = f.read(limit + 1)  # at most one byte past the limit: a file that grew since stat is caught
        if len(data) > limit:
            raise AttachmentError(f"{name} is over {limit / 1e6:.0f} MB; Lantern {verb} up to {limit / 1e6:.0f} MB.")
    except AttachmentError:
        raise
    except OSError as e:
        raise AttachmentError(f"{name} cannot be read: {e.strerror or e}.") from None
    return data, st


def read_attachment(path: Path) -> Attachment:
    """Read `path` as text; AttachmentError says why it cannot be."""
    path = Path(path)
    name = path.name
    data, st = read_limited(path, MAX_BYTES, verb="attaches files")
    suffix = path.suffix.lower()
    if is_image(data[:64], suffix):
        raise AttachmentError(f"{name} is an image. {VISION_HELP}")
    pages = 0
    if data[:5] == b"%PDF-" or suffix == ".pdf":
        kind, (text, pages) = "pdf", _pdf_text(data, name)
    elif data[:2] == b"PK" and suffix == ".docx":
        kind, text = "docx", _docx_text(data, name)
    else:
        kind, text = "text", _plain_text(data, name)
    if not text.strip():
        raise AttachmentError(f"{name} has no text in it." if kind != "pdf" else
                              f"{name} has no text layer (a scanned PDF?); Lantern cannot read text from images yet.")
    if len(text) > MAX_CHARS:
        raise AttachmentError(f"{name} holds {len(text):,} characters; Lantern attaches up to {MAX_CHARS:,}.")
    return Attachment(name, path, text, kind, st.st_size, st.st_mtime_ns, pages)


def _plain_text(data: bytes, name: str) -> str:
    if b"\x00" in data[:65536]:  # UTF-16 files start with a BOM; anything else with NULs is binary
        if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
            try:
                return data.decode("utf-16")
            except UnicodeDecodeError:
                pass
        raise AttachmentError(f"{name} is not text (binary data); attach text, Markdown, code, CSV, JSON, HTML, PDF "
                              "or DOCX files.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        if text.count("\ufffd") > max(8, len(text) // 100):
            raise AttachmentError(f"{name} is not UTF-8 text; save it as UTF-8 and attach it again.") from None
        return text


def _pdf_text(data: bytes, name: str) -> tuple[str, int]:
    # deferred: pypdf (~60 ms), only for an attached PDF
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:  # many "encrypted" PDFs only restrict printing: an empty password opens them
                if not reader.decrypt(""):
                    raise AttachmentError(f"{name} is encrypted with a password; Lantern cannot read it.")
            except AttachmentError:
                raise
            except Exception:
                raise AttachmentError(f"{name} is encrypted with a password; Lantern cannot read it.") from None
        pages = [page.extract_text() or "" for page in reader.pages]
    except AttachmentError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError, RecursionError, AttributeError) as e:
        raise AttachmentError(f"{name} is not a PDF Lantern can read: {str(e)[:120]}") from None
    return "\n\n".join(f"[page {i}]\n{text.strip()}" for i, text in enumerate(pages, 1) if text.strip()), len(pages)


def _docx_text(data: bytes, name: str) -> str:
    try:
        import docx

        document = docx.Document(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as e:
        raise AttachmentError(f"{name} is not a Word document Lantern can read: {str(e)[:120]}") from None
    except Exception as e:  # python-docx raises its own PackageNotFoundError and lxml's errors
        raise AttachmentError(f"{name} is not a Word document Lantern can read: {str(e)[:120]}") from None
    parts = [p.text for p in document.paragraphs]
    for table in document.tables:
        parts += [" | ".join(cell.text for cell in row.cells) for row in table.rows]
    return "\n".join(parts)


def message_with_files(question: str, files: list[Attachment], searched: list[tuple[str, int, list]] = ()) -> str:
    """The message the model reads: each file in a tag with its name, then the question (a file's own text can hold
    anything, so its closing tag is escaped inside it). `searched`: (name, parts, excerpts) of each file searched
    instead of sent whole: its excerpts, each headed by where it comes from."""
    blocks = []
    for f in files:
        blocks.append(f'<document name="{html.escape(f.name, quote=True)}">\n{_escaped(f.text)}\n</document>')
    for name, parts, excerpts in searched:
        if not excerpts:
            continue
        body = "\n\n".join(f"[{e.where}]\n{_escaped(e.text)}" for e in excerpts)
        blocks.append(f'<document name="{html.escape(name, quote=True)}" excerpts="{len(excerpts)} of {parts}">'
                      f'\n{body}\n</document>')
    return "\n\n".join([*blocks, question]) if blocks else question


def _escaped(text: str) -> str:
    return text.replace("</document>", "<\\/document>")


@dataclass(frozen=True)
class FileInMessage:
    name: str
    lines: int
    excerpts: str = ""  # "4 of 612": a searched file's excerpts, of its parts
    places: tuple[str, ...] = ()  # where the excerpts come from: "page 34", "lines 120–161"
    text: str = ""  # what the model was given of it (the whole text, or the excerpts), as sent


_IMAGE_TAG = re.compile(r'<image sha256="([0-9a-f]{64})" name="([^"\n]*)"/>\n')  # app/chat_images.py
_FILE = re.compile(r'<document name="([^"\n]*)"(?: excerpts="(\d+ of \d+)")?>\n(.*?)\n</document>\n\n', re.S)
_PLACE = re.compile(r"(?:^|\n\n)\[((?:page|pages|line|lines) [0-9–]+)\]\n")


def split_files(message: str) -> tuple[list[FileInMessage], str]:
    """The files a message carries (for the bubble, and a reply's sources) and the question after them (and after
    the message's images)."""
    files, at = [], split_images(message)[1]
    while m := _FILE.match(message, at):
        body = m.group(3)
        places = tuple(dict.fromkeys(_PLACE.findall(body))) if m.group(2) else ()
        files.append(FileInMessage(html.unescape(m.group(1)), body.rstrip("\n").count("\n") + 1, m.group(2) or "",
                                   places, body.replace("<\\/document>", "</document>")))
        at = m.end()
    return files, message[at:]


def split_images(message: str) -> tuple[list[tuple[str, str]], int]:
    """The images a stored message names first, as (sha256, name), and where the rest of it starts."""
    images, at = [], 0
    while m := _IMAGE_TAG.match(message, at):
        images.append((m.group(1), html.unescape(m.group(2))))
        at = m.end()
    return images, at


def describe(file: Attachment) -> str:
    """The chip's words: name, and pages for a PDF."""
    pages = f", {file.pages} page{'s' if file.pages != 1 else ''}" if file.pages else ""
    return f"{file.name}{pages}"
