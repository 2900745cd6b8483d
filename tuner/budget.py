"""A compute budget for a whole search, in trial-epochs.

trial-epochs = the sum over trials of the epochs each trained (the `epoch` of its latest report;
epochs redone after a failure count once). Once the reports add up to the budget, the stopper
ends the search: the trials running then are stopped where they are (their partial epochs
count), and no new trial starts. So a search with budget B has spent at least B trial-epochs,
and at most B plus what its running trials train between two reports.
"""

import json

import pyarrow.fs
from ray import tune


def recorded_epochs(experiment_path: str) -> dict[str, float]:
    """trial id -> the latest epoch in its result.json, for every trial recorded at the path
    (local or a pyarrow URI); the rows up to a torn last line count."""
    filesystem, root = pyarrow.fs.FileSystem.from_uri(experiment_path)
    if filesystem.get_file_info(root).type != pyarrow.fs.FileType.Directory:
        return {}
    epochs = {}
    for entry in filesystem.get_file_info(pyarrow.fs.FileSelector(root)):
        path = f"{entry.path}/result.json"
        if entry.type != pyarrow.fs.FileType.Directory or filesystem.get_file_info(path).type == pyarrow.fs.FileType.NotFound:
            continue
        with filesystem.open_input_stream(path) as stream:
            lines = stream.read().decode(errors="replace").splitlines()
        for line in lines:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                break
            epochs[row["trial_id"]] = max(epochs.get(row["trial_id"], 0.0), float(row.get("epoch", 0.0)))
    return epochs


class TrialEpochBudget(tune.Stopper):
    """Stops the whole search once its trials have reported `budget` trial-epochs in all.

    Ray does not save a stopper's state with the experiment, so on its first report the stopper
    reads what the experiment directory already holds: a resumed search counts the epochs its
    trials trained before the interruption, the finished ones included."""

    def __init__(self, budget: float, experiment_path: str):
        self.budget, self.experiment_path = budget, experiment_path
        self.epochs: dict[str, float] | None = None

    def __call__(self, trial_id: str, result: dict) -> bool:
        self.epochs = self.recorded()
        self.epochs[trial_id] = max(self.epochs.get(trial_id, 0.0), float(result.get("epoch", 0.0)))
        return False

    def recorded(self) -> dict[str, float]:
        """The epochs counted so far; read from the experiment directory the first time, so a
        resumed search whose budget was already spent starts no new trial."""
        if self.epochs is None:
            self.epochs = recorded_epochs(self.experiment_path)
        return self.epochs

    @property
    def spent(self) -> float:
        return sum(self.recorded().values())

    def stop_all(self) -> bool:
        return self.spent >= self.budget - 1e-9
