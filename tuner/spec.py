"""SearchSpec: everything one experiment is, in one frozen, validated, JSON-able value.

The CLI (tuner/run.py) only builds one; notebooks and the benchmarks build one directly:

    from tuner.spec import SearchSpec, preset
    from tuner.build import tune
    spec = preset("smoke", name="try", fixed={"width": 16})   # or SearchSpec(...)
    results = tune(spec)                                      # a ray.tune.ResultGrid

Validation happens here, once, when a spec is built: every bad value is one UserInputError
naming the flag. The spec is written as SPEC_FILE beside Ray's state; `--resume` reads it back.
"""

import dataclasses
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from models.config import typed_fields
from models.data import DATASETS, USER_DATA_OPTIONS
from models.errors import UserInputError, require_choice, require_non_negative, require_positive, require_seed
from models.evaluation.features import FEATURE_DIM
from models.toy_data import TOY_SETS
from search_spaces import SPACES
from search_spaces.recipes import RECIPES
from tuner.objective import NON_HYPERPARAMETER_KEYS
from tuner.scheduler import ASHA_VARIANTS

SPEC_FILE = "search-spec.json"
PRESET_SPACES = ("full", "demo", "smoke")  # TPE over search_spaces.SPACES
LIST_SPACES = ("seed-grid", "configs")  # fixed lists: the labs' grid, or `trial_configs`
MODELS = ("gan", "vae", "both")
RESIZABLE_DATASETS = ("image_folder", "idx")  # the user's own images: --image-size applies to them
DEFAULT_NUM_SAMPLES = 20
# What --resume takes from the flags given now; everything else comes from the interrupted run's
# spec, since a different --limit or --seed would silently resume trials on other data.
RESUME_FROM_FLAGS = ("name", "storage_path", "data_dir", "gpus_per_trial", "cpus_per_trial")


