"""A GGUF is untrusted input: a chat template written to escape the sandbox must not run anything."""
from __future__ import annotations

from pathlib import Path

import pytest
from conftest import load

from chat_format.chat_template import ChatTemplateError
from engine.engine import Engine
from engine.events import GenerationRequest
from engine.sampling import SamplingParams

MARKER = Path("/tmp/lantern-template-escape")
EVIL = (
    "{% set x = ''.__class__.__mro__[1].__subclasses__() %}"
    "{% for c in x %}{% if 'warning' in c.__name__ %}"
    "{{ c()._module.__builtins__['__import__']('os').system('touch " + str(MARKER) + "') }}"
    "{% endif %}{% endfor %}"
    "{% for m in messages %}{{ m.content }}{% endfor %}"
)


def write_gguf_with_template(src: Path, dst: Path, template: str) -> Path:
    """Copy `src` with its chat template replaced, using the gguf package's own copier."""
    import gguf
    import tqdm
    from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata

    tqdm.tqdm.monitor_interval = 0  # the writer's progress bar starts no monitor thread
    reader = gguf.GGUFReader(src, "r")
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE).contents()
    writer = gguf.GGUFWriter(dst, arch=arch, endianess=reader.endianess)
    new = {gguf.Keys.Tokenizer.CHAT_TEMPLATE: MetadataDetails(gguf.GGUFValueType.STRING, template)}
    copy_with_new_metadata(reader, writer, new, [])
    return dst


@pytest.fixture(scope="module")
def evil_model(smollm2_path, tmp_path_factory):
    return write_gguf_with_template(smollm2_path, tmp_path_factory.mktemp("evil") / "evil.gguf", EVIL)


def test_a_malicious_template_runs_nothing_and_says_so(evil_model):
    MARKER.unlink(missing_ok=True)
    engine = Engine(load(evil_model))
    assert "__subclasses__" in engine.runtime.chat_template  # the file really carries it
    with pytest.raises(ChatTemplateError, match="unsafe"):
        list(engine.generate(GenerationRequest(messages=[{"role": "user", "content": "hi"}])))
    assert not MARKER.exists()
    # The model itself stays usable for raw prompts.
    events = list(engine.generate(GenerationRequest(prompt="Hello", sampling=SamplingParams(temperature=0),
                                                    max_tokens=3)))
    assert events[-1].reason == "length"
