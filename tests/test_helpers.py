"""Helper machines (issue 37): real `lantern worker` processes (llama.cpp's RPC server) on 127.0.0.1, each given a
share of the model; the same build and kernels as the model alone on this CPU, so greedy replies are the same."""
from __future__ import annotations

import socket
import struct
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from app.wiring import plan_load, start_worker
from basics.errors import ModelLoadError
from cli.main import main
from engine.engine import EngineOptions
from engine.events import GenerationRequest, TextDelta
from engine.sampling import SamplingParams
from machine.hardware import GPU, Hardware
from machine.helpers import PROTOCOL, Helper, HelperDevice, HelperError, parse_endpoint, parse_endpoints, probe
from models.info import describe_model
from models.spread import spread
from runtimes.runtime import LoadOptions
from helper_machines import Worker, free_port as _free_port
from tiny_models import write_llama

GiB = 1 << 30
GREEDY = SamplingParams(temperature=0.0)
PLAIN = EngineOptions(prompt_lookup=False)  # the same pass shapes in both runs: no drafts
ASK = [{"role": "user", "content": "Write a short poem about the sea."}]


@pytest.fixture(scope="module")
def helpers():
    pair = [Worker(), Worker()]
    yield pair
    for w in pair:
        w.stop()


@pytest.fixture(scope="module")
def tall_model(smollm2_path, tmp_path_factory):
    return write_llama(smollm2_path, tmp_path_factory.mktemp("tall") / "tall-llama.gguf", n_layer=24)


def _reply(worker, messages, *, max_tokens=40, **extra):
    tokens, final = [], None
    for event in worker.submit(GenerationRequest(messages=messages, sampling=GREEDY, max_tokens=max_tokens, **extra)):
        if isinstance(event, TextDelta):
            tokens.extend(event.tokens)
        else:
            final = event
    return tokens, final


def _open(model, helper_list=(), **options):
    w = start_worker(model, options=LoadOptions(n_ctx=1024, slots=1, helpers=tuple(helper_list), **options),
                     engine_options=PLAIN)
    w.wait_ready(300)
    return w


def test_a_helper_answers_with_its_protocol_and_devices(helpers):
    h = helpers[0].helper
    assert h.version == PROTOCOL  # the llama.cpp built here speaks what machine/helpers.py expects
    assert h.devices and all(0 < d.free_bytes <= d.total_bytes for d in h.devices)


@pytest.mark.parametrize("which", ["starter", "tall"])
def test_greedy_over_two_helpers_equals_the_model_alone(helpers, smollm2_path, tall_model, which):
    model = smollm2_path if which == "starter" else tall_model
    alone = _open(model)
    try:
        expected, final = _reply(alone, ASK)
        assert final.reason in ("stop", "length") and expected
    finally:
        alone.close()
    spread_out = _open(model, [h.endpoint for h in helpers])
    try:
        reason = spread_out.call(lambda e: e.backend_reason).result()
        layers = describe_model(Path(model)).n_layers
        # each machine holds a share, none the whole model
        assert "spread over 3 machines" in reason and "here (CPU)" in reason
        assert all(h.endpoint in reason for h in helpers) and f"layers 0-{layers - 1}" not in reason
        got, final = _reply(spread_out, ASK)
        assert final.reason in ("stop", "length") and final.error is None
        assert got == expected
    finally:
        spread_out.close()


def test_the_next_turn_computes_only_its_new_tokens(helpers, smollm2_path):
    def two_turns(worker):
        first, _ = _reply(worker, ASK, max_tokens=24)
        text = worker.call(lambda e: e.runtime.detokenize(first)).result()
        follow = ASK + [{"role": "assistant", "content": text}, {"role": "user", "content": "Now one about rain."}]
        _, final = _reply(worker, follow, max_tokens=8)
        return final.stats

    alone = _open(smollm2_path)
    try:
        local = two_turns(alone)
    finally:
        alone.close()
    spread_out = _open(smollm2_path, [h.endpoint for h in helpers])
    try:
        remote = two_turns(spread_out)
    finally:
        spread_out.close()
    assert 0 < remote.prefill_tokens < remote.prompt_tokens // 2  # the first turn came from the cache
    assert (remote.prompt_tokens, remote.cached_tokens, remote.prefill_tokens) == \
        (local.prompt_tokens, local.cached_tokens, local.prefill_tokens)