@dataclass(frozen=True)
class SearchSpec:
    """One experiment. The defaults are the `full` preset's."""
    name: str | None = None  # None: gantune-<space>-<time>
    storage_path: str = "runs"  # a local directory (made absolute) or a pyarrow URI such as s3://bucket/path
    space: str = "full"  # "full", "demo", "smoke", "seed-grid", "configs" or "package.module:function"
    model: str = "gan"  # built-in trainer(s) of the preset spaces: gan, vae or both
    trainer: str | None = None  # "package.module:factory" (tuner/trainers.py's protocol); replaces model
    datasets: tuple = ("fashion_mnist",)
    data_dir: str | None = None  # None: $GANTUNE_DATA_DIR or ~/.cache/gantune/datasets
    image_size: int | None = None  # image_folder, idx: resize to this square size (image_folder's default: 64)
    idx_images: str | None = None  # dataset idx: the IDX image file ...
    idx_labels: str | None = None  # ... and its label file
    limit: int | None = None  # train on a fixed random subset of this many images
    fixed: dict = field(default_factory=dict)  # hyperparameters pinned for every trial, never searched
    trial_configs: tuple = ()  # space "configs": exactly these trial configs, once each, in order
    start_from: tuple = ()  # points TPE evaluates first (search_spaces/recipes.py), then it samples as usual
    epochs: int = 10  # per trial; also ASHA's max_t
    num_samples: int | None = None  # trials; None: DEFAULT_NUM_SAMPLES, or a list's length
    budget_trial_epochs: float | None = None  # stop the search once its trials trained this many epochs in all
    eval_samples: int = 2000
    early_stop: bool = True  # ASHA + the collapse stopper; False: every trial runs to the end
    asha: str = "reranking"  # a key of tuner.scheduler.ASHA_VARIANTS: reranking or ray (Ray's own ASHA)
    grace_period: int = 1
    reduction_factor: float = 2
    random_trials: int = 10  # Optuna's n_startup_trials
    collapse_patience: int = 2
    collapse_warmup: float | None = None  # None: a third of the epochs, rounded up
    steps_per_report: int = 0  # 0: one report per epoch
    gpus_per_trial: float | None = None  # None: 0.25 if the cluster has GPUs, else 0
    cpus_per_trial: float = 1
    max_concurrent: int | None = None
    keep_checkpoints: int = 2
    max_failures: int = 2
    seed: int = 0

    def __post_init__(self):
        set_field = object.__setattr__.__get__(self)  # frozen: normalise once, here
        for key in ("storage_path", "data_dir", "idx_images", "idx_labels"):
            if isinstance(getattr(self, key), os.PathLike):
                set_field(key, os.fspath(getattr(self, key)))
        for key in ("idx_images", "idx_labels"):  # read on the driver, also when it resumes from elsewhere
            if getattr(self, key) is not None:
                set_field(key, os.path.abspath(os.path.expanduser(getattr(self, key))))
        for key, value in typed_fields(self, flag).items():  # JSON and notebooks can hand any type
            set_field(key, value)
        set_field("datasets", tuple(self.datasets))
        set_field("trial_configs", tuple(dict(c) for c in self.trial_configs))
        set_field("start_from", tuple(dict(p) for p in self.start_from))
        set_field("fixed", dict(self.fixed))
        if "://" not in self.storage_path:  # absolute, but through its symlinks: a mount point stays one
            set_field("storage_path", os.path.abspath(os.path.expanduser(self.storage_path)))
        if self.name is None:
            label = self.space if self.space in PRESET_SPACES + LIST_SPACES else "custom"
            set_field("name", f"gantune-{label}-{time.strftime('%Y%m%d-%H%M%S')}")
        self.validate()

    def validate(self) -> None:
        """Every value a user can give, checked once; the error names the flag."""
        for key in ("epochs", "eval_samples", "cpus_per_trial", "reduction_factor", "collapse_patience",
                    "keep_checkpoints", "grace_period"):
            require_positive(flag(key), getattr(self, key))
        for key in ("num_samples", "limit", "max_concurrent", "budget_trial_epochs", "image_size"):
            if getattr(self, key) is not None:
                require_positive(flag(key), getattr(self, key))
        for key in ("max_failures", "steps_per_report", "random_trials"):
            require_non_negative(flag(key), getattr(self, key))
        if self.collapse_warmup is not None:
            require_non_negative("collapse-warmup", self.collapse_warmup)
        if self.eval_samples < FEATURE_DIM:
            raise UserInputError(f"eval-samples: must be at least {FEATURE_DIM}, the feature dimension FID needs, "
                                 f"got {self.eval_samples}")
        if self.reduction_factor <= 1:
            raise UserInputError(f"reduction-factor: must be > 1 (ASHA keeps the top 1/N at each rung), "
                                 f"got {self.reduction_factor:g}")
        if self.early_stop and self.grace_period > self.epochs:
            raise UserInputError(f"grace-period: {self.grace_period} is more than --epochs {self.epochs}; ASHA "
                                 "cannot stop a trial before it ends")
        require_seed("seed", self.seed)
        gpus = self.gpus_per_trial
        if gpus is not None and (gpus < 0 or (gpus > 1 and gpus != int(gpus))):
            raise UserInputError(f"gpus-per-trial: {gpus} is not allowed; use a fraction in [0, 1] or a whole number")
        require_choice("model", self.model, MODELS)
        require_choice("asha", self.asha, ASHA_VARIANTS)
        if not self.datasets:
            raise UserInputError("dataset: name at least one dataset")
        for name in self.datasets:
            require_choice("dataset", name, DATASETS)
        if self.space != "seed-grid" and len(self.datasets) > 1:
            raise UserInputError("dataset: an Optuna search takes one dataset; run one search per dataset")
        if not self.name or "/" in self.name or self.name in (".", ".."):
            raise UserInputError(f"name: {self.name!r} must be a non-empty folder name")
        self.validate_space()
        self.validate_fixed()
        self.validate_trial_configs()
        self.validate_points_data()
        self.validate_start_from()
        self.validate_limit()
        self.validate_data_options()

    def validate_data_options(self) -> None:
        """--idx-images/--idx-labels belong to --dataset idx, which needs both; --image-size resizes only
        the sets that are not a fixed size."""
        if "idx" in self.datasets and not (self.idx_images and self.idx_labels):
            raise UserInputError("idx-images: --dataset idx needs --idx-images FILE and --idx-labels FILE")
        if (self.idx_images or self.idx_labels) and "idx" not in self.datasets:
            raise UserInputError(f"idx-images: the IDX files are read only with --dataset idx, not "
                                 f"{', '.join(self.datasets)}")
        if self.image_size is not None and not set(self.datasets) & set(RESIZABLE_DATASETS):
            raise UserInputError(f"image-size: resizes {' and '.join(RESIZABLE_DATASETS)} images; "
                                 f"{', '.join(self.datasets)} keep their own size")

    @property
    def data_options(self) -> dict:
        """What load_dataset and the evaluator need beyond the name and data_dir."""
        return {key: getattr(self, key) for key in USER_DATA_OPTIONS}

    def validate_space(self) -> None:
        from tuner.trainers import load_reference

        if self.space not in PRESET_SPACES + LIST_SPACES:
            if ":" not in self.space:
                raise UserInputError(f"space: {self.space!r} is not one of {', '.join(PRESET_SPACES + LIST_SPACES)} "
                                     "or package.module:function")
            load_reference("space", self.space)
            if self.model == "both" and self.trainer is None:
                raise UserInputError("model: 'both' picks between the built-in spaces; with your own --space "
                                     "name one model or a --trainer")
        elif self.space in PRESET_SPACES and self.trainer is None and (self.space, self.model) not in SPACES:
            searched = [model for space, model in SPACES if space == self.space]
            raise UserInputError(f"model: --space {self.space} searches {' or '.join(searched)}, not {self.model!r}")
        if self.trainer is not None:
            load_reference("trainer", self.trainer)
        if (self.space == "configs") != bool(self.trial_configs):
            raise UserInputError("space: 'configs' runs trial_configs (--configs FILE), which only it uses; give both "
                                 "or neither")
        if self.space in LIST_SPACES and self.num_samples is not None:
            raise UserInputError(f"num-samples: --space {self.space} runs each of its configs once; leave it out")

    def validate_fixed(self) -> None:
        """Pinned hyperparameters: no run settings, and a value the built-in trainer accepts."""
        settings = sorted(set(self.fixed) & set(NON_HYPERPARAMETER_KEYS))
        if settings:
            raise UserInputError(f"fixed: {', '.join(settings)}: run settings, not hyperparameters; set them "
                                 "with their own flags (--dataset, --epochs, --model, --seed)")
        if self.trainer is None and self.model in ("gan", "vae") and self.fixed:
            config_for(self.model, self.fixed, "fixed")

    def validate_trial_configs(self) -> None:
        """The configurations of space "configs": hyperparameters (and which built-in model) only, each
        a valid config of its model with the pinned values, so a typo fails here, not in a trial."""
        for number, point in enumerate(self.trial_configs, 1):
            where = f"configs: configuration {number}"
            settings = sorted(set(point) & set(NON_HYPERPARAMETER_KEYS) - {"model"})
            if settings:
                raise UserInputError(f"{where}: {', '.join(settings)}: run settings, not hyperparameters; set them "
                                     "with their own flags (--dataset, --epochs, --seed)")
            if self.trainer is None:
                model = point.get("model", self.model)
                if model not in ("gan", "vae"):
                    raise UserInputError(f"{where}: model {model!r}: each configuration trains gan or vae")
                config_for(model, {**point, **self.fixed}, where)

    def validate_points_data(self) -> None:
        """A 2-D toy set holds points, which the VAE and the DCGAN (images) cannot train: a built-in
        space or list on one must train GANs with the MLP pair, pinned (--fixed arch=mlp) or in every
        configuration, or every trial would fail once Ray has started it."""
        toy = [name for name in self.datasets if name in TOY_SETS]
        if not toy or self.trainer is not None or ":" in self.space:
            return
        numbered = enumerate(self.trial_configs, 1) if self.space == "configs" else [(None, {})]
        for number, config in numbered:
            config = {**config, **self.fixed}
            if config.get("model", self.model) != "gan" or config.get("arch") != "mlp":
                where, fix = (("dataset", "--model gan --fixed arch=mlp") if number is None else
                              (f"configs: configuration {number}", "model: gan and arch: mlp in it"))
                raise UserInputError(f"{where}: {toy[0]} holds 2-D points, which only a GAN with arch mlp trains; "
                                     f"use {fix}")

    def validate_start_from(self) -> None:
        """Start points: only for a TPE space; hyperparameters (and which built-in model) only, each a
        valid config of the model it is for."""
        if self.start_from and self.space in LIST_SPACES:
            raise UserInputError(f"start-from: --space {self.space} runs a fixed list; start points are for a search")
        for point in self.start_from:
            settings = sorted(set(point) & set(NON_HYPERPARAMETER_KEYS) - {"model"})
            if settings:
                raise UserInputError(f"start-from: {', '.join(settings)}: run settings, not hyperparameters")
            model = point.get("model", self.trainer or self.model)
            expected = (self.trainer,) if self.trainer else ("gan", "vae") if self.model == "both" else (self.model,)
            if model not in expected:
                raise UserInputError(f"start-from: a point for model {model!r} cannot start a search of "
                                     f"{' or '.join(expected)}" + (" (name its model: gan or vae)"
                                                                   if model == "both" else ""))
            if self.trainer is None:
                config_for(model, point, "start-from")

    def validate_limit(self) -> None:
        """--limit below a batch size fails every trial that draws it (trainers take whole batches),
        and only once Ray has started and retried it: refused here instead. (Evaluation needs
        nothing of the limited set: it scores against the whole training split.)"""
        if self.limit is None:
            return
        numbers = [size for size in batch_sizes(self) if isinstance(size, (int, float)) and not isinstance(size, bool)]
        largest = max(numbers, default=None)  # a plug-in's batch_size may be anything
        if largest is not None and self.limit < largest:
            raise UserInputError(f"limit: {self.limit} images are fewer than one batch of {largest}, a batch size "
                                 f"this search's trials may use; give --limit {largest} or more, or pin a smaller "
                                 "batch with --fixed batch_size=N")

    @property
    def warmup(self) -> float:
        """Epochs whose collapsed verdicts never stop a trial (young GANs cover few classes)."""
        return math.ceil(self.epochs / 3) if self.collapse_warmup is None else self.collapse_warmup

    @property
    def experiment_path(self) -> str:
        return f"{self.storage_path.rstrip('/')}/{self.name}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "SearchSpec":
        return cls(**json.loads(text))

    def save(self) -> None:
        """Write SPEC_FILE into the experiment directory (local or in a bucket)."""
        filesystem, path = spec_file(self.experiment_path)
        filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with filesystem.open_output_stream(path) as out:
            out.write(self.to_json().encode())

    def resumed(self) -> "SearchSpec":
        """The interrupted run's spec with only RESUME_FROM_FLAGS taken from this one; says on
        stderr which of this spec's other values it overrides."""
        import pyarrow.fs
        filesystem, path = spec_file(self.experiment_path)
        if filesystem.get_file_info(path).type == pyarrow.fs.FileType.NotFound:
            raise UserInputError(f"resume: no {SPEC_FILE} in {self.experiment_path}; give the --name and "
                                 "--storage-path of an experiment this version of tuner/run.py started")
        with filesystem.open_input_stream(path) as stream:
            text = stream.read().decode(errors="replace")
        try:
            saved = SearchSpec.from_json(text)
        except (ValueError, TypeError) as err:  # not JSON, not an object, unknown fields, a bad value
            raise UserInputError(f"resume: {SPEC_FILE} in {self.experiment_path} is not a valid spec ({err})"
                                 .split("\n")[0]) from None
        own = {k: getattr(self, k) for k in RESUME_FROM_FLAGS}
        changed = [f.name for f in dataclasses.fields(self) if f.name not in own
                   and getattr(self, f.name) != getattr(saved, f.name)]
        if changed:
            print(f"resume: using the interrupted run's {', '.join(map(flag, changed))} (from {SPEC_FILE})",
                  file=sys.stderr)
        return dataclasses.replace(saved, **own)


