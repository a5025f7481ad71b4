"""Recipe configurations: one frozen dataclass, one small override per recipe.

A recipe is a `Config` (`schema`); variants change a few fields with
`dataclasses.replace`, and the command line changes more with
`override(config, ["epochs=3", "model_kwargs.width=8"])` (`overrides`).
`validate` checks every name and number before any data is loaded or model
built; `RECIPES` (`registry`) holds the registered configurations, and
`check_extras` (`extras`) the optional packages a run needs.
"""

from keras_wrs.recipes.config.extras import (
    MissingExtraError,
    check_extras,
    installed,
    required_extras,
)
from keras_wrs.recipes.config.overrides import (
    apply_settings,
    assigned_fields,
    from_dict,
    override,
    parse_value,
    to_dict,
)
from keras_wrs.recipes.config.registry import RECIPES, get_recipe, smoke
from keras_wrs.recipes.config.schema import (
    AUGMENTATIONS,
    BUILTIN_DATASETS,
    FIELD_TYPES,
    FREEZES,
    LR_SCALINGS,
    PRECISIONS,
    REGULARIZATIONS,
    SCHEDULES,
    STRATEGIES,
    Config,
    unknown_name,
)
from keras_wrs.recipes.config.validate import check_recipe_lr, check_total_steps, validate

__all__ = [
    "AUGMENTATIONS",
    "BUILTIN_DATASETS",
    "Config",
    "FIELD_TYPES",
    "FREEZES",
    "LR_SCALINGS",
    "MissingExtraError",
    "PRECISIONS",
    "RECIPES",
    "REGULARIZATIONS",
    "SCHEDULES",
    "STRATEGIES",
    "apply_settings",
    "assigned_fields",
    "check_extras",
    "check_recipe_lr",
    "check_total_steps",
    "from_dict",
    "get_recipe",
    "installed",
    "override",
    "parse_value",
    "required_extras",
    "smoke",
    "to_dict",
    "unknown_name",
    "validate",
]
