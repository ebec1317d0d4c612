"""Changing a configuration: dotted keys (``--set``, :func:`tfrs_pipeline.train`'s ``settings``), TOML files.

Examples:
    >>> config = apply_overrides(PipelineConfig(), {"retrieval.epochs": 3})
    >>> config.retrieval.epochs, changed_settings(config)
    (3, ['retrieval.epochs = 3'])
"""

from __future__ import annotations

import dataclasses
import decimal
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, published as tomli
    import tomli as tomllib

from tfrs_pipeline.config.sections import SETTINGS, PipelineConfig
from tfrs_pipeline.errors import ConfigError

#: The item type of each list setting, by its annotation.
_ITEM_TYPES = {"list[str]": str, "list[int]": int, "list[float]": float}


def _coerce(name: str, value: Any, default: Any, annotation: str = "") -> Any:
    """Converts ``value`` to the type of ``default`` (lists: the item type of ``annotation``) or raises a
    ConfigError naming ``name``."""
    parse = SETTINGS[name].parse if name in SETTINGS else None
    if parse is not None:
        return parse(name, value)
    if isinstance(value, bool) and not isinstance(default, bool):
        raise ConfigError(f"{name} must be of type {type(default).__name__}, got {value!r}")
    if isinstance(default, (int, float)) and not isinstance(default, bool) and isinstance(value, (list, dict)):
        raise ConfigError(f"{name} must be of type {type(default).__name__}, got {value!r}")
    if isinstance(default, str) and not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, got {value!r}")
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                lowered = value.strip().lower()
                if lowered not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return lowered in ("true", "1", "yes")
            return bool(value)
        if isinstance(default, (int, float)) and isinstance(value, str):
            # One rule for text, from --set or from a TOML string: the number it spells exactly ("32", "1e3").
            number = decimal.Decimal(value.strip())
            if isinstance(default, int) and not number.is_finite():
                raise ValueError(value)
            value = int(number) if isinstance(default, int) and number == number.to_integral_value() else float(number)
        if isinstance(default, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, list):
            items = value.split(",") if isinstance(value, str) else list(value)
            item_type = _ITEM_TYPES[annotation]
            if item_type is not str and any(isinstance(item, bool) for item in items):
                raise ValueError(value)
            return [item_type(item).strip() if item_type is str else item_type(item)
                    for item in items if str(item).strip() != ""]
        return str(value)
    except (TypeError, ValueError, ArithmeticError):  # decimal.InvalidOperation is an ArithmeticError
        raise ConfigError(
            f"{name} must be of type {type(default).__name__}, got {value!r}"
        ) from None


#: Keys of the ``[ranking]`` section, which held both the rating model and the list ranker, and their names now.
RENAMED_KEYS = {
    **{f"ranking.{key}": f"rating.{key}" for key in (
        "embedding_dim", "hidden_units", "cross_layer", "history_features", "history_sample", "side_features", "l2",
        "dropout", "learning_rate", "batch_size", "epochs", "patience", "reduce_lr_on_plateau")},
    "ranking.list_ranker": "ranker.enabled",
    **{f"ranking.list_{key}": f"ranker.{key}" for key in (
        "hidden_units", "learning_rate", "batch_size", "epochs", "patience", "neighbours", "item_model")},
}


