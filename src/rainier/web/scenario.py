"""The web app's training scenario: now :mod:`rainier.api.training_scenario`, re-exported where it was."""

from rainier.api.training_scenario import (
    FIELDS,
    KIND,
    MAX_CONFIG_CHARS,
    MAX_SCENARIO_BYTES,
    FieldError,
    TrainingScenario,
    scenario_from_mapping,
    scenario_from_yaml,
)

__all__ = [
    "FIELDS",
    "KIND",
    "MAX_CONFIG_CHARS",
    "MAX_SCENARIO_BYTES",
    "FieldError",
    "TrainingScenario",
    "scenario_from_mapping",
    "scenario_from_yaml",
]
