"""Break, retest and rejection on hand-built price paths."""

from p9cli.fusion.level_events import LevelEvents, distances

LEVEL = [{"price": 100.0, "kind": "support", "strength": 0.8}]
BUF, REACT = 0.2, 1.0


def run(path, levels=LEVEL):
    le = LevelEvents()
    out = []
    for i, (low, high, last) in enumerate(path):
        out += [(e["type"], e["direction"]) for e in le.update(levels, low, high, last, BUF, REACT, i)]
    return le, out


def test_rejection_from_support():
    # price above 100, dips to 100.1 (touch), bounces to 101.5
    _, ev = run([(102, 102, 102), (100.1, 101, 100.5), (100.5, 101.5, 101.5)])
    assert ev == [("rejection", "up")]


def test_break_then_retest_flips_the_level():
    path = [
        (102, 102, 102),
        (99.5, 101, 99.6),  # through 100 - 0.2: break down
        (99.5, 99.9, 99.9),  # back up within the buffer below: retest touch
        (98.8, 99.9, 98.9),  # away by more than the reaction: retest held
    ]
    le, ev = run(path)
    assert ev == [("break", "down"), ("retest", "down")]
    last = le.recent(1)[0]
    assert last["level"] == 100.0 and last["kind"] == "support" and last["event_ts"] == 3


def test_no_event_without_enough_move():
    _, ev = run([(102, 102, 102), (100.1, 100.5, 100.5), (100.3, 100.8, 100.8)])
    assert ev == []  # touched, but never a reaction's distance away, never through


def test_break_up_through_resistance_and_forgotten_level():
    le, ev = run([(98, 98, 98), (98, 100.5, 100.4)])
    assert ev == [("break", "up")]
    le.update([], 100, 100, 100, BUF, REACT, 9)  # level gone from the document
    assert le.states == {}


def test_distances():
    assert distances(None, 0.01) is None
    b, r = distances(10.0, 0.01)
    assert b == 1.0 and r == 5.0
    b, _ = distances(0.05, 0.01)
    assert b == 0.02  # two ticks
