"""Lantern's own tools: files inside one chosen folder and never outside it (paths, '..', absolute paths, links out),
the calculator (arithmetic only, nothing too large to compute), and the search of a chat's documents."""
from __future__ import annotations

import os
import time

import pytest

from app.tools.builtin import (BUILTINS, CALCULATOR, DOCUMENTS, FILES_LIST, FILES_READ, ToolRefused, calculate,
                               run_builtin)
from app.tools.calls import RESULT_CHARS, compile_schema


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "chosen"
    (root / "notes").mkdir(parents=True)
    (root / "notes" / "todo.txt").write_text("buy milk\ncall Ada\n")
    (root / "readme.md").write_text("# Hello")
    (root / "blob.bin").write_bytes(b"\x00\x01\x02" * 100)
    (root / "big.txt").write_text("y" * (RESULT_CHARS * 3))
    outside = tmp_path / "secret.txt"
    outside.write_text("the password")
    os.symlink(outside, root / "link-out.txt")
    os.symlink(tmp_path, root / "folder-out")
    os.symlink(root / "notes" / "todo.txt", root / "link-in.txt")
    return root


def _run(name, folder, **arguments):
    return run_builtin(name, arguments, folder=folder)


def test_every_builtin_schema_compiles():
    assert all(compile_schema(t.schema) == "" for t in BUILTINS)
    assert len({t.name for t in BUILTINS}) == len(BUILTINS)


def test_files_inside_the_chosen_folder_are_listed_and_read(folder):
    listing = _run(FILES_LIST.name, folder).text.splitlines()
    assert "notes/" in listing and "readme.md (7 bytes)" in listing and "link-in.txt (18 bytes)" in listing
    assert not any("link-out" in line or "folder-out" in line for line in listing)  # links out are not its files
    assert _run(FILES_LIST.name, folder, path="notes").text == "todo.txt (18 bytes)"
    assert _run(FILES_READ.name, folder, path="notes/todo.txt").text == "buy milk\ncall Ada\n"
    assert _run(FILES_READ.name, folder, path="link-in.txt").text.startswith("buy milk")  # a link inside: fine
    big = _run(FILES_READ.name, folder, path="big.txt")
    assert big.cut and "[cut: the tool answered" in big.text


@pytest.mark.parametrize("path", ["../secret.txt", "notes/../../secret.txt", "link-out.txt", "folder-out/secret.txt",
                                  "/etc/passwd", "~/.ssh/id_rsa", "notes/\x00"])
def test_no_path_outside_the_folder_is_read(folder, path):
    result = _run(FILES_READ.name, folder, path=path)
    assert result.is_error and "the password" not in result.text
    listed = _run(FILES_LIST.name, folder, path=path.rsplit("/", 1)[0] if "/" in path else path)
    assert "secret.txt" not in listed.text or listed.is_error


def test_binary_missing_and_unchosen_are_refused_in_words(folder):
    assert "binary file" in _run(FILES_READ.name, folder, path="blob.bin").text
    assert "not a file" in _run(FILES_READ.name, folder, path="nope.txt").text
    assert "not a folder" in _run(FILES_LIST.name, folder, path="readme.md").text
    unchosen = run_builtin(FILES_READ.name, {"path": "readme.md"}, folder=None)
    assert unchosen.is_error and "No folder is chosen" in unchosen.text


def test_the_calculator_computes_arithmetic_only():
    assert calculate("2 + 3 * 4") == "14" and calculate("(2 + 3) * 4") == "20"
    assert calculate("2^10") == "1024" and calculate("7 // 2") == "3" and calculate("-7 % 3") == "2"
    assert calculate("sqrt(16) + abs(-2)") == "6" and calculate("round(pi, 3)") == "3.142"
    assert float(calculate("1/3")) == pytest.approx(0.3333333)
    for bad, words in (("__import__('os').system('id')", "Only numbers"), ("(1).__class__", "Only numbers"),
                       ("open('x')", "Only numbers"), ("1/0", "Division by zero"), ("2 +", "cannot be computed"),
                       ("sqrt(-1)", "cannot be computed"), ("True + 1", "Only numbers"), ("'a' * 3", "Only numbers")):
        with pytest.raises(ToolRefused, match=words):
            calculate(bad)
    t0 = time.monotonic()
    for huge in ("9**9**9", "10**1000", "(10**200) * (10**200)", "2**5000"):
        with pytest.raises(ToolRefused, match="too large"):
            calculate(huge)
    assert time.monotonic() - t0 < 5  # refused before computing, not after
    result = run_builtin(CALCULATOR.name, {"expression": "6*7"})
    assert (result.text, result.is_error) == ("42", False)


def test_the_documents_tool_answers_through_the_chats_search():
    asked = []
    result = run_builtin(DOCUMENTS.name, {"question": "what is due?"}, search=lambda q: asked.append(q) or "p. 3")
    assert (result.text, asked) == ("p. 3", ["what is due?"])
    none = run_builtin(DOCUMENTS.name, {"question": "x"})
    assert none.is_error and "no attached documents" in none.text
