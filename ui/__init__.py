"""The Qt window (the desktop-app issue). The only package besides app/ that may import PySide6."""
