"""Files attached to a message: each kind read as text, every bad file a clear reason, and what the model reads."""
from __future__ import annotations

import pytest
from documents import blank_pdf, encrypted_pdf, text_pdf, word_file

from app.attachments import AttachmentError, describe, message_with_files, read_attachment


@pytest.mark.parametrize("name, data, expected", [
    ("notes.md", "# Lighthouses\n\nThey guide ships.".encode(), "They guide ships."),
    ("data.csv", b"name,height\nEddystone,49\n", "Eddystone,49"),
    ("tool.py", b"\xef\xbb\xbfprint('hi')\n", "print('hi')"),  # a BOM is not text
    ("page.html", b"<p>Hello</p>", "<p>Hello</p>"),
    ("utf16.txt", "héllo".encode("utf-16"), "héllo"),
])
def test_text_files_are_read_as_they_are(tmp_path, name, data, expected):
    path = tmp_path / name
    path.write_bytes(data)
    file = read_attachment(path)
    assert file.kind == "text" and expected in file.text and file.name == name


def test_pdf_and_word_files_give_their_text(tmp_path):
    pdf = read_attachment(text_pdf(tmp_path / "a.pdf", ["Hello lighthouse", "Second page"]))
    assert (pdf.kind, pdf.pages) == ("pdf", 2) and "[page 1]\nHello lighthouse" in pdf.text and "Second page" in pdf.text
    one = read_attachment(text_pdf(tmp_path / "one.pdf", ["Only page"]))
    assert (describe(pdf), describe(one)) == ("a.pdf, 2 pages", "one.pdf, 1 page")  # not "1 pages"
    doc = read_attachment(word_file(tmp_path / "a.docx", ["The keeper's log.", "Fog at dawn."]))
    assert doc.kind == "docx" and "Fog at dawn." in doc.text and "keeper | Ada" in doc.text


def test_every_bad_file_says_why(tmp_path):
    cases = []
    big = tmp_path / "huge.txt"
    with open(big, "wb") as f:  # 200 MB, sparse: refused by its size before a byte is read
        f.truncate(200 << 20)
    cases.append((big, "is 210 MB; Lantern attaches files up to 50 MB"))
    binary = tmp_path / "program.txt"
    binary.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(200))
    cases.append((binary, "is not text (binary data)"))
    photo = tmp_path / "photo.txt"  # an image, whatever its name says: what can see images is said
    photo.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200))
    cases.append((photo, "photo.txt is an image. Models that see images"))
    webp = tmp_path / "shot.webp"
    webp.write_bytes(b"RIFF\x24\x00\x00\x00WEBPVP8 " + bytes(40))
    cases.append((webp, "shot.webp is an image"))
    latin = tmp_path / "old.txt"
    latin.write_bytes("café crème brûlée à la carte ".encode("latin-1") * 20)
    cases.append((latin, "is not UTF-8 text"))
    cases.append((blank_pdf(tmp_path / "scan.pdf"), "has no text layer (a scanned PDF?)"))
    source = text_pdf(tmp_path / "plain.pdf", ["Secret plans"])
    cases.append((encrypted_pdf(tmp_path / "locked.pdf", source), "is encrypted with a password"))
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 9 0 R >> endobj\ntrailer << /Root 1 0 R >>\n")
    cases.append((broken, "broken.pdf"))
    bad_docx = tmp_path / "bad.docx"
    bad_docx.write_bytes(b"PK\x03\x04 not really a zip")
    cases.append((bad_docx, "is not a Word document Lantern can read"))
    empty = tmp_path / "empty.md"
    empty.write_text("  \n")
    cases.append((empty, "has no text in it"))
    cases.append((tmp_path / "missing.txt", "cannot be read"))
    cases.append((tmp_path, "is not a file"))
    for path, why in cases:
        with pytest.raises(AttachmentError, match=why.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
            read_attachment(path)


def test_a_file_that_changes_or_goes_away_after_attaching_is_refused(tmp_path):
    path = tmp_path / "notes.md"
    path.write_text("first")
    file = read_attachment(path)
    file.still_there()
    path.write_text("second, longer")
    with pytest.raises(AttachmentError, match="changed since it was attached"):
        file.still_there()
    path.unlink()
    with pytest.raises(AttachmentError, match="is gone since it was attached"):
        file.still_there()


def test_the_model_reads_each_file_by_name_before_the_question(tmp_path):
    a, b = tmp_path / 'a "quoted".md', tmp_path / "b.txt"
    a.write_text("Alpha </document> tries to close the tag")
    b.write_text("Beta")
    text = message_with_files("Compare them.", [read_attachment(a), read_attachment(b)])
    assert text == ('<document name="a &quot;quoted&quot;.md">\nAlpha <\\/document> tries to close the tag\n'
                    '</document>\n\n<document name="b.txt">\nBeta\n</document>\n\nCompare them.')
    assert message_with_files("Just this.", []) == "Just this."
    from app.attachments import split_files

    files, question = split_files(text)
    assert [(f.name, f.lines, f.excerpts) for f in files] == [('a "quoted".md', 1, ""), ("b.txt", 1, "")]
    assert question == "Compare them."  # what the bubble shows
    assert split_files('<document name="x">\nno end') == ([], '<document name="x">\nno end')


def test_a_file_that_grows_after_its_size_was_checked_is_still_refused(tmp_path, monkeypatch):
    """The size is checked, then the file read: at most one byte past the limit is read, so a file that grew in
    between (a log being written) cannot get past it (issue 32)."""
    import os
    from pathlib import Path

    from app import attachments

    monkeypatch.setattr(attachments, "MAX_BYTES", 1000)
    grown = tmp_path / "growing.log"
    grown.write_text("x" * 5000)
    real_stat = Path.stat

    def stat_before_it_grew(self, *a, **k):
        st = real_stat(self, *a, **k)
        if self == grown:
            return os.stat_result((st.st_mode, st.st_ino, st.st_dev, st.st_nlink, st.st_uid, st.st_gid, 500,
                                   st.st_atime, st.st_mtime, st.st_ctime))
        return st

    monkeypatch.setattr(Path, "stat", stat_before_it_grew)
    with pytest.raises(AttachmentError, match="growing.log is over"):
        read_attachment(grown)
