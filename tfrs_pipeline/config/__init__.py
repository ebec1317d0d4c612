"""Configuration: one dataclass tree, loaded from TOML or the command line, saved beside every model.

Each setting is declared once, as its field: its default and, with :func:`setting`, its range,
choices, command-line option, :func:`tfrs_pipeline.train` keyword and help. Validation, ``--set``,
TOML, the command line and the messages' hints read that declaration (:data:`SETTINGS`).

* ``setting``: what one declaration holds (:class:`Setting`, :func:`setting`).
* ``sections``: the sections (:class:`PipelineConfig` and one dataclass per stage) and the views of
  their declarations (:data:`SETTINGS`, :data:`CHOICES`, :func:`python_keywords`, :func:`option_hints`).
* ``overrides``: dotted keys and TOML files in and out (:func:`apply_overrides`, :func:`load_toml`,
  :func:`to_toml`).

Examples:
    >>> config = apply_overrides(PipelineConfig(), {"retrieval.epochs": 3, "ranker.enabled": False})
    >>> config.retrieval.epochs, config.ranker.enabled
    (3, False)
    >>> print(to_toml(config).splitlines()[0])
    [data]
"""

from tfrs_pipeline.config.overrides import (
    RENAMED_KEYS,
    apply_overrides,
    changed_settings,
    from_dict,
    load_toml,
    read_toml_file,
    to_dict,
    to_toml,
)
from tfrs_pipeline.config.sections import (
    CHOICES,
    FLOAT_RANGES,
    INT_RANGES,
    SETTINGS,
    DataConfig,
    PipelineConfig,
    RankerConfig,
    RatingConfig,
    RetrievalConfig,
    RuntimeConfig,
    ServingConfig,
    SplitConfig,
    option_hints,
    python_keywords,
)
from tfrs_pipeline.config.setting import Setting, parse_range, setting

__all__ = [
    "CHOICES", "FLOAT_RANGES", "INT_RANGES", "RENAMED_KEYS", "SETTINGS", "DataConfig", "PipelineConfig", "RankerConfig",
    "RatingConfig", "RetrievalConfig", "RuntimeConfig", "ServingConfig", "Setting", "SplitConfig", "apply_overrides",
    "changed_settings", "from_dict", "load_toml", "option_hints", "parse_range", "python_keywords", "read_toml_file",
    "setting", "to_dict", "to_toml",
]
