"""Files too large for the context are searched instead of sent whole: split into overlapping parts, each part
embedded locally, the vectors kept in SQLite with sqlite-vec (and the words in an FTS5 index), and the parts that best
answer a question given to the model with where they came from. Qt-free.

The index lives beside the chats (documents.sqlite3). It is a cache: a damaged one is set aside and rebuilt from the
files as they are attached again. A file is indexed once per embedding model (keyed by its text's SHA-256), so
attaching it again, or in another chat, is instant.

Vectors and words are both searched and their rankings fused (reciprocal rank fusion): embeddings find parts that
say the same thing in other words, the word index finds names, numbers and rare terms that small embedding models
blur.
"""
from __future__ import annotations

import hashlib
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

import apsw
import numpy as np

from basics.errors import LanternError

PART_CHARS = 1200  # about 300 tokens: enough to hold an answer, small enough that several fit beside the question
OVERLAP_CHARS = 200  # a sentence cut at a part's end is whole at the next one's start
CANDIDATES = 24  # parts each ranking offers to the fusion, per file
RRF_K = 60  # reciprocal rank fusion's usual constant
SCHEMA = 1
KEEP_FILES = 500  # indexed files kept; the least recently used beyond that are dropped


class DocumentSearchError(LanternError):
    """A file cannot be searched, in the user's words."""


class Embeddings(Protocol):
    """Where vectors come from: an embedding model, or the loaded chat model's pooled hidden states."""
    key: str  # names the model (and its file's version): vectors of different models never mix

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...  # L2-normalized, one row per text


@dataclass(frozen=True)
class Part:
    index: int  # its place in the file, from 0
    where: str  # "page 34", "lines 120–161"
    text: str


@dataclass(frozen=True)
class Excerpt:
    file_id: int
    file: str  # the file's name
    part: int
    where: str
    text: str
    score: float


# -- splitting --------------------------------------------------------------------------------------

_PAGE = re.compile(r"\[page (\d+)\]")


