"""What a chat looks like to a model: chat templates (sandboxed, with their capabilities and budget),
tool-call formats, harmony, and parsing a reply back into text, reasoning and calls."""

from basics.native import load_first

load_first()  # before numpy or any other compiled module (basics/native.py)
