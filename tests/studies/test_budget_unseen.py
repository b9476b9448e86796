"""The pool not yet seen (scripts/studies/budget_unseen.py): its draw leaves out every candidate already trained, and
the proxy rung's candidates are the filter's top third under any seed."""

import pandas as pd

from nasprune.search import Experiment, Rung
from search_spaces import ConvNetSpec
from studies.budget_unseen import draw_pool, proxy_candidates, restrict, seen_candidates


def test_the_draw_leaves_out_the_seen_and_covers_every_level(tmp_path):
    seen_pool = draw_pool(set(), count=15, seed=0)
    (tmp_path / "old").mkdir()
    pd.DataFrame({"candidate": seen_pool[:5]}).to_csv(tmp_path / "old" / "jobs.csv", index=False)
    (tmp_path / "old" / "nested").mkdir()  # a pool's own folder, a level deeper, is not read
    pd.DataFrame({"candidate": seen_pool[5:]}).to_csv(tmp_path / "old" / "nested" / "jobs.csv", index=False)
    seen = seen_candidates(tmp_path)
    assert seen == set(seen_pool[:5])
    pool = draw_pool(seen)
    assert pool == draw_pool(seen) and len(set(pool)) == 15 and not set(pool) & seen
    specs = [ConvNetSpec.from_id(c) for c in pool]
    assert {s.width for s in specs} == {8, 16, 32} and {s.depth for s in specs} == {1, 2, 3, 4}
    assert len({s.norm for s in specs}) == 5 and len({s.act for s in specs}) == 3 and len({s.pool for s in specs}) == 3


def test_the_proxy_rung_holds_each_seeds_top_third_in_pool_order():
    candidates = [f"c{i}" for i in range(7)]
    seed0 = pd.DataFrame({"zico": [7, 6, 5, 1, 2, 3, 4]}, index=candidates)
    seed1 = pd.DataFrame({"zico": [1, 2, 3, 7, 6, 5, 4]}, index=candidates)
    top3 = Rung("zerocost:zico", eta=3)  # keeps ceil(7 / 3) = 3
    assert proxy_candidates({0: seed0}, candidates, top3) == ["c0", "c1", "c2"]
    assert proxy_candidates({0: seed0, 1: seed1}, candidates, top3) == ["c0", "c1", "c2", "c3", "c4", "c5"]
    # brute force: the union of each seed's three highest
    brute = {c for t in (seed0, seed1) for c in t["zico"].nlargest(3).index}
    assert set(proxy_candidates({0: seed0, 1: seed1}, candidates, top3)) == brute


def test_restrict_trains_the_proxies_on_some_candidates_and_the_whole_set_on_all():
    candidates = [f"w{w}-d1-relu-none-avgpooling" for w in (8, 16, 32)]
    exp = Experiment(name="t", dataset={"name": "synthetic"}, candidates=candidates, training_sets={
        "whole": {"proxy": None}, "p-d0": {"proxy": "p.json"}})
    out = restrict(exp, candidates[:1])
    assert out.training_sets["p-d0"].candidates == candidates[:1] and out.training_sets["whole"].candidates is None
    assert len(out.jobs()) == 3 + 1
