"""A model session: loaded networks kept between jobs of one process.

The CLI makes one per run; the web app and the cluster workers keep one alive, so a second job
with the same model settings does not load the weights again. Each getter loads on first use,
keyed by the settings that decide the weights, and counts its loads (``loads``) so that tests
can tell a reuse from a reload.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # heavy imports only when a model is asked for
    from framematrix.depth.config import DepthConfig
    from framematrix.depth.estimate import DepthModel
    from framematrix.depth.flow import FlowEstimator
    from framematrix.fill.diffusion.config import DiffusionConfig


class ModelSession:
    """Holds the depth model, the flow estimator and the diffusion backbone between jobs."""

    def __init__(self) -> None:
        self._models: dict[tuple, Any] = {}
        self._lock = threading.Lock()
        self.loads: Counter[str] = Counter()

    def _get(self, kind: str, key: tuple, load: Any) -> Any:
        with self._lock:
            full = (kind, *key)
            if full not in self._models:
                self._models[full] = load()
                self.loads[kind] += 1
            return self._models[full]

    def depth_model(self, config: DepthConfig) -> DepthModel:
        from framematrix.depth.estimate import load_depth_model

        key = (config.model, str(config.device), str(config.dtype))
        return self._get(
            "depth",
            key,
            lambda: load_depth_model(
                config.model,
                config.device,
                config.dtype,
                local_files_only=None if config.allow_download else True,
            ),
        )

    def flow(self, config: DepthConfig) -> FlowEstimator:
        from framematrix.depth.cache import flow_for

        key = (config.flow, str(config.flow_weights), str(config.device), config.raft_iters)
        return self._get("flow", key, lambda: flow_for(config, progress=False))

    def backbone(self, config: DiffusionConfig) -> Any:
        from framematrix.fill.diffusion.run import load_backbone

        key = (
            config.model,
            config.decoder,
            str(config.decoder_model),
            str(config.device),
            str(config.dtype),
            config.model_cpu_offload,
            config.vae_slicing,
        )
        return self._get("backbone", key, lambda: load_backbone(config))

    def clear(self) -> None:
        with self._lock:
            self._models.clear()
