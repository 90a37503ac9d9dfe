"""Model files: where they are, what they are called (Qt-free)."""
