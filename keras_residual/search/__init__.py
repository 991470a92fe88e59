"""Architecture search with keras-tuner: space, tuners, results, distributed mode."""

from keras_residual.search.config import SearchConfig, parse_duration
from keras_residual.search.results import (
    collect_rows,
    format_table,
    pareto_figure,
    pareto_front,
    progress_figure,
    promotion_ladder,
    write_results,
)
from keras_residual.search.run import retrain, run_search
from keras_residual.search.space import (
    DEFAULT_SPACES,
    ResidualHyperModel,
    default_space_for,
    downsampling,
    input_scales,
    load_space_file,
    resolve_space,
)
from keras_residual.search.tuner import TUNERS

__all__ = [
    "DEFAULT_SPACES",
    "ResidualHyperModel",
    "SearchConfig",
    "TUNERS",
    "collect_rows",
    "default_space_for",
    "downsampling",
    "format_table",
    "input_scales",
    "load_space_file",
    "pareto_figure",
    "pareto_front",
    "progress_figure",
    "promotion_ladder",
    "resolve_space",
    "retrain",
    "run_search",
    "parse_duration",
    "write_results",
]