def split_parts(text: str, *, kind: str = "text", size: int = PART_CHARS, overlap: int = OVERLAP_CHARS) -> list[Part]:
    """`text` in parts of about `size` characters, ending at a blank line where one is near, each overlapping the
    one before by about `overlap`. A PDF's parts say their page (its text marks pages as "[page N]" lines); other
    files' parts say their lines."""
    lines: list[tuple[int, int, str]] = []  # (page, line number, text): long lines cut at spaces into pieces
    page = 0
    for number, line in enumerate(text.split("\n"), 1):
        if kind == "pdf" and (m := _PAGE.fullmatch(line.strip())):
            page = int(m.group(1))
            continue
        while len(line) > size:
            cut = line.rfind(" ", size // 2, size)
            cut = cut + 1 if cut > 0 else size
            lines.append((page, number, line[:cut]))
            line = line[cut:]
        lines.append((page, number, line))
    parts: list[Part] = []
    start = 0
    while start < len(lines):
        end, chars = start, 0
        while end < len(lines) and (chars < size or end == start):
            chars += len(lines[end][2]) + 1
            end += 1
            if chars >= size * 0.6 and end < len(lines) and not lines[end][2].strip():
                break  # a paragraph ends near enough
        body = "\n".join(t for _p, _n, t in lines[start:end]).strip()
        if body:
            first, last = lines[start], lines[end - 1]
            if kind == "pdf":
                where = f"page {first[0]}" if first[0] == last[0] else f"pages {first[0]}–{last[0]}"
            else:
                where = f"line {first[1]}" if first[1] == last[1] else f"lines {first[1]}–{last[1]}"
            parts.append(Part(len(parts), where, body))
        if end >= len(lines):
            break
        back, kept = end, 0  # the next part starts with the last lines of this one
        while back > start + 1 and kept + len(lines[back - 1][2]) < overlap:
            back -= 1
            kept += len(lines[back][2]) + 1
        start = back
    return parts


# -- the index --------------------------------------------------------------------------------------

class DocumentIndex:
    """The parts and vectors of every file searched so far; safe to use from several threads (one at a time)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.RLock()
        self._db = self._open()

    def _open(self):
        try:
            import apsw
            import sqlite_vec
        except ImportError as e:  # a broken install: said on the chip, the rest of Lantern works
            raise DocumentSearchError(f"Searching large files needs the {e.name} package, which is missing.") \
                from None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for attempt in (1, 2):
            db = None
            try:
                db = apsw.Connection(str(self.path))
                db.set_busy_timeout(10_000)
                db.enable_load_extension(True)
                db.load_extension(sqlite_vec.loadable_path())
                db.enable_load_extension(False)
                self._create(db)
                return db
            except apsw.Error as e:
                if db is not None:
                    db.close()
                if attempt == 2 or not isinstance(e, (apsw.NotADBError, apsw.CorruptError, apsw.SchemaChangeError)):
                    raise DocumentSearchError(f"The document index ({self.path}) cannot be opened: {e}") from None
                # only a cache of files the user still has: set it aside (kept, not deleted) and start again
                self.path.replace(self.path.with_name(f"{self.path.name}.damaged-{int(time.time())}"))

    @staticmethod
    def _create(db) -> None:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA):
            raise apsw.SchemaChangeError(f"schema {version}")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("""
            CREATE TABLE IF NOT EXISTS files (id INTEGER PRIMARY KEY, digest TEXT NOT NULL, embedder TEXT NOT NULL,
                name TEXT NOT NULL, parts INTEGER NOT NULL, dims INTEGER NOT NULL, used REAL NOT NULL,
                UNIQUE (digest, embedder));
            CREATE TABLE IF NOT EXISTS parts (id INTEGER PRIMARY KEY, file INTEGER NOT NULL, ord INTEGER NOT NULL,
                place TEXT NOT NULL, body TEXT NOT NULL);
            CREATE INDEX IF NOT EXISTS parts_by_file ON parts (file, ord);
            CREATE VIRTUAL TABLE IF NOT EXISTS words USING fts5 (body, content='parts', content_rowid='id');
            CREATE TABLE IF NOT EXISTS chat_files (conversation INTEGER NOT NULL, file INTEGER NOT NULL,
                name TEXT NOT NULL, PRIMARY KEY (conversation, file));
        """)
        db.execute(f"PRAGMA user_version = {SCHEMA}")

    def _vectors(self, dims: int) -> str:
        """The vec0 table for vectors of `dims` dimensions (each model's width gets its own)."""
        table = f"vectors_{int(dims)}"
        self._db.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {table} USING vec0 (embedding float[{int(dims)}] "
                         "distance_metric=cosine, file integer partition key)")
        return table

    def _guarded(self, fn: Callable):
        with self._lock:
            try:
                return fn()
            except apsw.FullError:
                from files.safe_paths import disk_full_error
                raise disk_full_error(self.path.parent) from None
            except apsw.Error as e:
                raise DocumentSearchError(f"The document index failed: {e}") from None

    # -- adding -------------------------------------------------------------------------------------

    def add(self, name: str, text: str, embeddings: Embeddings, *, kind: str = "text",
            progress: Callable[[int, int], None] | None = None, batch: int = 32) -> int:
        """Index `text` (a file called `name`) and return its id; instant if it was indexed before with this model.
        `progress(done, total)` is called as parts are embedded."""
        digest = hashlib.sha256(f"{kind}\0{text}".encode("utf-8", "surrogatepass")).hexdigest()
        found = self._guarded(lambda: self._db.execute(
            "SELECT id FROM files WHERE digest = ? AND embedder = ?",
            (digest, embeddings.key)).fetchone())
        if found:
            self._guarded(lambda: self._db.execute("UPDATE files SET used = ? WHERE id = ?", (time.time(), found[0])))
            return found[0]
        parts = split_parts(text, kind=kind)
        if not parts:
            raise DocumentSearchError(f"{name} has no text to search.")
        vectors = []
        for start in range(0, len(parts), batch):  # embedded before anything is written: a failure leaves no half
            vectors.append(np.asarray(embeddings.embed([p.text for p in parts[start:start + batch]]),
                                      dtype=np.float32))
            if progress is not None:
                progress(min(start + batch, len(parts)), len(parts))
        matrix = np.concatenate(vectors)
        return self._guarded(lambda: self._write(name, digest, embeddings.key, parts, matrix))

    def _write(self, name: str, digest: str, embedder: str, parts: list[Part], matrix: np.ndarray) -> int:
        db = self._db
        table = self._vectors(matrix.shape[1])
        with db:  # one transaction: the file is there whole or not at all
            old = db.execute("SELECT id FROM files WHERE digest = ? AND embedder = ?", (digest, embedder)).fetchone()
            if old:
                self._drop(old[0])
            db.execute("INSERT INTO files (digest, embedder, name, parts, dims, used) "
                       "VALUES (?, ?, ?, ?, ?, ?)", (digest, embedder, name, len(parts), matrix.shape[1],
                                                         time.time()))
            file_id = db.last_insert_rowid()
            for part, vector in zip(parts, matrix):
                db.execute("INSERT INTO parts (file, ord, place, body) VALUES (?, ?, ?, ?)",
                           (file_id, part.index, part.where, part.text))
                row = db.last_insert_rowid()
                db.execute("INSERT INTO words (rowid, body) VALUES (?, ?)", (row, part.text))
                db.execute(f"INSERT INTO {table} (rowid, embedding, file) VALUES (?, ?, ?)",
                           (row, vector.astype(np.float32).tobytes(), file_id))
            self._prune()
        return file_id

    def _drop(self, file_id: int) -> None:
        db = self._db
        dims = db.execute("SELECT dims FROM files WHERE id = ?", (file_id,)).fetchone()
        rows = db.execute("SELECT id, body FROM parts WHERE file = ?", (file_id,)).fetchall()
        for row, body in rows:
            db.execute("INSERT INTO words (words, rowid, body) VALUES ('delete', ?, ?)", (row, body))
            if dims:
                db.execute(f"DELETE FROM {self._vectors(dims[0])} WHERE rowid = ?", (row,))
        db.execute("DELETE FROM parts WHERE file = ?", (file_id,))
        db.execute("DELETE FROM chat_files WHERE file = ?", (file_id,))
        db.execute("DELETE FROM files WHERE id = ?", (file_id,))

    def _prune(self) -> None:
        for (file_id,) in self._db.execute("SELECT id FROM files ORDER BY used DESC LIMIT -1 OFFSET ?",
                                           (KEEP_FILES,)).fetchall():
            self._drop(file_id)

    def parts(self, file_id: int) -> int:
        """How many parts file `file_id` was split into (0 when it is not in the index)."""
        row = self._guarded(lambda: self._db.execute("SELECT parts FROM files WHERE id = ?", (file_id,)).fetchone())
        return row[0] if row else 0

    # -- a chat's files ---------------------------------------------------------------------------------

    def keep_for_chat(self, conversation: int, file_id: int, name: str) -> None:
        """Search file `file_id` for every later message in this chat too."""
        self._guarded(lambda: self._db.execute(
            "INSERT OR REPLACE INTO chat_files (conversation, file, name) VALUES (?, ?, ?)",
            (conversation, file_id, name)))

    def chat_files(self, conversation: int) -> list[tuple[int, str]]:
        """(file id, name) of the files this chat searches, as they were added."""
        return self._guarded(lambda: [tuple(r) for r in self._db.execute(
            "SELECT c.file, c.name FROM chat_files c JOIN files f ON f.id = c.file WHERE c.conversation = ? "
            "ORDER BY c.rowid", (conversation,)).fetchall()])

    def forget_for_chat(self, conversation: int, file_id: int | None = None) -> None:
        """Stop searching one file (or every file) in this chat; the index keeps its parts for the next time."""
        if file_id is None:
            self._guarded(lambda: self._db.execute("DELETE FROM chat_files WHERE conversation = ?", (conversation,)))
        else:
            self._guarded(lambda: self._db.execute("DELETE FROM chat_files WHERE conversation = ? AND file = ?",
                                                   (conversation, file_id)))

    # -- searching --------------------------------------------------------------------------------------

    def search(self, file_ids: Sequence[int], question: str, embeddings: Embeddings,
               limit: int = CANDIDATES) -> list[Excerpt]:
        """The parts of these files that best answer `question`, best first (at most `limit` per ranking and
        file, fused)."""
        if not file_ids:
            return []
        vector = np.asarray(embeddings.embed([question]), dtype=np.float32)[0]
        return self._guarded(lambda: self._search(list(file_ids), question, vector, embeddings.key, limit))

    def _search(self, file_ids: list[int], question: str, vector: np.ndarray, embedder: str,
                limit: int) -> list[Excerpt]:
        db = self._db
        scores: dict[int, float] = {}
        for file_id in file_ids:
            row = db.execute("SELECT dims, embedder FROM files WHERE id = ?", (file_id,)).fetchone()
            if row is None:
                raise DocumentSearchError("A file of this chat is no longer in the document index; attach it again.")
            dims, made_by = row
            if made_by != embedder:
                raise DocumentSearchError("A file of this chat was indexed with another embedding model; attach it "
                                          "again to search it with this one.")
            if dims != vector.shape[0]:
                raise DocumentSearchError("The embedding model gives vectors of another size than the index holds.")
            hits = db.execute(f"SELECT rowid FROM {self._vectors(dims)} WHERE embedding MATCH ? AND k = ? "
                              "AND file = ? ORDER BY distance", (vector.tobytes(), limit, file_id)).fetchall()
            for rank, (row_id,) in enumerate(hits):
                scores[row_id] = scores.get(row_id, 0.0) + 1 / (RRF_K + rank)
        if terms := _match_terms(question):
            marks = ",".join("?" * len(file_ids))
            hits = db.execute(f"SELECT w.rowid FROM words w JOIN parts p ON p.id = w.rowid WHERE words MATCH ? "
                              f"AND p.file IN ({marks}) ORDER BY w.rank LIMIT ?",
                              (terms, *file_ids, limit * len(file_ids))).fetchall()
            for rank, (row_id,) in enumerate(hits):
                scores[row_id] = scores.get(row_id, 0.0) + 1 / (RRF_K + rank)
        best = sorted(scores, key=lambda r: -scores[r])
        out = []
        for row_id in best:
            file_id, ord_, place, body, name = db.execute(
                "SELECT p.file, p.ord, p.place, p.body, f.name FROM parts p JOIN files f ON f.id = p.file "
                "WHERE p.id = ?", (row_id,)).fetchone()
            out.append(Excerpt(file_id, name, ord_, place, body, scores[row_id]))
        return out

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


_WORD = re.compile(r"\w{2,}", re.UNICODE)
_COMMON = {"the", "and", "for", "are", "but", "not", "you", "all", "any", "can", "was", "what", "when", "where",
           "which", "who", "why", "how", "does", "did", "this", "that", "with", "from", "about", "into", "its", "is",
           "in", "of", "to", "on", "it", "be", "as", "at", "by", "or", "an", "do", "me", "my", "we", "say", "says",
           "tell", "file", "document", "please"}


def _match_terms(question: str) -> str:
    """The question's words as an FTS5 query: each quoted (a question can hold anything, FTS5 syntax included),
    any of them may match."""
    words = dict.fromkeys(w.lower() for w in _WORD.findall(question) if w.lower() not in _COMMON)
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in list(words)[:32])


def choose_excerpts(found: list[Excerpt], lengths: Sequence[int], budget: int) -> list[Excerpt]:
    """The best excerpts whose tokens (`lengths`, one per excerpt) fit in `budget`, then in each file's order (parts
    next to each other read as one text)."""
    chosen, used = [], 0
    for excerpt, tokens in zip(found, lengths):
        tokens += 8  # its heading
        if used + tokens <= budget:
            chosen.append(excerpt)
            used += tokens
    return sorted(chosen, key=lambda e: (e.file_id, e.part))
