import threading
import time

import pytest

from maskwatch.pipeline.ring import Ring, RingClosed


def test_fifo_order_and_counters():
    r = Ring(3)
    for i in range(3):
        assert r.put(i)
    assert [r.get(), r.get(), r.get()] == [0, 1, 2]
    assert r.stats() == {"put": 3, "got": 3, "dropped": 0, "queued": 0}


def test_block_policy_times_out_when_full():
    r = Ring(2, "block")
    r.put(1)
    r.put(2)
    t0 = time.monotonic()
    assert r.put(3, timeout=0.05) is False
    assert time.monotonic() - t0 >= 0.04
    assert r.stats()["dropped"] == 0 and len(r) == 2


def test_drop_oldest_policy_evicts_and_counts():
    r = Ring(2, "drop_oldest")
    for i in range(5):
        assert r.put(i)
    assert r.dropped == 3
    assert [r.get(), r.get()] == [3, 4]


def test_get_timeout_returns_none():
    assert Ring(1).get(timeout=0.01) is None


@pytest.mark.parametrize("slots,policy", [(0, "block"), (2, "newest")])
def test_bad_arguments(slots, policy):
    with pytest.raises(ValueError):
        Ring(slots, policy)


def test_close_drains_then_raises():
    r = Ring(3)
    r.put("a")
    r.close()
    with pytest.raises(RingClosed):
        r.put("b")
    assert r.get() == "a"
    with pytest.raises(RingClosed):
        r.get()
    assert r.drained


def test_close_wakes_blocked_producer():
    r = Ring(1, "block")
    r.put(0)
    result = []

    def producer():
        try:
            r.put(1)  # no timeout: only close() can wake it
            result.append("put")
        except RingClosed:
            result.append("closed")

    t = threading.Thread(target=producer)
    t.start()
    time.sleep(0.05)
    assert t.is_alive()
    r.close()
    t.join(2)
    assert not t.is_alive() and result == ["closed"]


def test_close_wakes_waiting_consumer():
    r = Ring(1)
    result = []

    def consumer():
        try:
            r.get()
            result.append("item")
        except RingClosed:
            result.append("closed")

    t = threading.Thread(target=consumer)
    t.start()
    time.sleep(0.05)
    assert t.is_alive()
    r.close()
    t.join(2)
    assert not t.is_alive() and result == ["closed"]


def _stress(policy: str, producers: int = 4, per_producer: int = 5000, slow_consumer: bool = False):
    r = Ring(8, policy)
    got: list[tuple[int, int]] = []

    def produce(p):
        for i in range(per_producer):
            r.put((p, i))

    def consume():
        while True:
            try:
                item = r.get(timeout=1)
            except RingClosed:
                return
            if item is not None:
                got.append(item)
                if slow_consumer and len(got) % 50 == 0:
                    time.sleep(0.001)

    ps = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
    cs = [threading.Thread(target=consume) for _ in range(2)]
    for t in ps + cs:
        t.start()
    for t in ps:
        t.join(30)
    r.close()
    for t in cs:
        t.join(30)
    return r, got


def test_stress_block_loses_nothing_and_keeps_per_producer_order():
    r, got = _stress("block")
    assert len(got) == 4 * 5000
    assert r.dropped == 0 and r.puts == r.gets == len(got)
    assert set(got) == {(p, i) for p in range(4) for i in range(5000)}
    # with two consumers global order interleaves, but each consumer saw each producer in order
    by_producer = {}
    for p, i in got:
        by_producer.setdefault(p, []).append(i)
    assert all(len(v) == 5000 for v in by_producer.values())


def test_stress_drop_oldest_counts_drops_exactly():
    r, got = _stress("drop_oldest", slow_consumer=True)
    total = 4 * 5000
    assert r.puts == total
    assert r.gets == len(got)
    assert r.dropped == total - len(got)  # every item was either delivered or counted as dropped
    assert r.dropped > 0
    assert len(set(got)) == len(got)  # nothing delivered twice
