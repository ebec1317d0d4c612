"""What the commands share: the options generated from the settings' declarations, the
configuration they make, the parser whose usage errors are one line, and argparse types whose
messages say what was expected."""

from __future__ import annotations

import argparse
import re

from tfrs_pipeline.config import SETTINGS, DataConfig, PipelineConfig, apply_overrides, load_toml, to_dict
from tfrs_pipeline.errors import ConfigError, PipelineError


class Renamed(argparse.Action):
    """An option that was renamed: using it is a usage error naming the new one."""

    def __init__(self, option_strings, dest, new: str, **kwargs) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string} is now {self.new}")


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit code 2), like every other user error.

    Values that start with a minus sign and a digit (``--rating-scale -10-10``, ``--k -3``)
    are read as values, not as unknown options: no option here starts with a digit.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-\.?\d")

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_setting_options(group, keys) -> None:
    """Adds the command-line option of each setting in ``keys``, as its declaration in
    :mod:`~tfrs_pipeline.config` spells it (:data:`~tfrs_pipeline.config.SETTINGS`): its name, choices,
    help, and its type (a whole number, a real number, a flag or text read by the configuration)."""
    defaults = {f"{section}.{key}": value for section, entries in to_dict(PipelineConfig()).items()
                for key, value in entries.items()}
    for key in keys:
        spec = SETTINGS[key]
        options = {"dest": key, "help": spec.help}
        if isinstance(defaults[key], bool):
            options.update(action="store_true", default=None)
        else:
            if spec.choices:
                options["choices"] = spec.choices
            if isinstance(defaults[key], (int, float)):
                options["type"] = type(defaults[key])
            if spec.const is not None:
                options.update(nargs="?", const=spec.const)
            if not spec.choices:  # "--user-col USER_COL", not the dotted key
                options["metavar"] = spec.metavar or spec.cli.lstrip("-").upper().replace("-", "_")
        group.add_argument(spec.cli, **options)


#: The data options every command that reads data takes: each data setting with a command-line option.
DATA_OPTIONS = [key for key, spec in SETTINGS.items() if key.startswith("data.") and spec.cli]


#: The training options of ``train`` and ``benchmark`` besides the data's and the epochs'.
TRAINING_OPTIONS = ["split.kind", "split.test_fraction", "split.seed", "runtime.strategy", "runtime.mixed_precision",
                    "runtime.seed", "runtime.backup_dir", "runtime.verbose"]


def add_data_options(parser: argparse.ArgumentParser) -> None:
    add_setting_options(parser.add_argument_group("data (default: the configuration's, else synthetic:100k)"),
                         DATA_OPTIONS)


def setting_overrides(args: argparse.Namespace) -> dict[str, object]:
    """The settings given on the command line, by dotted key (an option not given is None: not a setting)."""
    return {key: getattr(args, key) for key in SETTINGS if getattr(args, key, None) is not None}


def data_overrides(args: argparse.Namespace) -> dict[str, object]:
    return {key: value for key, value in setting_overrides(args).items() if key.startswith("data.")}


def data_config(args: argparse.Namespace) -> DataConfig:
    return apply_overrides(PipelineConfig(), data_overrides(args)).validate().data


def training_overrides(args: argparse.Namespace) -> dict[str, object]:
    overrides = setting_overrides(args)
    for key, value in (("retrieval.epochs", args.retrieval_epochs or args.epochs),
                       ("rating.epochs", args.rating_epochs or args.epochs)):
        if value is not None:
            overrides[key] = value
    for assignment in args.set or []:
        key, sep, value = assignment.partition("=")
        if not sep:
            raise ConfigError(f"--set expects KEY=VALUE (such as retrieval.embedding_dim=64), got {assignment!r}")
        overrides[key.strip()] = value.strip()
    return overrides


def load_config(config_path: str | None, overrides: dict[str, object]) -> PipelineConfig:
    """The default configuration, updated from a TOML file and then from options."""
    base = load_toml(config_path) if config_path else PipelineConfig()
    return apply_overrides(base, overrides).validate()


#: The largest ``--k`` and ``--requests`` the command line takes.
MAX_COUNT = 100_000


def synthetic_sizes(text: str) -> list[str]:
    from tfrs_pipeline.data.synthetic import parse_size

    sizes = [part.strip() for part in text.split(",") if part.strip()]
    try:
        for size in sizes:
            parse_size(size)
    except PipelineError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if not sizes:
        raise argparse.ArgumentTypeError(f"expected synthetic sizes such as 100k,1m,20m, got {text!r}")
    return sizes


def count_list(low: int, high: int, example: str, what: str):
    """A comma-separated list of whole numbers from ``low`` to ``high`` (argparse type)."""

    def parse(text: str) -> list[int]:
        try:
            counts = [int(part) for part in text.split(",") if part.strip()]
        except ValueError:
            counts = []
        if not counts or not all(low <= c <= high for c in counts):
            raise argparse.ArgumentTypeError(f"expected {what} from {low:,} to {high:,} such as {example}, got {text!r}")
        return counts

    return parse


def byte_count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 2**30:
        raise argparse.ArgumentTypeError(f"expected a number of bytes from 1 to {2**30:,}, got {text!r}")
    return int(text)


def number_in(low: float, high: float, unit: str, low_included: bool):
    """An argparse type: a number of ``unit`` from ``low`` (included or not) to ``high``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not (low <= value if low_included else low < value) or not value <= high:
            bound = "from" if low_included else "above"
            raise argparse.ArgumentTypeError(f"expected {unit} {bound} {low:g} up to {high:g}, got {text!r}")
        return value

    return parse


seconds = number_in(0, 86_400, "seconds", low_included=False)


milliseconds = number_in(0, 1000, "milliseconds", low_included=True)


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if not 1 <= value <= MAX_COUNT:
        raise argparse.ArgumentTypeError(f"expected a positive integer up to {MAX_COUNT:,}, got {value}")
    return value


def port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a TCP port number from 0 to 65535, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a TCP port number from 0 to 65535, got {value}")
    return value

