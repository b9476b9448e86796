"""Trains (or resumes) results/budget-search/unseen/: a pool of 15 candidates no folder of results/ has trained, its
whole-set ground truth, and a random proxy rung on the candidates zico's top third keeps (the rule:
results/budget-search/PLAN.md, "A pool not yet seen"; the study: scripts/studies/budget_unseen.py). Writes the
pool's jobs.csv and history.csv; scripts/budget_search.py replays it beside the other pools.

    python scripts/budget_unseen.py              # about 75 minutes on 2 workers; rerun to resume
    python scripts/budget_unseen.py --analyse    # only write jobs.csv and history.csv from the jobs finished so far
"""

from __future__ import annotations

from nasprune.proxies import build_proxy
from nasprune.search import EXPERIMENT_FILE, Experiment, exit_on_interrupt, load_history, load_jobs, run_search
from nasprune.workflows import PipelineConfig
from studies.budget_search import UNSEEN, zero_cost_table
from studies.budget_unseen import draw_pool, proxy_candidates, restrict, seen_candidates
from studies.common import study_parser


def main() -> None:
    args = study_parser(__doc__, UNSEEN.directory / "config.yaml").parse_args()
    config = PipelineConfig.load(args.config)
    directory = UNSEEN.directory
    # before the pool's first job, its candidates must be PLAN.md's draw; afterwards, the ones it trained (a later
    # folder of results/ may train some of them, which would change a new draw)
    started = (directory / EXPERIMENT_FILE).exists()
    expected = Experiment.load(directory).candidates if started else draw_pool(seen_candidates())
    if config.search.candidate_ids() != expected:
        which = "the ones the pool trained" if started else "PLAN.md's draw"
        raise SystemExit(f"{args.config}: its candidates are not {which} ({expected}); the pool changed")
    if not args.analyse:
        experiment = config.experiment()
        zero_cost = zero_cost_table(UNSEEN, directory.parent, experiment=experiment)
        kept = proxy_candidates(zero_cost, experiment.candidates)
        print(f"proxy rung on {len(kept)} of {len(experiment.candidates)} candidates (zico's top third, seed 0 or 1): "
              f"{', '.join(kept)}")
        dataset = config.dataset.load()
        for spec in config.proxies.resolved():
            path = directory / "proxies" / f"{spec.name}.json"
            if not path.exists():
                build_proxy(dataset, None, spec.method, spec.per_class, seed=spec.seed).save(path)
        restrict(experiment, kept).save(directory)
        with exit_on_interrupt("scripts/budget_unseen.py"):
            run_search(directory, workers=args.workers or config.search.workers)
    jobs = load_jobs(directory)
    jobs.to_csv(directory / "jobs.csv", index=False)
    load_history(directory).to_csv(directory / "history.csv", index=False)
    print(f"{len(jobs)} jobs finished; {directory / 'jobs.csv'} written")


if __name__ == "__main__":
    main()
