from engine.text import TextStream


def feed(stream: TextStream, pieces: list[bytes]) -> str:
    return "".join(stream.push(p) for p in pieces) + stream.finish()


def test_multibyte_characters_are_never_split():
    data = "héllo 👋 世界".encode()
    stream = TextStream()
    shown = [stream.push(data[i:i + 1]) for i in range(len(data))]
    assert "".join(shown) + stream.finish() == "héllo 👋 世界"
    for delta in shown:
        delta.encode("utf-8")  # every delta is whole characters
        assert "\ufffd" not in delta


def test_stop_string_split_across_tokens_is_caught_and_hidden():
    stream = TextStream(stop=["</end>"])
    out = feed(stream, [b"The answer", b" is 4.</", b"en", b"d> and more"])
    assert out == "The answer is 4."
    assert stream.stopped


def test_text_held_for_a_possible_stop_is_released_when_it_is_not_one():
    stream = TextStream(stop=["STOP"])
    assert stream.push(b"ab ST") == "ab "
    assert stream.push(b"ART") == "START"
    assert not stream.stopped


def test_earliest_of_several_stop_strings_wins():
    stream = TextStream(stop=["\n\n", "User:"])
    assert feed(stream, [b"Hi there", b" User: x\n\n"]) == "Hi there "


def test_unfinished_character_at_the_end_is_replaced_not_dropped():
    stream = TextStream()
    assert stream.push("é".encode()[:1]) == ""
    assert stream.finish() == "\ufffd"
