from engine.state_cache import StateCache, common_prefix_len


def test_longest_prefix_match_wins():
    c = StateCache(ram_bytes=1000)
    c.put([1, 2, 3], b"a" * 10)
    c.put([1, 2, 9, 9], b"b" * 10)
    n, entry = c.best_match([1, 2, 9, 9, 5])
    assert (n, entry.tokens) == (4, (1, 2, 9, 9))
    assert c.best_match([1, 2, 9, 9, 5], better_than=4) is None
    assert c.load(entry) == b"b" * 10


def test_least_recently_used_goes_first_within_budget():
    c = StateCache(ram_bytes=25)
    c.put([1], b"x" * 10)
    c.put([2], b"y" * 10)
    c.load(c.best_match([1])[1])  # touch 1: 2 is now the oldest
    c.put([3], b"z" * 10)
    assert c.best_match([2]) is None
    assert c.best_match([1]) is not None and c.best_match([3]) is not None
    assert c.ram_used <= 25


def test_states_spill_to_disk_and_come_back(tmp_path):
    c = StateCache(ram_bytes=15, disk_dir=tmp_path, disk_bytes=25)
    c.put([1], b"x" * 10)
    c.put([2], b"y" * 10)  # 1 spills
    assert c.ram_used == 10 and c.disk_used == 10
    assert len(list(tmp_path.glob("*.kv"))) == 1
    assert c.load(c.best_match([1])[1]) == b"x" * 10
    c.put([3], b"z" * 10)
    c.put([4], b"w" * 10)  # disk over budget: the oldest spilled state is deleted
    assert c.disk_used <= 25
    assert len(list(tmp_path.glob("*.kv"))) == len([e for e in c._entries.values() if e.data is None])


def test_a_longer_state_replaces_its_prefix():
    c = StateCache()
    c.put([1, 2], b"a")
    c.put([1, 2, 3], b"b")
    assert len(c) == 1


def test_common_prefix_len():
    a = list(range(1000))
    assert common_prefix_len(a, a[:700] + [-1]) == 700
    assert common_prefix_len(a, []) == 0
    assert common_prefix_len(a, a) == 1000
