"""The n-gram index behind prompt lookup, on hand-written token lists."""

from __future__ import annotations

from decbench.decoders.speculative.prompt_lookup import NgramIndex


def continuation(tokens: list[int], k: int = 3, min_n: int = 1, max_n: int = 3) -> list[int]:
    index = NgramIndex(min_n, max_n)
    index.update(tokens)
    return index.continuation(tokens, k)


def test_longest_suffix_wins_over_a_more_recent_short_match():
    # suffix [1, 2, 3] occurred at the start (followed by 7 8); [3] alone recurs later (followed by 9)
    tokens = [1, 2, 3, 7, 8, 3, 9, 5, 1, 2, 3]
    assert continuation(tokens) == [7, 8, 3]


def test_most_recent_occurrence_wins_among_equal_lengths():
    tokens = [4, 5, 10, 4, 5, 11, 4, 5]
    assert continuation(tokens, k=1, max_n=2) == [11]


def test_the_current_suffix_never_matches_itself():
    assert continuation([1, 2, 3]) == []


def test_no_match_gives_an_empty_draft():
    assert continuation([1, 2, 3, 4], min_n=2) == []


def test_continuation_is_cut_at_k_and_at_the_end():
    tokens = [1, 2, 3, 4, 5, 1, 2]
    assert continuation(tokens, k=2) == [3, 4]
    assert continuation([9, 1, 9], k=5) == [1, 9]  # overlaps the current suffix: still a copy


def test_incremental_updates_equal_a_fresh_index():
    tokens = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4, 6, 2, 6, 4, 3, 3]
    grown = NgramIndex(1, 3)
    for end in range(1, len(tokens) + 1):
        grown.update(tokens[:end])
        fresh = NgramIndex(1, 3)
        fresh.update(tokens[:end])
        assert grown.latest == fresh.latest
        assert grown.continuation(tokens[:end], 4) == fresh.continuation(tokens[:end], 4)