def config_for(model: str, values: dict, field_flag: str):
    """The built-in model's config of a dict of hyperparameters ("model" ignored); an error names
    `field_flag` and the key."""
    from models.config import GANConfig, VAEConfig
    hyperparameters = {k: v for k, v in values.items() if k != "model"}
    try:
        return (GANConfig if model == "gan" else VAEConfig).from_dict(hyperparameters)
    except UserInputError as err:
        raise UserInputError(f"{field_flag}: {err}") from None


def batch_sizes(spec: SearchSpec) -> set[int]:
    """The batch sizes trials of `spec` may train with: a pinned one; else each listed config's or
    start point's, and every choice the space offers (one draw through the same function TPE samples,
    read from Optuna's record of it). A built-in model's trial without one uses its config's default;
    a plug-in's without one is not known."""
    import optuna

    from tuner.build import search_function, trial_configs
    if "batch_size" in spec.fixed:
        return {spec.fixed["batch_size"]}
    if spec.space in LIST_SPACES:
        configs = trial_configs(spec)
    else:
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created" line
        try:
            trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=spec.seed)).ask()
        finally:
            optuna.logging.set_verbosity(verbosity)
        configs = [search_function(spec)(trial), *spec.start_from]
        searched = trial.distributions.get("batch_size")
        if isinstance(searched, optuna.distributions.CategoricalDistribution):
            return set(searched.choices) | {c["batch_size"] for c in spec.start_from if "batch_size" in c}
    sizes = set()
    for config in configs:
        model = config.get("model", spec.trainer or spec.model)
        if "batch_size" in config:
            sizes.add(config["batch_size"])
        elif model in ("gan", "vae"):
            sizes.add(config_for(model, {}, "limit").batch_size)
    return sizes


