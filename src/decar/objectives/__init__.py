"""Pretraining methods as plug-ins: ``create_objective(cfg.method, cfg.objective, encoder, num_samples)``.

- ``deepcluster_v1``: the paper's first method (per-epoch feature pass, PCA, k-means, new top layer).
- ``dcv2``: DeepCluster-v2, the paper's later variant (memory bank, spherical k-means, fixed prototypes).
- ``online``: online clustering, the paper's future work (two views, streaming centroids, Sinkhorn, no epoch stall).
"""

from decar.objectives.base import (
    EpochContext,
    Objective,
    SampleShare,
    create_objective,
    list_objectives,
    objective_class,
    objective_config_class,
    register_objective,
)
from decar.objectives.dcv2 import DCv2Config, DeepClusterV2
from decar.objectives.deepcluster_v1 import DeepClusterNet, DeepClusterV1, DeepClusterV1Config, DeepClusterV1Head
from decar.objectives.online import OnlineClustering, OnlineConfig

__all__ = [
    "DCv2Config",
    "DeepClusterNet",
    "DeepClusterV1",
    "DeepClusterV1Config",
    "DeepClusterV1Head",
    "DeepClusterV2",
    "EpochContext",
    "Objective",
    "OnlineClustering",
    "OnlineConfig",
    "SampleShare",
    "create_objective",
    "list_objectives",
    "objective_class",
    "objective_config_class",
    "register_objective",
]
