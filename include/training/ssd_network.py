"""The GluonCV SSD networks behind ``base_network``, built for any square ``image_shape``.

``vgg-16`` and ``resnet-50`` are the layouts of GluonCV's ``ssd_*_vgg16_atrous_custom`` and
``ssd_512_resnet50_v1_custom`` (the base networks SageMaker's algorithm offers); ``mobilenet-1.0``
is ``ssd_512_mobilenet1.0_custom`` (local only). The presets fix anchors for one input size; here
anchor sizes are scaled to ``image_shape`` and anchor steps come from the feature maps' real sizes
at that input, so a 256 px network gets anchors that fit a 256 px image.

ImageNet base weights are loaded from a file the caller found and checked
(:mod:`include.training.pretrained`, the weights cache). With them the base network's BatchNorm
layers keep ImageNet's statistics (``use_global_stats``): updated from small CPU batches they
drift away from what inference uses, and validation mAP with them was erratic (0.06 against
0.31 with frozen statistics in the same fine-tuning run, docs/transfer-learning.md).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_RATIOS_6 = [[1, 2, 0.5]] + [[1, 2, 0.5, 3, 1.0 / 3]] * 3 + [[1, 2, 0.5]] * 2
_RATIOS_7 = [[1, 2, 0.5]] + [[1, 2, 0.5, 3, 1.0 / 3]] * 4 + [[1, 2, 0.5]] * 2
_VGG_BASE = r"^vggatrousextractor\d+_(conv|dilated_conv)\d+_"  # VGG's stages; not its normalize scale or extras
_VGG_OPTIONAL = ("extras.", "init_scale", "norm4.")  # the SSD's own layers on top of VGG


@dataclass(frozen=True)
class BaseLayout:
    """Where an SSD taps its base network, and its anchor sizes at ``reference_size``."""

    store_name: str  # GluonCV model-store name of the ImageNet weights
    base_pattern: str  # regex over SSD parameter names: the layers that hold the base network's ImageNet weights
    reference_size: int
    sizes: tuple[float, ...]
    ratios: list[list[float]]
    outputs: tuple[str, ...] = ()  # tapped layers of a model-zoo classifier (FeatureExpander)
    filters: tuple[int, ...] = ()  # extra layers appended after the last tapped one
    vgg_extractor: str = ""  # or a GluonCV VGG-atrous extractor function with its own extra layers
    optional_layers: tuple[str, ...] = ("output.",)  # name prefixes an ImageNet file may lack (unused by the SSD)


def layout(base_network: str, image_shape: int) -> BaseLayout:
    """The layout of ``base_network`` used at ``image_shape`` (VGG switches to its 512 variant at 512)."""
    if base_network == "mobilenet-1.0":
        return BaseLayout("mobilenet1.0", r"^mobilenet\d+_", 512, (51.2, 102.4, 189.4, 276.4, 363.52, 450.6, 492.0),
                          _RATIOS_6, outputs=("relu22_fwd", "relu26_fwd"), filters=(512, 512, 256, 256))
    if base_network == "resnet-50":
        return BaseLayout("resnet50_v1", r"^resnetv1\d+_", 512, (51.2, 133.12, 215.04, 296.96, 378.88, 460.8, 542.72),
                          _RATIOS_6, outputs=("stage3_activation5", "stage4_activation2"), filters=(512, 512, 256, 256))
    if base_network == "vgg-16" and image_shape >= 512:
        return BaseLayout("vgg16_atrous", _VGG_BASE, 512, (51.2, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8, 537.6),
                          _RATIOS_7, vgg_extractor="vgg16_atrous_512", optional_layers=_VGG_OPTIONAL)
    if base_network == "vgg-16":
        return BaseLayout("vgg16_atrous", _VGG_BASE, 300, (21.0, 45.0, 99.0, 153.0, 207.0, 261.0, 315.0), _RATIOS_6,
                          vgg_extractor="vgg16_atrous_300", optional_layers=_VGG_OPTIONAL)
    raise ValueError(f"unknown base_network {base_network!r}")


def classifier(spec: BaseLayout, frozen_statistics: bool) -> Any:
    """The ImageNet network ``spec`` taps (GluonCV model zoo, no weights), its BatchNorm frozen if asked."""
    from gluoncv.model_zoo import get_model
    from gluoncv.model_zoo.ssd import vgg_atrous

    if spec.vgg_extractor:  # VGG-16 has no BatchNorm
        return getattr(vgg_atrous, spec.vgg_extractor)(pretrained=False)
    return get_model(spec.store_name, pretrained=False,
                     norm_kwargs={"use_global_stats": True} if frozen_statistics else None)


def _feature_block(spec: BaseLayout, weights: Path | None) -> Any:
    """The multi-output feature network, with ImageNet weights loaded from ``weights`` when given.

    VGG's extractor carries its own extra layers, which the ImageNet file does not have.
    """
    from gluoncv.nn.feature import FeatureExpander

    base = classifier(spec, frozen_statistics=weights is not None)
    if weights is not None:
        _load_base(base, spec, weights)
    if spec.vgg_extractor:
        return base
    return FeatureExpander(network=base, outputs=list(spec.outputs), num_filters=list(spec.filters))


def _load_base(base: Any, spec: BaseLayout, weights: Path) -> None:
    """Load ``weights`` into ``base``: every layer but ``spec.optional_layers`` must be in the file."""
    import mxnet as mx

    saved = {name.split(":", 1)[-1] for name in mx.nd.load(str(weights))}
    layers = base._collect_params_with_prefix()
    missing = [n for n in layers if n not in saved and not n.startswith(spec.optional_layers)]
    if missing:
        raise ValueError(f"{weights} lacks {len(missing)} layer(s) of {spec.store_name}, the first {missing[0]}")
    base.load_parameters(str(weights), allow_missing=True)


def _feature_sizes(block: Any, image_shape: int) -> list[int]:
    """Side of each feature map for a square input, by symbolic shape inference (no compute)."""
    import mxnet as mx

    outputs = block(mx.sym.var("data"))
    group = mx.sym.Group(list(outputs)) if isinstance(outputs, (list, tuple)) else outputs
    _, shapes, _ = group.infer_shape(data=(1, 3, image_shape, image_shape))
    return [int(shape[2]) for shape in shapes]


def build_ssd(base_network: str, image_shape: int, classes: list[str], weights: Path | None = None) -> Any:
    """An initialized, non-hybridized GluonCV SSD for ``classes`` at ``image_shape``.

    ``weights``: a checked ImageNet file of the base network (:func:`include.training.pretrained.resolve`);
    without it every layer starts from random initial values.
    """
    import warnings

    import mxnet as mx
    from gluoncv.model_zoo.ssd.ssd import SSD

    spec = layout(base_network, image_shape)
    # A fresh name scope: the parameters are named mobilenet0_..., ssd0_... whatever this process built
    # before (a model channel's names must match those of the job that saved it).
    with mx.name.NameManager(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Cannot decide type")  # SymbolBlock's note on the input
        block = _feature_block(spec, weights)
        fmaps = _feature_sizes(block, image_shape)
        if len(fmaps) != len(spec.ratios) or min(fmaps) < 1:
            raise ValueError(
                f"base_network {base_network} cannot run at image_shape {image_shape} (feature maps {fmaps})"
            )
        scale = image_shape / spec.reference_size
        alloc = max(128, 1 << math.ceil(math.log2(fmaps[0])))
        net = SSD(
            network=None,
            base_size=image_shape,
            features=lambda **_: block,
            num_filters=None,
            sizes=[s * scale for s in spec.sizes],
            ratios=spec.ratios,
            steps=[image_shape / f for f in fmaps],
            classes=classes,
            pretrained=False,
            anchor_alloc_size=alloc,
        )
    _set_initializers(net)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "already initialized" for the loaded base weights
        net.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2))
    return net


def _set_initializers(net: Any) -> None:
    """Give the symbol-defined extra layers' parameters (which carry no initializer) the usual ones.

    Without this a global initializer would be applied to BatchNorm gamma/beta as if they were weights.
    """
    import mxnet as mx

    for name, param in net.collect_params().items():
        if param.init is not None or name.endswith("weight"):
            continue
        param.init = mx.init.One() if name.endswith(("gamma", "var")) else mx.init.Zero()


def base_parameters(net: Any, base_network: str) -> list[Any]:
    """The SSD's parameters that belong to the ImageNet base network (those a weights file sets)."""
    regex = re.compile(layout(base_network, 512).base_pattern)
    return [param for name, param in net.collect_params().items() if regex.search(name)]


def freeze(net: Any, pattern: str) -> list[str]:
    """Stop gradients of the parameters whose name matches ``pattern`` (``re.search``); their names."""
    if not pattern:
        return []
    regex = re.compile(pattern)
    frozen = []
    for name, param in net.collect_params().items():
        if regex.search(name):
            param.grad_req = "null"
            frozen.append(name)
    return frozen