def flag(key: str) -> str:
    """A spec field as its CLI flag is named in messages."""
    return {"datasets": "dataset"}.get(key, key).replace("_", "-")


def spec_file(experiment_path: str) -> tuple:
    """(pyarrow filesystem, path) of an experiment's SPEC_FILE."""
    import pyarrow.fs
    filesystem, root = pyarrow.fs.FileSystem.from_uri(experiment_path)
    return filesystem, f"{root.rstrip('/')}/{SPEC_FILE}"


PRESETS = {  # what each preset space changes from SearchSpec's defaults; explicit values override them
    "full": {},
    # `make tune`: about four minutes on a 2-core CPU, long enough for a healthy best trial with
    # recognisable garments, and for ASHA (rungs 1, 2, 4) and the collapse stopper (after a 3-epoch
    # warm-up, patience 2) to act
    "demo": dict(model="gan", num_samples=12, epochs=8, limit=20000, eval_samples=1000,
                 start_from=(RECIPES["fast-hinge"].config,)),
    "smoke": dict(num_samples=4, epochs=2, limit=2000, eval_samples=500),
    "seed-grid": dict(model="both", datasets=("mnist", "fashion_mnist"), early_stop=False),
    "configs": dict(early_stop=False),  # a comparison: every configuration runs to the end
}