def apply_overrides(config: PipelineConfig, overrides: dict[str, Any]) -> PipelineConfig:
    """A copy of ``config`` with dotted keys replaced, each value converted to the key's type.

    Args:
        config: the configuration to start from (left unchanged).
        overrides: ``{"section.key": value}``; strings are converted (``"16,8"`` to ``[16, 8]``,
            ``"true"`` to ``True``), as on the command line's ``--set``.

    Returns:
        The new configuration (not validated: call :meth:`PipelineConfig.validate`).

    Raises:
        ConfigError: an unknown or renamed key, or a value of the wrong type, named in the message.

    Examples:
        >>> apply_overrides(PipelineConfig(), {"rating.hidden_units": "16,8"}).rating.hidden_units
        [16, 8]
        >>> apply_overrides(PipelineConfig(), {"ranking.epochs": 3})
        Traceback (most recent call last):
        ...
        tfrs_pipeline.errors.ConfigError: ranking.epochs is now rating.epochs (the [ranking] section became [rating], the rating model, and [ranker], the list ranker)
    """
    config = dataclasses.replace(
        config, **{f.name: dataclasses.replace(getattr(config, f.name)) for f in dataclasses.fields(config)}
    )
    for dotted, value in overrides.items():
        if dotted in RENAMED_KEYS:
            raise ConfigError(f"{dotted} is now {RENAMED_KEYS[dotted]} (the [ranking] section became [rating], the "
                              "rating model, and [ranker], the list ranker)")
        section_name, _, key = dotted.partition(".")
        section = getattr(config, section_name, None)
        if section is None or not dataclasses.is_dataclass(section):
            raise ConfigError(f"unknown configuration section {section_name!r} in {dotted!r}")
        annotations = {f.name: f.type for f in dataclasses.fields(section)}
        if key not in annotations:
            raise ConfigError(f"unknown configuration key {dotted!r}; {section_name} has: {', '.join(annotations)}")
        setattr(section, key, _coerce(dotted, value, getattr(section, key), str(annotations[key])))
    return config


def from_dict(values: dict[str, Any], base: PipelineConfig | None = None) -> PipelineConfig:
    """Builds a configuration from nested dicts (a parsed TOML file), rejecting unknown keys."""
    overrides = {}
    for section, entries in values.items():
        if not isinstance(entries, dict):
            raise ConfigError(f"configuration section {section!r} must be a table, got {entries!r}")
        for key, value in entries.items():
            overrides[f"{section}.{key}"] = value
    return apply_overrides(base or PipelineConfig(), overrides)


def read_toml_file(path: str | Path, what: str = "configuration file") -> dict[str, Any]:
    """A TOML file's tables; a missing, unreadable or invalid file raises a ConfigError naming it."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder; expected a TOML file")
    if not path.exists():
        raise ConfigError(f"{what} {path} does not exist")
    if not path.is_file():
        raise ConfigError(f"{what} {path} is not a regular file (a FIFO or a device); expected a TOML file")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{error.object[error.start]:02x} at position {error.start}); "
                          f"save the {what} as UTF-8") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot be read ({error.strerror})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None


def load_toml(path: str | Path, base: PipelineConfig | None = None) -> PipelineConfig:
    """Reads a TOML configuration file, such as a model's ``config.toml``.

    Args:
        path: the file; sections and keys as in :class:`PipelineConfig` (``[retrieval]``, ``epochs = 3``).
        base: the configuration the file's values replace (default: the built-in one).

    Returns:
        The configuration (not validated).

    Raises:
        ConfigError: a missing, unreadable or invalid file, or a bad key, naming the file.

    Examples:
        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "my.toml"
        >>> _ = path.write_text("[retrieval]\\nembedding_dim = 32\\n")
        >>> load_toml(path).retrieval.embedding_dim
        32
    """
    values = read_toml_file(path)
    try:
        return from_dict(values, base)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def to_dict(config: PipelineConfig) -> dict[str, dict[str, Any]]:
    """The configuration as nested plain dicts (JSON- and TOML-ready)."""
    return dataclasses.asdict(config)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def to_toml(config: PipelineConfig) -> str:
    """The configuration as TOML text that :func:`load_toml` reads back unchanged."""
    lines = []
    for section, entries in to_dict(config).items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in entries.items())
        lines.append("")
    return "\n".join(lines)


def changed_settings(config: PipelineConfig) -> list[str]:
    """``section.key = value`` for each setting that differs from the built-in default, in file order."""
    defaults = to_dict(PipelineConfig())
    return [f"{section}.{key} = {_toml_value(value)}"
            for section, entries in to_dict(config).items()
            for key, value in entries.items() if defaults[section][key] != value]
