"""The local OpenAI-compatible endpoint (FastAPI). Qt-free: the window starts and stops it."""
