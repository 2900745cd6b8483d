"""python -m tuner.analysis EXPERIMENT_DIR [--out DIR]: write the ranked report of an experiment.

Safe on a directory someone else handed over: it reads JSON only and unpickles nothing (why and how:
tuner/analysis/frames.py), so there is no --trust-pickles to give."""

import warnings

from models.errors import ArgumentParser, exit_on_user_error, require_positive


def main(argv=None) -> None:
    parser = ArgumentParser(prog="python -m tuner.analysis",
                            description="Rank the trials of a Ray Tune experiment written by tuner/run.py and "
                                        "write trials.csv/.parquet, history.parquet, PNG plots, report.md and a "
                                        "self-contained report.html. Reads JSON only: nothing in the "
                                        "directory is unpickled.")
    parser.add_argument("experiment_dir", help="the experiment directory: STORAGE_PATH/NAME (finished, running, "
                                               "interrupted or copied back from cloud storage)")
    parser.add_argument("--out", help="where to write the report (default: EXPERIMENT_DIR/report)")
    parser.add_argument("--top", type=int, default=3,
                        help="trials shown with sample grids and training curves (default: 3)")
    args = parser.parse_args(argv)
    require_positive("top", args.top)
    import optuna

    from tuner.analysis.report import write_report
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", module="ray")
    print(f"wrote {write_report(args.experiment_dir, args.out, args.top)}")


def cli() -> None:
    """The command line (python -m tuner.analysis, gantune-report): bad input is one line and exit status 2."""
    exit_on_user_error(main)


if __name__ == "__main__":
    cli()