def test_a_helper_killed_mid_reply_is_an_error_and_the_next_request_plans_without_it(helpers, smollm2_path):
    doomed = Worker()
    try:
        w = _open(smollm2_path, [helpers[0].endpoint, doomed.endpoint])
        try:
            assert doomed.endpoint in w.call(lambda e: e.backend_reason).result()
            final, seen = None, 0
            for event in w.submit(GenerationRequest(messages=ASK, sampling=GREEDY, max_tokens=400, ignore_eos=True)):
                if isinstance(event, TextDelta):
                    seen += 1
                    if seen == 1:
                        doomed.stop()  # 399 tokens to go, each a round trip through it
                else:
                    final = event
            assert final.reason == "error" and doomed.endpoint in final.error
            assert "stopped answering" in final.error and "without it" in final.error
            # the next request loads the model again over what is left, and answers as the model alone does
            got, again = _reply(w, ASK)
            assert again.reason in ("stop", "length") and again.error is None
        finally:
            w.close()
    finally:
        doomed.stop()
    alone = _open(smollm2_path)
    try:
        expected, _ = _reply(alone, ASK)
    finally:
        alone.close()
    assert got == expected


def test_a_wrong_address_is_said_before_anything_loads(smollm2_path):
    closed = f"127.0.0.1:{_free_port()}"
    with pytest.raises(ModelLoadError, match="refused the connection: nothing listens there"):
        plan_load(smollm2_path, options=LoadOptions(helpers=(closed,)))
    with pytest.raises(ModelLoadError, match="no machine has the name"):
        plan_load(smollm2_path, options=LoadOptions(helpers=("no-such-helper.invalid:50052",)))


class FakeServer:
    """A socket that answers the handshake as `behaviour` says: another protocol version, a closed connection, or
    nothing at all (llama.cpp servers of other versions, or another program on that port)."""

    def __init__(self, behaviour: str):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.endpoint = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.behaviour = behaviour
        self.conns = []
        self.stopped = threading.Event()
        self.sock.settimeout(0.05)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:  # a timeout: look at the stop flag again
                continue
            conn.settimeout(5)
            self.conns.append(conn)
            try:
                conn.recv(1 + 8 + 24)
                if self.behaviour == "old":
                    conn.close()
                elif self.behaviour == "newer":
                    conn.sendall(struct.pack("<Q", 28) + bytes([8, 0, 0, 0]) + bytes(24))
            except OSError:
                pass

    def close(self) -> None:
        self.stopped.set()
        self.thread.join()
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.mark.parametrize("behaviour, said", [
    ("newer", "speaks llama.cpp's RPC protocol 8.0.0, and this Lantern speaks 7.0.0"),
    ("old", "closed the connection at the handshake: it speaks another version"),
    ("silent", "did not answer in 1 s: it is serving a model now"),
])
def test_a_helper_of_another_protocol_is_refused_in_words(behaviour, said):
    server = FakeServer(behaviour)
    try:
        with pytest.raises(HelperError, match=said):
            probe(server.endpoint, timeout=1.0)
    finally:
        server.close()


def test_a_helper_of_another_protocol_stops_the_load_in_words(smollm2_path):
    server = FakeServer("newer")
    try:
        worker = start_worker(smollm2_path, options=LoadOptions(slots=1, helpers=(server.endpoint,)))
        with pytest.raises(ModelLoadError, match="protocol 8.0.0"):
            worker.wait_ready(60)
        worker.close()
    finally:
        server.close()


