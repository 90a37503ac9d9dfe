# A machine without Qt: PySide6, shiboken6 and pytest-qt are not found (find_spec gives None, import fails).
import sys
BLOCKED = ("PySide6", "shiboken6", "pytestqt")


class _Hide:
    def __init__(self, inner): self.inner = inner

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            return None
        return self.inner.find_spec(name, path, target) if hasattr(self.inner, "find_spec") else None

    def __getattr__(self, a): return getattr(self.inner, a)


sys.meta_path[:] = [_Hide(f) for f in sys.meta_path]