def preset(space: str = "full", **values) -> SearchSpec:
    """The spec of a preset space (or of "full"'s settings around your own space function), with
    `values` overriding any of its fields."""
    base = PRESETS.get(space, PRESETS["full"])
    return SearchSpec(space=space, **{**base, **values})


class ConfigsLoader(yaml.SafeLoader):
    """YAML 1.1 reads 5e-5 (no dot) as a string; in a configurations file it is the number."""


ConfigsLoader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
                                    list("-+.0123456789"))


def read_configs_file(path) -> tuple[dict, ...]:
    """The configurations of a --configs file (SearchSpec.trial_configs): a list of mappings of
    hyperparameters, in JSON when the name ends in .json, else in YAML. A problem is one error
    naming the file; the values are checked when the spec is built."""
    path = Path(path)
    is_json = path.suffix.lower() == ".json"
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise UserInputError(f"configs: {path}: cannot be read ({getattr(err, 'strerror', None) or err})") from None
    try:
        configs = json.loads(text) if is_json else yaml.load(text, Loader=ConfigsLoader)
    except json.JSONDecodeError as err:
        raise UserInputError(f"configs: {path}: not valid JSON ({err.msg} at line {err.lineno}, column "
                             f"{err.colno})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UserInputError(f"configs: {path}: not valid YAML ({getattr(err, 'problem', None) or err}{where})"
                             .split("\n")[0]) from None
    if not isinstance(configs, list) or not configs:
        found = "nothing" if configs is None or configs == [] else f"a {type(configs).__name__}"
        raise UserInputError(f"configs: {path}: expected a list of configurations, found {found}")
    for number, config in enumerate(configs, 1):
        if not isinstance(config, dict) or not all(isinstance(key, str) for key in config):
            raise UserInputError(f"configs: {path}: configuration {number} is a {type(config).__name__}, not a "
                                 "mapping of hyperparameter names to values")
    return tuple(configs)
