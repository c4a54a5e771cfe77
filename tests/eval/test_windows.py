import pytest

from domainlm.eval.windows import causal_windows, chunk_spans


def _targets(window):
    return list(range(window.end - window.num_scored, window.end))


@pytest.mark.parametrize(
    ("num_positions", "max_length", "stride"), [(10, 4, 2), (100, 16, 5), (17, 8, 7), (9, 8, 1)]
)
def test_every_target_scored_once_with_the_documented_context(num_positions, max_length, stride):
    windows = causal_windows(num_positions, max_length, stride)
    scored = [t for w in windows for t in _targets(w)]
    assert scored == list(range(1, num_positions))  # position 0 is the prefix: context only
    assert windows[0] == type(windows[0])(
        0, min(num_positions, max_length), min(num_positions, max_length) - 1
    )
    for window in windows:
        assert 1 <= window.length <= max_length
        first_target = window.end - window.num_scored
        assert first_target - window.start >= 1
        if window.start > 0:  # a later window: at least max_length - stride tokens of context
            assert first_target - window.start >= max_length - stride


def test_hand_worked_windows():
    # 10 positions, window 4, stride 2: [0,4) scores 1..3; then 4..5 with context 2..3; 6..7; 8..9.
    assert [(w.start, w.end, w.num_scored) for w in causal_windows(10, 4, 2)] == [
        (0, 4, 3), (2, 6, 2), (4, 8, 2), (6, 10, 2),
    ]  # fmt: skip
    # The last chunk is shorter and right-aligned, so it gets more context than the stride allows.
    assert [(w.start, w.end, w.num_scored) for w in causal_windows(9, 4, 3)] == [
        (0, 4, 3),
        (3, 7, 3),
        (5, 9, 2),
    ]


def test_text_that_fits_is_one_window_and_tiny_texts_have_none():
    assert causal_windows(5, 8, 4) == [causal_windows(5, 8, 4)[0]]
    assert causal_windows(5, 8, 4)[0].num_scored == 4
    assert causal_windows(1, 8, 4) == []


@pytest.mark.parametrize(("max_length", "stride"), [(1, 1), (8, 0), (8, 8)])
def test_bad_window_settings_raise(max_length, stride):
    with pytest.raises(ValueError, match="stride"):
        causal_windows(10, max_length, stride)


def test_chunk_spans_cover_without_overlap():
    assert chunk_spans(7, 3) == [(0, 3), (3, 6), (6, 7)]
    assert chunk_spans(0, 3) == []
    with pytest.raises(ValueError, match="chunk_length"):
        chunk_spans(5, 0)
