"""timm's interface for the model classes written here (not converted from timm's ResNet): the classifier
head, the stages behind ``forward_features`` / ``forward_intermediates`` / ``features_only``, and
stochastic depth."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import create_classifier
from timm.models import build_model_with_cfg
from timm.models._features import feature_take_indices

from ._converted import refuse_pretrained


class ClassifierHeadMixin:
    """Global average pooling, dropout and a linear classifier, with timm's head methods.

    The class calls :meth:`init_head` in ``__init__`` after setting ``num_features``; ``forward_features``
    is its own, and ``forward`` is ``forward_head(forward_features(...))`` with the same arguments.
    """

    num_features: int
    num_classes: int
    drop_rate: float

    def init_head(self, num_classes: int, drop_rate: float = 0.0, global_pool: str = "avg") -> None:
        self.num_classes, self.drop_rate = num_classes, drop_rate
        self.global_pool, self.fc = create_classifier(self.num_features, num_classes, pool_type=global_pool)

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str = "avg") -> None:
        self.num_classes = num_classes
        self.global_pool, self.fc = create_classifier(self.num_features, num_classes, pool_type=global_pool)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)
        if self.drop_rate:
            x = F.dropout(x, p=self.drop_rate, training=self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x, *args, **kwargs) -> torch.Tensor:
        """Logits ``(B, num_classes)``: ``forward_head(forward_features(x, *args, **kwargs))``."""
        return self.forward_head(self.forward_features(x, *args, **kwargs))


class FeatureStagesMixin:
    """``forward_features``, ``forward_intermediates`` and ``prune_intermediate_layers`` over a model's stages.

    A model is a chain of stages; the class defines

    * ``feature_info``: one dict per stage (``num_chs``, ``reduction`` relative to the model's input
      tensor, ``module``), as timm's;
    * ``_stage_modules``: per stage, the attribute names of its modules (pruning replaces them);
    * ``enter(x, cbcr)``: the input checked and turned into the state the first stage takes;
    * ``run_stage(index, state)``: the next state;
    * ``feature_map(index, state)``: the ``(B, num_chs, H, W)`` map that a state shows (paths or grids
      at other resolutions merged into one tensor).

    ``forward_features`` is the last stage's map. ``cbcr`` is the second input of two-plane DCT models
    (the others reject it); ``x`` may also be a ``(y, cbcr)`` pair or a batch with ``.y`` and ``.cbcr``.
    """

    feature_info: list[dict]
    _stage_modules: tuple[tuple[str, ...], ...]
    _kept_stages: int | None = None  # after prune_intermediate_layers: stages still run

    def enter(self, x, cbcr: torch.Tensor | None):
        if cbcr is not None:
            raise TypeError(f"{type(self).__name__} takes one input tensor, got a second (cbcr)")
        return x

    def run_stage(self, index: int, state):
        raise NotImplementedError

    def feature_map(self, index: int, state) -> torch.Tensor:
        return state

    def _num_stages(self) -> int:
        return len(self.feature_info) if self._kept_stages is None else self._kept_stages

    def forward_features(self, x, cbcr: torch.Tensor | None = None) -> torch.Tensor:
        """The last stage's feature map ``(B, num_features, H', W')`` (see the model's docstring for ``x``)."""
        state = self.enter(x, cbcr)
        last = self._num_stages() - 1
        for index in range(last + 1):
            state = self.run_stage(index, state)
        return self.feature_map(last, state)

    def forward_intermediates(
        self,
        x,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
        cbcr: torch.Tensor | None = None,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """The feature maps of the stages in ``indices`` (timm's meaning), and the final features unless
        ``intermediates_only``.

        Args:
            x: the model's input (``cbcr`` the second plane of two-plane DCT models).
            indices: None for all stages, an int ``n`` for the last ``n``, or a list of stage indices.
            norm: unused (these models have no final norm), accepted for timm's signature.
            stop_early: stop after the last stage asked for; the returned features are then that stage's.
            output_fmt: ``"NCHW"`` only.
            intermediates_only: return only the list of maps.
        """
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        take_indices, max_index = feature_take_indices(self._num_stages(), indices)
        state = self.enter(x, cbcr)
        last = max_index if stop_early else self._num_stages() - 1
        intermediates = []
        for index in range(last + 1):
            state = self.run_stage(index, state)
            if index in take_indices:
                intermediates.append(self.feature_map(index, state))
        if intermediates_only:
            return intermediates
        return self.feature_map(last, state), intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the stages after the last of ``indices`` (and the head with ``prune_head``); return the indices."""
        take_indices, max_index = feature_take_indices(self._num_stages(), indices)
        for names in self._stage_modules[max_index + 1 :]:
            for name in names:
                parent, _, child = name.rpartition(".")
                setattr(self.get_submodule(parent) if parent else self, child, nn.Identity())
        if max_index + 1 < self._num_stages():
            # the head was sized for the last stage's features
            self._kept_stages = max_index + 1
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
            prune_head = True
        if prune_head:
            self.reset_classifier(0, "")
        return take_indices


def drop_path_rates(drop_path_rate: float, blocks: Sequence[int]) -> list[list[float]]:
    """Per-block stochastic-depth rates rising linearly from 0 to ``drop_path_rate`` over all blocks (timm's rule).

    ``blocks``: blocks per stage. Returns one list of rates per stage.
    """
    if not 0.0 <= drop_path_rate < 1.0:
        raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate!r}")
    total = sum(blocks)
    rates = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]
    out, start = [], 0
    for count in blocks:
        out.append(rates[start : start + count])
        start += count
    return out


