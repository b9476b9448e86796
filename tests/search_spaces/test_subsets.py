"""The stratified subset rule: every level of every factor, balanced, deterministic under its seed."""

from collections import Counter

import pytest

from search_spaces import ConvNetSpec, convnet_720, stratified_subset
from search_spaces.subsets import FACTORS


@pytest.mark.parametrize("count", [5, 36, 100])
def test_every_level_appears_and_levels_are_balanced(count):
    grid = convnet_720(widths=(8, 16, 32, 64))
    subset = stratified_subset(grid, count, seed=0)
    assert len(subset) == len(set(subset)) == count and set(subset) <= set(grid)
    for f in FACTORS:
        levels = {getattr(s, f) for s in grid}
        counts = Counter(getattr(s, f) for s in subset)
        assert set(counts) == levels, f
        assert max(counts.values()) - min(counts.values()) <= 2, (f, counts)
    assert [grid.index(s) for s in subset] == sorted(grid.index(s) for s in subset)  # input order kept


def test_seeded_both_ways():
    grid = convnet_720()
    assert stratified_subset(grid, 36, seed=1) == stratified_subset(grid, 36, seed=1)
    assert stratified_subset(grid, 36, seed=1) != stratified_subset(grid, 36, seed=2)


def test_too_small_or_too_large_counts_are_refused():
    grid = convnet_720()
    with pytest.raises(ValueError, match="count must be an int >= 5 .*got 4"):
        stratified_subset(grid, 4)
    with pytest.raises(ValueError, match="count must be <= the number of distinct specs \\(720\\), got 721"):
        stratified_subset(grid, 721)
    # width 16, depth 2 and sigmoid each appear in a different spec: covering them takes 3
    irregular = [ConvNetSpec(8, 1, "relu", "none", "none"), ConvNetSpec(16, 1, "relu", "none", "none"),
                 ConvNetSpec(8, 2, "relu", "none", "none"), ConvNetSpec(8, 1, "sigmoid", "none", "none")]
    with pytest.raises(ValueError, match="covering every level of every factor takes 3 of these specs"):
        stratified_subset(irregular, 2)
