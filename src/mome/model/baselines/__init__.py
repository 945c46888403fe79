"""The paper's other comparators: Multi-Talent and Hermes (on the experts' backbone) and SAM-Med3D.

Importing this package registers their config classes and builders, so :func:`mome.model.build_model`,
``save_model`` and ``load_model`` handle them like MoME (``mome.model`` imports it).
"""

from mome.model.baselines.conditioning import ConditionedNetwork
from mome.model.baselines.hermes import HermesConfig, HermesNet, HermesOutput
from mome.model.baselines.multitalent import MultiTalentConfig, MultiTalentNet, multitalent_config, select_heads
from mome.model.baselines.sam_med3d import SAMMed3D, SAMMed3DConfig, sam_med3d_config
from mome.model.config import register_config_class

register_config_class(MultiTalentConfig)
register_config_class(HermesConfig)
register_config_class(SAMMed3DConfig)


def _register_builders() -> None:
    from mome.model import register_builder

    register_builder(MultiTalentConfig, MultiTalentNet)
    register_builder(HermesConfig, HermesNet)
    register_builder(SAMMed3DConfig, SAMMed3D)


_register_builders()

__all__ = ["ConditionedNetwork", "HermesConfig", "HermesNet", "HermesOutput", "MultiTalentConfig",
           "MultiTalentNet", "SAMMed3D", "SAMMed3DConfig", "multitalent_config", "sam_med3d_config",
           "select_heads"]
