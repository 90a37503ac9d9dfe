"""PNG icons from the SVG, in the sizes desktops look for: make_icons.py SVG OUT_DIR -> OUT_DIR/lantern-SIZE.png"""
import os
import sys
from pathlib import Path

SIZES = (16, 32, 48, 64, 128, 256, 512)


def main(svg: str, out: str) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    app = QGuiApplication([])  # noqa: F841 (QPainter needs one)
    renderer = QSvgRenderer(svg)
    if not renderer.isValid():
        raise SystemExit(f"{svg} is not a valid SVG")
    Path(out).mkdir(parents=True, exist_ok=True)
    for size in SIZES:
        image = QImage(size, size, QImage.Format.Format_ARGB32)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        renderer.render(painter)
        painter.end()
        if not image.save(str(Path(out) / f"lantern-{size}.png")):
            raise SystemExit(f"could not write lantern-{size}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