def test_the_worker_refuses_to_listen_beyond_loopback_without_insecure(capsys):
    assert main(["worker", "--host", "0.0.0.0", "--port", str(_free_port())]) == 2
    said = capsys.readouterr().err
    assert "exposes this machine" in said and "no password" in said and "--insecure" in said
    assert main(["worker", "--host", "gpu-box", "--port", "50052"]) == 2
    assert "IPv4 address" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        assert main(["worker", "--port", str(taken.getsockname()[1])]) == 2
        assert "Cannot listen on 127.0.0.1" in capsys.readouterr().err


@pytest.mark.parametrize("given, said", [
    ("127.0.0.1", "host:port"), ("box:0", "from 1 to 65535"), ("box:99999", "from 1 to 65535"), (":80", "host:port"),
    ("box:http", "from 1 to 65535"), ("bad_name!:80", "not a host name"), ("[::1]:50052", "IPv4 addresses"),
    ("x" * 300 + ":80", "not a host name"),
])
def test_a_bad_helper_address_is_refused_in_words(given, said):
    with pytest.raises(HelperError, match=said):
        parse_endpoint(given)


def test_helper_lists_are_checked_and_deduplicated():
    assert parse_endpoints(" 10.0.0.2:50052, box.lan:7000 ,10.0.0.2:50052,,") == ("10.0.0.2:50052", "box.lan:7000")
    with pytest.raises(HelperError, match="at most 16"):
        parse_endpoints([f"10.0.0.{i}:50052" for i in range(17)])


# -- the plan, from descriptions ---------------------------------------------------------------------------------


def _model(tmp_path, *, size_gib: float, layers: int = 40):
    from models.info import ModelInfo

    return ModelInfo(path=tmp_path / "big.gguf", format="gguf", size_bytes=int(size_gib * GiB), n_layers=layers,
                     n_ctx_train=8192, kv_bytes_per_token=0)


def _laptop(ram_gib: float, gpus=()) -> Hardware:
    return Hardware(os="Linux", arch="x86_64", cpu_cores=8, ram_total_bytes=int(ram_gib * GiB) * 2,
                    ram_available_bytes=int(ram_gib * GiB), gpus=tuple(gpus), llamacpp_version="0.3.36",
                    llamacpp_gpu_offload=bool(gpus), llamacpp_gpu_backend="CUDA" if gpus else None)


def _helper(endpoint: str, *free_gib: float) -> Helper:
    devices = tuple(HelperDevice(i, int(f * GiB), int(f * GiB)) for i, f in enumerate(free_gib))
    return Helper(endpoint, PROTOCOL, devices)


def test_layers_are_shared_by_free_memory(tmp_path):
    model = _model(tmp_path, size_gib=30, layers=40)
    plan = spread(_laptop(15), model, [_helper("10.0.0.2:50052", 25)], n_ctx=4096)
    assert plan.cpu + sum(plan.helper_layers) == 41 and plan.gpu == 0
    assert plan.cpu < plan.helper_layers[0]  # the roomier desktop takes more
    assert plan.machines == 2 and "here (CPU)" in plan.reason and "on 10.0.0.2:50052" in plan.reason
    assert plan.reason.endswith("and the output on 10.0.0.2:50052")


def test_a_gpu_here_is_filled_first_and_the_helpers_take_the_rest(tmp_path):
    model = _model(tmp_path, size_gib=30, layers=40)
    rtx = GPU("RTX 4090", 24 * GiB, 24 * GiB)
    plan = spread(_laptop(32, [rtx]), model, [_helper("10.0.0.2:50052", 12)], n_ctx=4096, local_gpu=True)
    assert plan.gpu > plan.helper_layers[0] > 0 and plan.cpu + plan.gpu + plan.helper_layers[0] == 41
    assert plan.n_gpu_layers == 41 - plan.cpu and plan.reason.endswith("here (GPU)")


