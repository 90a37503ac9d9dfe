"""The child process of a test load (runtimes/load_probe.py): load, make a context, run one token."""
from __future__ import annotations

import json
import sys

from basics.errors import LanternError
from runtimes.llamacpp import LlamaCppRuntime
from runtimes.load_probe import CLEAN_FAILURE
from runtimes.runtime import LoadOptions
from runtimes.vision import probe_image


def child_main(spec_json: str) -> int:
    """In the child: load, make a context, run one token. Exit 0, or CLEAN_FAILURE with one line on stdout."""
    try:
        spec = json.loads(spec_json)
        rt = LlamaCppRuntime(spec.pop("path"), LoadOptions(**spec), verify=False)
        try:
            first = rt.special.bos if rt.special.bos is not None else 0
            if rt.vision is not None:  # encode one small image: a projector's graph runs only then
                _marker, ids = rt.vision.prepare(probe_image())
                rt.forward([first, *ids, first], 0)
            else:
                rt.forward([first], 0)
        finally:
            rt.close()
    except LanternError as e:
        print(str(e).replace("\n", " "), flush=True)
        return CLEAN_FAILURE
    return 0


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1]))
