"""The paper's other foundation-model comparators built on the experts' backbone: Multi-Talent and Hermes.

Importing this package registers their config classes and builders, so :func:`mome.model.build_model`,
``save_model`` and ``load_model`` handle them like MoME (``mome.model`` imports it).
"""

from mome.model.baselines.conditioning import ConditionedNetwork
from mome.model.baselines.hermes import HermesConfig, HermesNet, HermesOutput
from mome.model.baselines.multitalent import MultiTalentConfig, MultiTalentNet, multitalent_config, select_heads
from mome.model.config import register_config_class

register_config_class(MultiTalentConfig)
register_config_class(HermesConfig)


def _register_builders() -> None:
    from mome.model import register_builder

    register_builder(MultiTalentConfig, MultiTalentNet)
    register_builder(HermesConfig, HermesNet)


_register_builders()

__all__ = ["ConditionedNetwork", "HermesConfig", "HermesNet", "HermesOutput", "MultiTalentConfig",
           "MultiTalentNet", "multitalent_config", "select_heads"]