def test_each_device_of_a_helper_gets_its_own_share(tmp_path):
    model = _model(tmp_path, size_gib=30, layers=40)
    plan = spread(_laptop(4), model, [_helper("10.0.0.2:50052", 16, 16), _helper("10.0.0.3:50052", 8)], n_ctx=4096)
    a, b, c = plan.helper_layers
    assert abs(a - b) <= 1 and c < a and a + b + c + plan.cpu == 41
    assert [(e, i) for e, i, _ in plan.helper_devices] == [("10.0.0.2:50052", 0), ("10.0.0.2:50052", 1),
                                                            ("10.0.0.3:50052", 0)]
    assert "(device 1)" in plan.reason


def test_a_model_too_big_for_every_machine_together_is_refused(tmp_path):
    model = _model(tmp_path, size_gib=80)
    with pytest.raises(ModelLoadError, match="needs 80.0 GiB, and this machine with 1 helper has"):
        spread(_laptop(15), model, [_helper("10.0.0.2:50052", 25)], n_ctx=4096)


def test_helpers_refuse_what_they_cannot_run(smollm2_path, helpers):
    endpoint = (helpers[0].endpoint,)
    with pytest.raises(ModelLoadError, match="leave out --n-gpu-layers"):
        plan_load(smollm2_path, options=LoadOptions(helpers=endpoint, n_gpu_layers=4))
    with pytest.raises(ModelLoadError, match="draft model"):
        plan_load(smollm2_path, options=LoadOptions(helpers=endpoint, draft_model=str(smollm2_path)))
    with pytest.raises(ModelLoadError, match="MLX model"):
        plan_load(smollm2_path, backend="mlx", options=LoadOptions(helpers=endpoint))


def test_helpers_of_settings_are_used_only_for_a_model_that_does_not_fit_here(smollm2_path, helpers):
    plan = plan_load(smollm2_path, options=LoadOptions(helpers=(helpers[0].endpoint,), helpers_when_needed=True))
    assert plan.options.helpers == () and "spread" not in plan.reason
    tiny = _laptop(0.5)  # a machine with no room: the helper is needed
    plan = plan_load(smollm2_path, hardware=tiny, options=LoadOptions(helpers=(helpers[0].endpoint,),
                                                                     helpers_when_needed=True))
    assert plan.options.helpers == (helpers[0].endpoint,) and "spread over" in plan.reason



def test_a_model_too_big_here_fits_with_the_helpers_that_answered(tmp_path):
    from models.fit import check_fit

    model = _model(tmp_path, size_gib=30)
    alone = check_fit(_laptop(15), model, n_ctx=4096)
    assert alone.verdict == "no"
    hw = replace(_laptop(15), helpers=(_helper("10.0.0.2:50052", 25),))
    fit = check_fit(hw, model, n_ctx=4096)
    assert fit.verdict == "helpers" and fit.badge == "fits with 2 machines" and "on 10.0.0.2:50052" in fit.summary
    # what fits here alone is not spread, and what fits nowhere stays too big
    assert check_fit(hw, _model(tmp_path, size_gib=5), n_ctx=4096).verdict == "cpu"
    assert check_fit(hw, _model(tmp_path, size_gib=90), n_ctx=4096).badge == "too big"


def test_settings_keep_helpers_checked(tmp_path):
    from pydantic import ValidationError

    from app.settings import Settings

    s = Settings(helpers=["10.0.0.2:50052", " desk.lan:7000 "])
    assert s.helpers == ["10.0.0.2:50052", "desk.lan:7000"]
    options = s.load_options()
    assert options.helpers == ("10.0.0.2:50052", "desk.lan:7000") and options.helpers_when_needed
    with pytest.raises(ValidationError, match="host:port"):
        Settings(helpers=["10.0.0.2"])
    with pytest.raises(ValidationError):
        Settings(helpers=[f"10.0.0.{i}:1" for i in range(17)])