class ResNetStemMixin:
    """ResNet's stem as attributes ``conv1``, ``maxpool``, ``bn1``, ``act1`` (timm's names: ``first_conv="conv1"``)."""

    def init_stem(self, in_chans: int, cifar: bool, width: int = 64) -> int:
        """7x7 stride-2 convolution and 3x3 stride-2 max-pool, or with ``cifar`` a 3x3 stride-1 one and no pool.

        Returns the stem convolution's stride (the reduction of feature 0).
        """
        if cifar:
            self.conv1 = nn.Conv2d(in_chans, width, 3, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_chans, width, 7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.bn1, self.act1 = nn.BatchNorm2d(width), nn.ReLU(inplace=True)
        return 1 if cifar else 2

    def stem_stage(self, x: torch.Tensor) -> torch.Tensor:
        """Stage 0: ``(B, in_chans, H, W)`` -> ``(B, width, H/2, W/2)`` (``H, W`` with the CIFAR stem), before the
        max-pool, which opens stage 1 (timm's ResNet feature 0)."""
        return self.act1(self.bn1(self.conv1(x)))


def create_unpretrained(
    model_cls: type[nn.Module], variant: str, pretrained: bool, default_out_indices: tuple[int, ...], **kwargs
) -> nn.Module:
    """``model_cls`` built by timm with ``variant``'s cfg; ``pretrained=True`` raises ValueError (no weights yet).

    ``features_only=True`` wraps it in timm's ``FeatureGetterNet`` (through ``forward_intermediates``),
    returning the stages ``default_out_indices`` unless ``out_indices`` is given.
    """
    refuse_pretrained(variant, pretrained)
    feature_cfg = dict(feature_cls="getter", out_indices=default_out_indices)
    return build_model_with_cfg(model_cls, variant, pretrained=False, feature_cfg=feature_cfg, **kwargs)


def check_layers(layers: Sequence[int], stages: int) -> tuple[int, ...]:
    """``layers`` as a tuple of ``stages`` positive block counts; ValueError naming ``layers`` otherwise."""
    if (
        not isinstance(layers, Sequence)
        or isinstance(layers, str)
        or len(layers) != stages
        or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in layers)
    ):
        raise ValueError(f"layers must be {stages} positive ints (blocks per stage), got {layers!r}")
    return tuple(layers)


def init_weights(model: nn.Module, zero_init_last: bool = True) -> None:
    """He initialisation of convolutions, unit batch norm, and zero last batch norm of each residual branch."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    if zero_init_last:
        for module in model.modules():
            if module is not model and hasattr(module, "zero_init_last"):
                module.zero_init_last()
