"""The only reader of YAML: config text -> frozen, validated ``Config``.

Every section is a frozen dataclass. Validation collects every problem (unknown key with a "did you
mean", wrong type, missing file, bad stage list) and raises one ConfigError whose lines name the YAML key.
``core``: the top level, forecast, fit, pipelines; ``data``: the data section; ``engine``: where simulations
run; ``reader``: the helpers.
"""

from forecaster.config.core import (PIPELINE_ATTR, CalendarConfig, Config, FitConfig, ForecastConfig, PipelineSpec,
                                    check_window, dump_config, identity_sha256, load_config, parse_config)
from forecaster.config.data import (COLUMN_KEYS, DATE_COLUMNS, DEAL_COLUMNS, FORMATS, HISTORY_COLUMNS,
                                    OPTIONAL_DEAL_COLUMNS, OPTIONAL_HISTORY_COLUMNS, STATUSES, AmountFill, AmountFormat,
                                    CurrencySpec, DataConfig, JoinSpec)
from forecaster.config.engine import ENGINES, EngineConfig, check_engine

__all__ = ["AmountFill", "AmountFormat", "COLUMN_KEYS", "CalendarConfig", "Config", "CurrencySpec", "DATE_COLUMNS",
           "DEAL_COLUMNS", "DataConfig", "ENGINES", "EngineConfig", "check_engine", "FORMATS", "FitConfig",
           "ForecastConfig", "HISTORY_COLUMNS", "JoinSpec",
           "OPTIONAL_DEAL_COLUMNS", "OPTIONAL_HISTORY_COLUMNS", "PIPELINE_ATTR", "PipelineSpec", "STATUSES",
           "check_window", "dump_config", "identity_sha256", "load_config", "parse_config"]
