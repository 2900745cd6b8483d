"""Each report's sample grid as a TensorBoard image, beside the scalars Ray's own TBXLoggerCallback
writes into the same trial folder, so `tensorboard --logdir EXPERIMENT` shows the curves and the
samples side by side.

The trainable saves every report's fixed-noise grid in its checkpoint (trainable.GRIDS, one
epoch_<epoch>.png per report, all of them in the latest checkpoint), which Ray has written to
storage before the report reaches the driver. On each report this callback reads the grids it has
not logged yet from the trial's newest checkpoint, and adds each as image "samples" at its
report's number (training_iteration, the step of Ray's scalars). It works from reports, not from
`on_checkpoint`: Ray never hands a callback the checkpoint of a trial's last report when a
stop-all (the trial-epoch budget) ends the search."""

import io
import time

from ray.tune import Callback

from tuner.resume import stored_checkpoints
from tuner.trainable import GRIDS

IMAGE_TAG = "samples"


def grid_epoch(name: str) -> float:
    return float(name.removeprefix("epoch_").removesuffix(".png"))


def grid_names(filesystem, checkpoint_path: str) -> list[str]:
    """A checkpoint's grid files in report order (by epoch)."""
    import pyarrow.fs
    selector = pyarrow.fs.FileSelector(f"{checkpoint_path}/{GRIDS}", allow_not_found=True)
    names = [info.base_name for info in filesystem.get_file_info(selector)
             if info.base_name.startswith("epoch_") and info.base_name.endswith(".png")]
    return sorted(names, key=grid_epoch)


def image_event(png: bytes, step: int):
    """A TensorBoard event holding one PNG as image IMAGE_TAG."""
    from PIL import Image
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.proto.summary_pb2 import Summary

    with Image.open(io.BytesIO(png)) as header:  # reads the size and mode, not the pixels
        width, height, channels = *header.size, len(header.getbands())
    image = Summary.Image(height=height, width=width, colorspace=channels, encoded_image_string=png)
    return Event(wall_time=time.time(), step=step, summary=Summary(value=[Summary.Value(tag=IMAGE_TAG, image=image)]))


def newest_checkpoint(trial) -> str | None:
    """The path of a trial's newest checkpoint folder on its storage filesystem, or None."""
    names = stored_checkpoints(trial.storage.storage_filesystem, trial.storage.trial_fs_path)
    return f"{trial.storage.trial_fs_path}/{names[-1]}" if names else None


class SampleGridImages(Callback):
    def __init__(self):
        self.writers, self.logged = {}, {}

    def log_grids(self, trial, filesystem, checkpoint_path: str) -> None:
        """Every grid of the checkpoint not logged yet, as an image at its report's number. The PNG
        goes into the event as it is; EventsWriter writes synchronously (SummaryWriter's queue
        thread may not have written an image before Ray syncs the folder to storage)."""
        from tensorboardX.event_file_writer import EventsWriter

        logged = self.logged.setdefault(trial, set())
        names = grid_names(filesystem, checkpoint_path)
        new = [(step, name) for step, name in enumerate(names, 1) if name not in logged]
        if not new:
            return
        if trial not in self.writers:
            trial.init_local_path()  # the driver's copy of the trial folder, synced to storage with Ray's files
            self.writers[trial] = EventsWriter(f"{trial.local_path}/events", filename_suffix=".samples")
        for step, name in new:
            with filesystem.open_input_file(f"{checkpoint_path}/{GRIDS}/{name}") as stream:
                self.writers[trial].write_event(image_event(stream.read(), step))
            logged.add(name)
        self.writers[trial].flush()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        checkpoint_path = newest_checkpoint(trial)
        if checkpoint_path is not None:
            self.log_grids(trial, trial.storage.storage_filesystem, checkpoint_path)

    def close(self, trial) -> None:
        writer = self.writers.pop(trial, None)
        if writer is not None:
            writer.close()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.close(trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.close(trial)

    def on_experiment_end(self, trials, **info):
        for trial in list(self.writers):
            self.close(trial)
