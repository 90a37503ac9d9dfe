"""The child process of a test load (runtimes/load_probe.py): load, make a context, run one token (and an image
and a draft of the MTP heads where the model has them)."""
from __future__ import annotations

import json
import sys

from basics.errors import LanternError
from runtimes.llama_mtp import MtpUnavailable
from runtimes.llamacpp import LlamaCppRuntime
from runtimes.load_probe import CLEAN_FAILURE
from runtimes.runtime import LoadOptions
from runtimes.vision import probe_image


def child_main(spec_json: str) -> int:
    """In the child: load, make a context, run one token (and an image, and a draft, where the model has them).
    Exit 0, or CLEAN_FAILURE with one line on stdout."""
    try:
        spec = json.loads(spec_json)
        rt = LlamaCppRuntime(spec.pop("path"), LoadOptions(**spec), verify=False)
        try:
            first = rt.special.bos if rt.special.bos is not None else 0
            if rt.vision is not None:  # encode one small image: a projector's graph runs only then
                _marker, ids = rt.vision.prepare(probe_image())
                rt.forward([first, *ids, first], 0)
                rt.reset()
            heads = _heads(rt) if rt.options.load_mtp or rt.options.mtp_assistant else None
            rt.forward([first], 0)
            if heads is not None:  # the heads' graph runs only when they draft: two tokens
                heads.draft([first, first], 2)
        finally:
            rt.close()
    except LanternError as e:
        print(str(e).replace("\n", " "), flush=True)
        return CLEAN_FAILURE
    return 0


def _heads(rt):
    """The model's MTP heads, or None where it cannot draft with them: the load itself goes on, and the parent says
    why when it starts them (a crash is what the child is for)."""
    try:
        return rt.start_mtp()
    except MtpUnavailable:
        return None


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1]))