def test_the_load_says_it_sends_the_share_and_how_far_it_is(helpers, smollm2_path):
    stages, fractions = [], []
    w = start_worker(smollm2_path, options=LoadOptions(n_ctx=512, slots=1, helpers=(helpers[0].endpoint,),
                                                       on_stage=stages.append, on_progress=fractions.append))
    try:
        w.wait_ready(300)
    finally:
        w.close()
    assert stages == ["sending its share to 1 helper machine (a helper keeps it in its cache: the next load there "
                      "is quicker)"]
    assert fractions and fractions[-1] == 1.0 and fractions == sorted(fractions)


def test_the_doctor_lists_helpers_and_plans_over_them(helpers, capsys):
    closed = f"127.0.0.1:{_free_port()}"
    assert main(["doctor", "--rpc", f"{helpers[0].endpoint},{closed}"]) == 0
    out = capsys.readouterr().out
    assert f"{helpers[0].endpoint}: llama.cpp RPC 7.0.0" in out and "device 0:" in out
    assert f"{closed}: not used" in out and "refused the connection" in out
    assert "smollm2-135m-instruct: llamacpp (spread, 2 machines): spread over 2 machines" in out


def test_slots_and_prompt_lookup_run_over_helpers_as_they_do_alone(helpers, smollm2_path):
    """Two conversations batched on a spread model's two slots, one of them copying text through prompt lookup: each
    reply is the model's plain greedy reply alone (up to a near tie, as batches make on one machine too)."""
    from conftest import assert_same_up_to_near_tie, load, reference_greedy, reply_tokens

    from engine.engine import Engine
    from engine.slots import SlotWorker
    from runtimes.spread_runtime import SpreadRuntime

    text = ("The keeper climbs the stairs every evening at dusk. She checks the lamp, cleans the lens and winds the "
            "clockwork that turns the light.")
    copy = GenerationRequest(messages=[{"role": "user", "content": f"Repeat this text exactly:\n\n{text}"}],
                             sampling=GREEDY, max_tokens=40)
    other = GenerationRequest(messages=ASK, sampling=GREEDY, max_tokens=24)
    rt = load(smollm2_path, n_ctx=2048)
    references = [reference_greedy(rt, Engine(rt, options=PLAIN)._prompt_tokens(r)[0], r.max_tokens)
                  for r in (copy, other)]
    rt.close()
    plan = plan_load(smollm2_path, options=LoadOptions(n_ctx=2048, slots=2, helpers=tuple(h.endpoint for h in helpers)))
    w = SlotWorker(SpreadRuntime(plan.path, plan.options),
                   options=EngineOptions(adaptive_draft=False, forward_costs={1: 0.01, 8: 0.011, 17: 0.012}))
    try:
        w.wait_ready(300)
        w.scheduler.keep_steps = True
        gens = [w.submit(copy), w.submit(other)]
        results = [reply_tokens(g) for g in gens]
        ends = w.runtime.special.end_of_turn
        for (reference, gaps), (tokens, final) in zip(references, results):
            assert final.reason in ("stop", "length") and final.error is None
            assert_same_up_to_near_tie(reference, gaps, tokens, ends=ends)
        assert results[0][1].stats.tokens_per_forward > 1.5  # drafts from its prompt, verified over the helpers
        assert max(len(step) for step in w.scheduler.steps) == 2  # both conversations in one batch
    finally:
        w.close()


def test_a_helper_serving_a_model_says_so_and_answers_again_once_it_is_free(helpers, smollm2_path):
    w = _open(smollm2_path, [helpers[0].endpoint])
    try:
        with pytest.raises(HelperError, match="is serving a model now"):
            probe(helpers[0].endpoint, timeout=1.0)  # the real server takes one main machine at a time
    finally:
        w.close()
    assert probe(helpers[0].endpoint).version == PROTOCOL
