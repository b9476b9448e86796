"""What every study's command line shares: its arguments, and running (or resuming) its pipeline before the write-up
unless only the write-up is asked for."""

from __future__ import annotations

import argparse
from pathlib import Path

from nasprune.search import exit_on_interrupt
from nasprune.workflows import PipelineConfig, run_pipeline

__all__ = ["run_unless_analysing", "study_parser"]


def study_parser(doc: str, config: Path | None = None) -> argparse.ArgumentParser:
    """A study's parser, described by the first line of ``doc``: ``--config`` (when the study has a default config
    file), ``--analyse``, ``--workers`` and ``--n-boot``."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    if config is not None:
        ap.add_argument("--config", default=str(config))
    ap.add_argument("--analyse", action="store_true", help="only analyse the jobs finished so far")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--n-boot", type=int, default=1000)
    return ap


def run_unless_analysing(config: PipelineConfig, directory: Path, args: argparse.Namespace, script: str) -> None:
    """Run (or resume) the study's pipeline, without its report, unless ``--analyse``; Ctrl-C or SIGTERM end it with
    one line naming ``script``."""
    if not args.analyse:
        with exit_on_interrupt(script):
            run_pipeline(config, directory, workers=args.workers, report=False)
