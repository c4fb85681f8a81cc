"""Localisation metrics: does a saliency map point at the object, hold its mass on it, box it?

Each metric compares maps with the ground truth of the explained class, given as boxes or as
masks, and runs no forward pass:

- :class:`PointingGame` (Zhang et al., ECCV 2016, "Top-down neural attention by excitation
  backprop"): the map's maximum is a hit when the object lies within a tolerance of it;
- :class:`EnergyPointingGame` (Wang et al., Score-CAM, CVPR-W 2020): the fraction of the
  map's mass inside the object;
- :class:`BoxAccuracy` (Choe et al., "Evaluating weakly supervised object localization
  methods right", CVPR 2020): at each threshold, whether the box of the map's largest region
  overlaps an object's box with an IoU of ``iou`` or more; :func:`best_threshold` picks the
  best threshold of an accuracy curve (MaxBoxAcc).

**Maps.** ``N x 1 x H x W`` float tensors in the input's frame (Poly-CAM's maps, or any
attribution reduced to one channel and resized to the input), at any scale; or, the same way,
``N x 1 x L`` maps of signals and ``N x 1 x D x H x W`` maps of volumes. The metrics work on
the maps' device, and give their values in the maps' dtype, float32 at least.

**Pixel convention.** Rows are ``y`` and columns ``x``: pixel ``(y, x)`` of a map covers the
square ``[x, x + 1) x [y, y + 1)`` of the input, so that its centre is ``(x + 0.5, y + 0.5)``.
A box ``(x1, y1, x2, y2)``, in input pixels, covers the pixels whose centres lie in the closed
rectangle ``[x1, x2] x [y1, y2]``: box ``(0, 0, 1, 1)`` is exactly pixel ``(0, 0)`` and box
``(2, 3, 5, 4)`` is row 3, columns 2 to 4. A box must be finite with ``x1 < x2`` and
``y1 < y2``; it may reach beyond the frame (it covers the pixels of the frame whose centres it
holds), and a box that holds no pixel centre at all, such as ``(0.2, 0.2, 0.4, 0.4)``, covers
no pixel: its area counts as empty. The other way round, the pixels ``x0 .. x1`` of columns
and ``y0 .. y1`` of rows make the box ``(x0, y0, x1 + 1, y1 + 1)``.

**Signals and volumes.** The same rule holds along every axis, ``x`` always the last one (the
columns ``W``), then ``y`` (the rows ``H``), then ``z`` (the slices ``D``, the first spatial
axis of a volume): voxel ``(z, y, x)`` covers ``[x, x + 1) x [y, y + 1) x [z, z + 1)``, and a
volume's box ``(x1, y1, z1, x2, y2, z2)`` covers the voxels whose centres lie in
``[x1, x2] x [y1, y2] x [z1, z2]``; a signal's box ``(x1, x2)`` covers the samples whose
centres lie in ``[x1, x2]``. The voxels ``x0 .. x1``, ``y0 .. y1``, ``z0 .. z1`` make the box
``(x0, y0, z0, x1 + 1, y1 + 1, z1 + 1)``. MONAI orders the axes the other way round: its
boxes (``"xyzxyz"``, and those of ``convert_mask_to_box``) take their ``x`` along the first
spatial axis, so that its ``(a1, b1, c1, a2, b2, c2)`` of a ``D x H x W`` volume is
``(c1, b1, a1, c2, b2, a2)`` here.

**Ground truth.** Each call takes exactly one of ``boxes=`` (per example, ``K x 4`` boxes of
the class, ``K x 6`` for volumes, ``K x 2`` for signals, ``K >= 0``; their union is the object)
and ``masks=`` (``N x 1 x H x W`` like the maps, bool or 0/1: ``N x 1 x D x H x W`` for
volumes, as MONAI's channel-first labels come). An example whose ground truth covers no pixel
(no box, boxes that cover no pixel centre, an empty mask) is undefined.

**Undefined examples.** An example without ground truth, or whose map cannot single anything
out (a constant map for the pointing game and the box accuracy, an all-zero map for the
energy), gets NaN, is flagged in the result's ``undefined``, and is named by a
``UserWarning``. ``as_dict()`` leaves it out, since :class:`MetricSummary` averages finite
values only: the mean over a dataset is over its defined examples, and ``undefined`` says how
many were not.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from captum_polycam._conventions import check_int, unpack_single
from captum_polycam._repr import settings_repr
from captum_polycam.metrics.keys import (
    BOX_ACCURACY,
    ENERGY_POINTING_GAME,
    POINTING_GAME,
    SCORE_DIRECTIONS,
    ScoreDirection,
)

__all__ = [
    "BestThreshold",
    "BoxAccuracy",
    "BoxAccuracyResult",
    "EnergyPointingGame",
    "EnergyPointingGameResult",
    "PointingGame",
    "PointingGameResult",
]

BoxesLike = Sequence[Any]
"""Per example, a ``K x 4`` tensor, array or nested list of boxes ``(x1, y1, x2, y2)``
(``K x 6`` boxes ``(x1, y1, z1, x2, y2, z2)`` for volumes, ``K x 2`` ``(x1, x2)`` for
signals)."""

# The corners of a box, by number of spatial dimensions, as the errors name them.
_CORNERS = {1: "x1, x2", 2: "x1, y1, x2, y2", 3: "x1, y1, z1, x2, y2, z2"}
# The maps' layouts, by number of spatial dimensions.
_MAP_LAYOUTS = {1: "N x 1 x L", 2: "N x 1 x H x W", 3: "N x 1 x D x H x W"}

# Threshold-regions labelled in one go: bounds the memory of BoxAccuracy (a few int64 arrays
# of this length) whatever the batch. A smooth 224 x 224 map has about 50,000 regions over the
# default 100 thresholds, a map of pixel noise about 800,000.
_RUNS_PER_CHUNK = 1 << 22


# --- Results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PointingGameResult:
    """Whether each map's maximum points at its object.

    Attributes:
        values: ``(N,)`` 1.0 for a hit, 0.0 for a miss, NaN where undefined.
        points: ``(N, 2)`` the pixel each map points at, as ``(x, y)`` (column, row): the
            first of its maximal pixels in row-major order. ``(N, 3)``, ``(x, y, z)``, for
            volumes, and ``(N, 1)``, ``(x,)``, for signals.
        undefined: ``(N,)`` bool, the examples without a value: a constant map, or no
            ground-truth pixel.
        protocol: The settings that decide the numbers: ``tolerance`` and ``ground_truth``
            (``"boxes"`` or ``"masks"``). :class:`MetricSummary` refuses to mix results whose
            protocols differ. Empty for a result built by hand.
    """

    values: Tensor
    points: Tensor
    undefined: Tensor
    protocol: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Tensor]:
        """The hits (1.0) and misses (0.0) of the defined examples, undefined ones left out:
        their mean over a dataset is the pointing-game accuracy."""
        return {POINTING_GAME: self.values[~self.undefined]}


@dataclass(frozen=True)
class EnergyPointingGameResult:
    """The fraction of each map's mass inside its object.

    Attributes:
        values: ``(N,)`` fractions in ``[0, 1]``, NaN where undefined.
        undefined: ``(N,)`` bool, the examples without a value: an all-zero map, or no
            ground-truth pixel.
        protocol: The settings that decide the numbers: ``ground_truth`` (``"boxes"`` or
            ``"masks"``). Empty for a result built by hand.
    """

    values: Tensor
    undefined: Tensor
    protocol: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Tensor]:
        """The fractions of the defined examples, undefined ones left out: their mean over a
        dataset is the energy-based pointing game."""
        return {ENERGY_POINTING_GAME: self.values[~self.undefined]}


class BestThreshold(NamedTuple):
    """The best threshold of a box-accuracy curve, its accuracy (MaxBoxAcc) and its index
    (:func:`best_threshold`)."""

    threshold: float
    accuracy: float
    index: int


@dataclass(frozen=True)
class BoxAccuracyResult:
    """Whether each map's box matches its object's, at each threshold.

    Attributes:
        hits: ``(N, T)`` 1.0 where the box of the map's largest region at threshold ``t``
            has an IoU of ``iou`` or more with a ground-truth box, else 0.0; NaN on the rows
            of undefined examples.
        ious: ``(N, T)`` the IoU of that box with its best-matching ground-truth box; NaN on
            the rows of undefined examples.
        map_boxes: ``(N, T, 4)`` that box, ``(x1, y1, x2, y2)`` in input pixels (``(N, T, 6)``,
            ``(x1, y1, z1, x2, y2, z2)``, for volumes, ``(N, T, 2)`` for signals); NaN on the
            rows of undefined examples.
        thresholds: ``(T,)`` float64 on the CPU, the fractions of each map's maximum.
        undefined: ``(N,)`` bool, the examples without a value: a constant map, or no
            ground-truth pixel.
        protocol: The settings that decide the numbers: ``iou``, ``thresholds`` (a list) and
            ``ground_truth`` (``"boxes"`` or ``"masks"``). :class:`MetricSummary` refuses to
            mix results whose protocols differ, so curves of other thresholds never mix.
            Empty for a result built by hand.
    """

    hits: Tensor
    ious: Tensor
    map_boxes: Tensor
    thresholds: Tensor
    undefined: Tensor
    protocol: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Tensor]:
        """The ``(N', T)`` hits of the defined examples, undefined ones left out: their mean
        over a dataset (:class:`MetricSummary`'s :class:`MeanCurve`) is the accuracy at each
        threshold, whose best is :func:`best_threshold`."""
        return {BOX_ACCURACY: self.hits[~self.undefined]}

    @property
    def accuracy(self) -> Tensor:
        """``(T,)`` the fraction of the batch's defined examples hit at each threshold (NaN
        at every threshold when none is defined)."""
        return self.hits[~self.undefined].mean(dim=0)

    def best(self) -> BestThreshold:
        """The batch's best threshold (the first of the highest accuracy), its accuracy (the
        batch's MaxBoxAcc) and its index; NaN, NaN and -1 when no example is defined. Over a
        dataset, use :func:`best_threshold` on the mean curve."""
        if bool(self.undefined.all()):
            return BestThreshold(math.nan, math.nan, -1)
        return best_threshold(self.accuracy, self.thresholds)


def best_threshold(accuracy: Tensor | Sequence[float], thresholds: Any) -> BestThreshold:
    """The best threshold of a box-accuracy curve and its accuracy: MaxBoxAcc (Choe et al.).

    ``MaxBoxAcc = max_t BoxAcc(t)``, the threshold chosen over the whole dataset, not per
    image. Ties go to the first, lowest, threshold.

    Args:
        accuracy: ``(T,)`` the accuracy at each threshold over a dataset: the ``mean`` of the
            :class:`MeanCurve` that :class:`MetricSummary` computes from
            :class:`BoxAccuracyResult`'s, or :attr:`BoxAccuracyResult.accuracy`.
        thresholds: ``(T,)`` the thresholds of the curve: the ``thresholds`` of the results'
            protocol.

    Returns:
        The best threshold, its accuracy, and its index.

    Raises:
        ValueError: The two are not 1-D of one length, or an accuracy is not finite (a curve
            averaged over no example is NaN).

    Example:
        >>> summary = MetricSummary()
        >>> for maps, boxes in batches:
        ...     summary.update(BoxAccuracy()(maps, boxes=boxes))
        >>> curve = summary.compute()["box_accuracy"].mean
        >>> best_threshold(curve, summary.protocols["box_accuracy"]["thresholds"])
        BestThreshold(threshold=0.23, accuracy=0.61, index=23)
    """
    curve, grid = _float64(accuracy), _float64(thresholds)
    if curve.dim() != 1 or grid.dim() != 1 or len(curve) != len(grid) or len(curve) == 0:
        raise ValueError(
            "accuracy and thresholds must be 1-D, of one non-zero length; got shapes "
            f"{tuple(curve.shape)} and {tuple(grid.shape)}"
        )
    if not bool(torch.isfinite(curve).all()):
        raise ValueError(
            "accuracy must be finite at every threshold; a curve averaged over no example is NaN"
        )
    index = _first_true(curve == curve.max())
    return BestThreshold(float(grid[index]), float(curve[index]), index)


# --- Metrics ---------------------------------------------------------------------------------


class _LocalisationMetric:
    """What the three metrics share: the key, the settings, and the reading of arguments."""

    key: ClassVar[str]
    score_direction: ClassVar[ScoreDirection]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.score_direction = SCORE_DIRECTIONS[cls.key]

    @property
    def protocol(self) -> dict[str, Any]:
        """The settings that decide the numbers (each result adds ``ground_truth``)."""
        return {}

    def __repr__(self) -> str:
        return settings_repr(type(self).__name__, **self.protocol)

    def _warn_undefined(self, no_signal: Tensor, no_truth: Tensor, flat: str) -> None:
        undefined = no_signal | no_truth
        if not bool(undefined.any()):
            return
        reasons = []
        if bool(no_signal.any()):
            reasons.append(f"example(s) {_indices(no_signal)} have {flat}")
        if bool(no_truth.any()):
            reasons.append(f"example(s) {_indices(no_truth)} have no ground-truth pixel")
        warnings.warn(
            f"{type(self).__name__}: {int(undefined.sum())} of {len(undefined)} examples are "
            f"undefined (NaN, and left out of as_dict()): {'; '.join(reasons)}",
            UserWarning,
            stacklevel=4,  # past this method, __call__ and torch.no_grad's wrapper
        )


class PointingGame(_LocalisationMetric):
    r"""The pointing game: is the map's maximum on the object, within a tolerance?

    With ``p`` the map's maximal pixel and ``G`` the ground-truth pixels, an example is a hit
    when ``min_{g in G} ||g - p|| <= tolerance``, the Euclidean distance between the pixels'
    indices (row, column; slice, row, column for the voxels of a volume): a hit when ``p`` is
    in ``G`` whatever the tolerance, and, for ``tolerance = 15``, when ``G`` comes within 15
    pixels of it. This is the definition of Zhang et al. (ECCV 2016) and TorchRay's benchmark
    (its default tolerance of 15, and its pointing at the first maximal pixel), but for the
    boundary: TorchRay accepts distances strictly below the tolerance (so that
    ``tolerance = 0`` never hits), this one up to it.

    The accuracy over a dataset is the mean of the per-example hits, what
    :class:`~captum_polycam.metrics.MetricSummary` computes from ``as_dict()``.

    Ties: when several pixels hold the maximum, the map points at the first in row-major
    order (the smallest row, then the smallest column; for a volume the smallest slice
    first), as TorchRay's ``argmax`` of the
    flattened map does. The pointing game scores one point, the one a user would read off the
    map; hitting when *any* maximal pixel is near would reward a map for a wide plateau at its
    maximum. (Maps clipped at the top have such plateaus: Poly-CAM's normalisation saturates
    its top 0.1% of positions at 1.) A constant map points nowhere: it is undefined.

    Only the position of the maximum matters: maps of any sign and scale are taken.

    Args:
        tolerance: The largest distance, in pixels of the maps, from the maximum to the
            object for a hit; an int, 0 or more (TorchRay's default, 15).

    Example:
        >>> result = PointingGame()(PolyCam(model).attribute(inputs), boxes=boxes)
        >>> result.values  # 1.0 hit, 0.0 miss, NaN undefined
    """

    key = POINTING_GAME

    def __init__(self, tolerance: int = 15) -> None:
        checked = check_int("tolerance", tolerance, least=0)
        assert checked is not None
        self.tolerance: int = checked

    @property
    def protocol(self) -> dict[str, Any]:
        """The settings that decide the numbers: ``tolerance``."""
        return {"tolerance": self.tolerance}

    @torch.no_grad()
    def __call__(
        self,
        attributions: Tensor | tuple[Tensor],
        *,
        boxes: BoxesLike | None = None,
        masks: Tensor | None = None,
    ) -> PointingGameResult:
        """Each map's hit or miss; see the class docstring for the definition.

        Args:
            attributions: ``N x 1 x H x W`` float maps in the input's frame (or a 1-tuple
                holding them); ``N x 1 x D x H x W`` for volumes, ``N x 1 x L`` for signals.
            boxes: Per example, ``K x 4`` boxes ``(x1, y1, x2, y2)`` of the object in input
                pixels (tensors, arrays or nested lists; ``K`` may be 0): ``K x 6`` boxes
                ``(x1, y1, z1, x2, y2, z2)`` for volumes (``x`` along ``W``, ``y`` along
                ``H``, ``z`` along ``D``), ``K x 2`` boxes ``(x1, x2)`` for signals; see the
                module's pixel convention.
            masks: Bool or 0/1 masks of the object shaped as the maps, ``N x 1 x H x W``
                (``N x 1 x D x H x W``, ``N x 1 x L``). Give ``boxes`` or ``masks``, not
                both.

        Returns:
            The hits, the pointed pixels and the undefined examples, on the maps' device.

        Raises:
            TypeError: ``attributions`` is not a float tensor, or not exactly one of ``boxes``
                and ``masks`` is given.
            ValueError: A map is not ``N x 1 x H x W`` (or a signal's or volume's) or not
                finite, a box is malformed or of another width than the maps' (4 numbers for
                images, 6 for volumes, 2 for signals), or a mask is not binary or not of the
                maps' size.

        Warns:
            UserWarning: Some examples are undefined (a constant map, or no ground-truth
                pixel), naming them.
        """
        maps = _check_maps(attributions)
        truth = _GroundTruth.read(maps, boxes, masks)
        size = maps.shape[1:]
        flat = maps.flatten(1)
        peak = flat.amax(dim=1)
        constant = peak == flat.amin(dim=1)
        first = _first_true(flat == peak[:, None], dim=1)
        # The maximal position's index along each axis (slice, row, column).
        indices = []
        for side in reversed(size):
            indices.insert(0, first % side)
            first = first // side
        distance = torch.zeros(len(maps), *size, dtype=torch.long, device=maps.device)
        for axis, (side, index) in enumerate(zip(size, indices, strict=True)):
            along = (torch.arange(side, device=maps.device) - index[:, None]) ** 2
            shape = [len(maps)] + [1] * len(size)
            shape[axis + 1] = side
            distance = distance + along.view(shape)
        near = distance <= self.tolerance**2
        hit = (truth.inside & near).flatten(1).any(dim=1)
        empty = truth.empty
        undefined = constant | empty
        values = torch.where(undefined, math.nan, hit.to(_value_dtype(maps)))
        self._warn_undefined(constant, empty, "a constant map (no maximum to point at)")
        protocol = {**self.protocol, "ground_truth": truth.kind}
        points = torch.stack(indices[::-1], 1)  # (x, y, z): the last axis first
        return PointingGameResult(values, points, undefined, protocol)


class EnergyPointingGame(_LocalisationMetric):
    r"""The energy-based pointing game: the fraction of the map's mass inside the object.

    For a non-negative map ``m`` and the ground-truth indicator ``1_G`` (the union of the
    example's boxes, or its mask), summed over the pixels (the voxels of a volume, the samples
    of a signal),

    .. math:: E = \frac{\sum_{(y, x)} m_{y,x} \, 1_G(y, x)}{\sum_{(y, x)} m_{y,x}},

    as Wang et al. (Score-CAM, CVPR-W 2020) define it, in ``[0, 1]``; higher is better. A
    flat positive map scores the area of ``G`` over the frame's; an all-zero map has no mass
    and is undefined.

    The map must be non-negative (a negative value would count against the object's mass):
    clamp signed attributions (``attributions.clamp(min=0)``) or normalise them
    (:func:`~captum_polycam.normalisation.min_max`) first. The metric is unchanged by the
    scale of the map.

    Example:
        >>> result = EnergyPointingGame()(PolyCam(model).attribute(inputs), masks=masks)
        >>> result.values  # fractions in [0, 1], NaN undefined
    """

    key = ENERGY_POINTING_GAME

    @torch.no_grad()
    def __call__(
        self,
        attributions: Tensor | tuple[Tensor],
        *,
        boxes: BoxesLike | None = None,
        masks: Tensor | None = None,
    ) -> EnergyPointingGameResult:
        """Each map's fraction of mass inside its object; arguments, errors and warnings as
        :meth:`PointingGame.__call__`, and a ``ValueError`` for a negative value.

        Returns:
            The fractions and the undefined examples, on the maps' device.
        """
        maps = _check_maps(attributions, non_negative=type(self).__name__)
        truth = _GroundTruth.read(maps, boxes, masks)
        flat = maps.flatten(1).double()
        peak = flat.amax(dim=1, keepdim=True)
        zero = peak[:, 0] == 0
        # Dividing by the maximum first keeps the sums finite for any finite map.
        scaled = flat / torch.where(zero[:, None], 1.0, peak)
        energy = (scaled * truth.inside.flatten(1)).sum(dim=1) / scaled.sum(dim=1)
        empty = truth.empty
        undefined = zero | empty
        values = torch.where(undefined, math.nan, energy).to(_value_dtype(maps))
        self._warn_undefined(zero, empty, "an all-zero map (no mass)")
        protocol = {**self.protocol, "ground_truth": truth.kind}
        return EnergyPointingGameResult(values, undefined, protocol)


class BoxAccuracy(_LocalisationMetric):
    r"""Box accuracy at each threshold (Choe et al., CVPR 2020), and its best (MaxBoxAcc).

    For each example and threshold ``t``:

    1. the foreground is ``{pixel: m >= t * max(m)}`` (``>=``, so that ``t = 0`` keeps the
       whole frame and ``t = 1`` the maximal pixels);
    2. its largest 8-connected region, by pixel count, is kept; of several regions of that
       size, the one holding the first foreground pixel in row-major order (for volumes the
       largest 26-connected region, whose voxels touch by a face, an edge or a corner, as
       8-connected pixels touch by a side or a corner; for signals, the longest run);
    3. the region's tight box (pixels ``x0 .. x1``, ``y0 .. y1`` give the box
       ``(x0, y0, x1 + 1, y1 + 1)``; voxels the box ``(x0, y0, z0, x1 + 1, y1 + 1, z1 + 1)``)
       is compared with every ground-truth box, and the example is a hit when its best IoU
       is ``iou`` or more.

    IoU is measured in pixels under the module's pixel convention: a ground-truth box is
    replaced by the tight box of the pixels it covers (clipped to the frame; a box covering
    none is dropped), so that both boxes have whole-pixel sides and
    ``IoU = area(A and B) / area(A or B)`` counts pixels (volumes: voxels). With ``masks``, the
    ground-truth boxes are the tight boxes of each mask's 8-connected components (26-connected
    for volumes).

    Over a dataset, the accuracy at ``t`` is the fraction of examples hit, and MaxBoxAcc its
    maximum over the thresholds, one threshold for the whole dataset
    (:func:`best_threshold`); the default grid is Choe et al.'s, ``0.00, 0.01, ..., 0.99``.

    The map must be non-negative: clamp signed attributions (``attributions.clamp(min=0)``)
    or normalise them (:func:`~captum_polycam.normalisation.min_max`) first. The thresholds are
    fractions of the map's maximum; Choe et al. normalise each map from its minimum to its
    maximum first, which gives the same foregrounds for maps whose minimum is 0 (Poly-CAM's,
    ReLU CAMs); for others, normalise with :func:`~captum_polycam.normalisation.min_max` to
    follow them exactly. A constant map singles out no region: it is undefined.

    Connected regions are labelled in torch on the maps' device, for all the examples and
    thresholds at once, from each row's runs of foreground (a volume's rows are those of every
    slice; no SciPy): about 0.3 s for 16
    smooth maps of 224 x 224 at the 100 default thresholds on two CPU cores. The time grows
    with the number of runs: maps of pixel noise take about twenty times longer.

    Args:
        iou: The IoU for a hit, in ``(0, 1]`` (Choe et al.'s, 0.5).
        thresholds: The fractions of each map's maximum, 1-D, finite, in ``[0, 1]`` and
            strictly increasing; ``None`` for ``0.00, 0.01, ..., 0.99``.

    Example:
        >>> metric = BoxAccuracy()
        >>> result = metric(PolyCam(model).attribute(inputs), boxes=boxes)
        >>> result.accuracy, result.best()
    """

    key = BOX_ACCURACY

    def __init__(
        self, iou: float = 0.5, thresholds: Tensor | Sequence[float] | None = None
    ) -> None:
        if (
            not isinstance(iou, numbers.Real)
            or isinstance(iou, (bool, np.bool_))
            or not 0 < float(iou) <= 1
        ):
            raise ValueError(f"iou must be a number in (0, 1]; got {iou!r}")
        self.iou = float(iou)
        self.thresholds: Tensor = _check_thresholds(thresholds)
        """``(T,)`` float64 on the CPU, the fractions of each map's maximum."""

    @property
    def protocol(self) -> dict[str, Any]:
        """The settings that decide the numbers: ``iou`` and ``thresholds`` (a list)."""
        return {"iou": self.iou, "thresholds": self.thresholds.tolist()}

    def __repr__(self) -> str:
        grid = self.thresholds
        shown = f"<{len(grid)} from {float(grid[0]):g} to {float(grid[-1]):g}>"
        return f"{type(self).__name__}(iou={self.iou!r}, thresholds={shown})"

    @torch.no_grad()
    def __call__(
        self,
        attributions: Tensor | tuple[Tensor],
        *,
        boxes: BoxesLike | None = None,
        masks: Tensor | None = None,
    ) -> BoxAccuracyResult:
        """Each map's hits at every threshold; arguments, errors and warnings as
        :meth:`PointingGame.__call__`, and a ``ValueError`` for a negative value.

        Returns:
            The hits, IoUs and boxes at every threshold, the thresholds and the undefined
            examples, on the maps' device.
        """
        maps = _check_maps(attributions, non_negative=type(self).__name__)
        truth = _GroundTruth.read(maps, boxes, masks)
        count, *size = maps.shape
        device, dtype = maps.device, _value_dtype(maps)
        thresholds = self.thresholds.to(device)
        flat = maps.flatten(1)
        peak = flat.amax(dim=1)
        constant = peak == flat.amin(dim=1)
        empty = truth.empty
        undefined = constant | empty
        steps = len(thresholds)
        hits = torch.full((count, steps), math.nan, dtype=dtype, device=device)
        ious = torch.full((count, steps), math.nan, dtype=dtype, device=device)
        map_boxes = torch.full((count, steps, 2 * len(size)), math.nan, dtype=dtype, device=device)
        rows = (~undefined).nonzero().squeeze(1)
        if len(rows):
            # A pixel is foreground at the thresholds t_j with t_j * max <= m, the first
            # `levels` of them (the grid increases); compared in float64.
            values = flat[rows].double()
            bounds = thresholds[None, :] * peak[rows].double()[:, None]
            levels = torch.searchsorted(bounds.contiguous(), values.contiguous(), right=True)
            found = _largest_region_boxes(levels.view(-1, *size), steps)
            truth_boxes, valid = truth.pixel_boxes()
            overlap = _iou(found[:, :, None, :], truth_boxes[rows][:, None, :, :])
            best = torch.where(valid[rows][:, None, :], overlap, -1.0).amax(dim=2)
            hits[rows] = (best >= self.iou).to(dtype)
            ious[rows] = best.to(dtype)
            map_boxes[rows] = found.to(dtype)
        self._warn_undefined(constant, empty, "a constant map (no region to box)")
        protocol = {**self.protocol, "ground_truth": truth.kind}
        return BoxAccuracyResult(
            hits, ious, map_boxes, self.thresholds.clone(), undefined, protocol
        )


# --- Arguments -------------------------------------------------------------------------------


def _check_maps(attributions: Any, non_negative: str | None = None) -> Tensor:
    """The ``N x *spatial`` maps of ``N x 1 x *spatial`` attributions (``N x 1 x H x W``,
    ``N x 1 x D x H x W`` or ``N x 1 x L``), or a clear error."""
    attributions = unpack_single(attributions, "attributions")[0]
    if not isinstance(attributions, Tensor):
        raise TypeError(f"attributions must be a torch.Tensor; got {type(attributions).__name__}")
    if not attributions.is_floating_point():
        raise TypeError(f"attributions must be a float tensor; got dtype {attributions.dtype}")
    shape = tuple(attributions.shape)
    if attributions.dim() - 2 not in _MAP_LAYOUTS or shape[1] != 1:
        hint = ""
        reduce = (
            "reduce the channels to one first (their sum, or the sum of their absolute "
            "values, as captum_polycam.normalisation.pixel_saliency does)"
        )
        if attributions.dim() == 3:  # N x H x W maps, or N x C x L attributions
            hint = f": add the channel dimension (attributions[:, None]), or {reduce}"
        elif attributions.dim() == 4:  # N x C x H x W attributions, or N x D x H x W maps
            hint = f": {reduce}, or add the channel dimension (attributions[:, None])"
        elif attributions.dim() == 5:
            hint = f": {reduce}"
        raise ValueError(
            f"attributions must be N x 1 x H x W maps (one channel, in the input's frame), "
            f"N x 1 x D x H x W for volumes or N x 1 x L for signals; got shape {shape}{hint}"
        )
    if attributions.numel() == 0:
        raise ValueError(f"attributions must hold at least one pixel of one map; got {shape}")
    maps = attributions[:, 0]
    finite = torch.isfinite(maps).flatten(1).all(dim=1)
    if not bool(finite.all()):
        raise ValueError(
            f"attributions must be finite; example(s) {_indices(~finite)} hold NaN or Inf"
        )
    if non_negative is not None:
        lowest = maps.flatten(1).amin(dim=1)
        negative = lowest < 0
        if bool(negative.any()):
            index = _first_true(negative)
            raise ValueError(
                f"attributions must be non-negative for {non_negative}: example {index} has "
                f"the value {float(lowest[index]):g}; clamp the maps (attributions.clamp(min=0)) "
                "or normalise them (captum_polycam.normalisation.min_max, or min_max_mask "
                "with the inputs)"
            )
    return maps


def _check_thresholds(thresholds: Any) -> Tensor:
    if thresholds is None:
        return torch.arange(100, dtype=torch.float64) / 100
    try:
        grid = _float64(thresholds)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(
            f"thresholds must be a 1-D tensor or sequence of numbers; got "
            f"{type(thresholds).__name__}"
        ) from None
    if grid.dim() != 1 or len(grid) == 0:
        raise ValueError(
            f"thresholds must be 1-D with at least one value; got shape {tuple(grid.shape)}"
        )
    if not bool((torch.isfinite(grid) & (grid >= 0) & (grid <= 1)).all()):
        raise ValueError(f"thresholds must be finite, in [0, 1]; got {grid.tolist()}")
    if not bool((grid[1:] > grid[:-1]).all()):
        raise ValueError(f"thresholds must be strictly increasing; got {grid.tolist()}")
    return grid.clone()


class _GroundTruth:
    """An example's ground truth as pixels (``inside``), and as boxes for the box accuracy."""

    def __init__(
        self,
        kind: str,
        inside: Tensor,
        boxes: tuple[Tensor, Tensor] | None = None,
    ) -> None:
        self.kind = kind
        self.inside = inside  # (N, *spatial) bool
        self._boxes = boxes

    @property
    def empty(self) -> Tensor:
        """``(N,)`` bool: no ground-truth pixel."""
        return ~self.inside.flatten(1).any(dim=1)

    def pixel_boxes(self) -> tuple[Tensor, Tensor]:
        """``(N, K, 2 d)`` long boxes in whole pixels, for ``d`` spatial dimensions, and their
        ``(N, K)`` validity: the pixels each given box covers, or each mask's connected
        components."""
        if self._boxes is None:
            self._boxes = _component_boxes(self.inside)
        return self._boxes

    @classmethod
    def read(cls, maps: Tensor, boxes: Any, masks: Any) -> _GroundTruth:
        dims = maps.dim() - 1
        if (boxes is None) == (masks is None):
            raise TypeError(
                f"give the ground truth as boxes=... (per example, K x {2 * dims} boxes "
                f"{_CORNERS[dims]}) or masks=... ({_MAP_LAYOUTS[dims]}), exactly one of them"
            )
        if masks is not None:
            return cls("masks", _check_masks(masks, maps))
        return cls._from_boxes(_check_boxes(boxes, len(maps), dims), maps)

    @classmethod
    def _from_boxes(cls, per_example: list[Tensor], maps: Tensor) -> _GroundTruth:
        count, *size = maps.shape
        dims, device = len(size), maps.device
        counts = [len(boxes) for boxes in per_example]
        most = max(counts)
        # Padded to (N, K, 2 d); padding boxes cover nothing.
        padded = torch.zeros(count, most, 2 * dims, dtype=torch.float64)
        for index, boxes in enumerate(per_example):
            padded[index, : len(boxes)] = boxes
        padded = padded.to(device)
        given = torch.arange(most, device=device) < torch.tensor(counts, device=device)[:, None]
        # Per coordinate x, y, z (the axes from the last), the positions whose centres lie in
        # the closed box: the module's pixel rule. (N, K, side) each.
        covers = []
        for coordinate in range(dims):
            side = size[dims - 1 - coordinate]
            centres = torch.arange(side, device=device, dtype=torch.float64) + 0.5
            low, high = padded[..., coordinate, None], padded[..., dims + coordinate, None]
            covers.append((centres >= low) & (centres <= high) & given[..., None])
        # The union of the boxes: a position is inside when some box covers it along every axis.
        inside = torch.zeros(count, *size, dtype=torch.bool, device=device)
        for box in range(most):
            along = [cover[:, box] for cover in reversed(covers)]  # in the axes' order
            covered = along[0].view(count, -1, *[1] * (dims - 1))
            for axis in range(1, dims):
                shape = [count] + [1] * dims
                shape[axis + 1] = size[axis]
                covered = covered & along[axis].view(shape)
            inside |= covered
        valid = torch.stack([cover.any(dim=2) for cover in covers]).all(dim=0)
        starts = [_first_true(cover, dim=2) for cover in covers]
        ends = [_last_true(cover, dim=2) + 1 for cover in covers]
        return cls("boxes", inside, (torch.stack(starts + ends, dim=2), valid))


def _check_boxes(boxes: Any, count: int, dims: int) -> list[Tensor]:
    """Each example's boxes as a ``K x 2 dims`` float64 CPU tensor, checked: ``K x 4`` for
    images, ``K x 6`` for volumes, ``K x 2`` for signals."""
    width, corners = 2 * dims, _CORNERS[dims]
    if not isinstance(boxes, (list, tuple)):
        raise TypeError(
            f"boxes must be a list with one entry per example, each a K x {width} tensor or "
            f"nested list of boxes {corners}; got {type(boxes).__name__}"
        )
    if len(boxes) != count:
        raise ValueError(
            f"boxes must hold one entry per map: {count} maps, got {len(boxes)} entries"
        )
    checked = []
    for index, entry in enumerate(boxes):
        try:
            tensor = _float64(entry)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(
                f"boxes[{index}] must be a K x {width} tensor, array or nested list of numbers; "
                f"got {type(entry).__name__}"
            ) from None
        if tensor.numel() == 0:
            checked.append(tensor.reshape(0, width))
            continue
        if tensor.dim() != 2 or tensor.shape[1] != width:
            maps = _MAP_LAYOUTS[dims]
            raise ValueError(
                f"boxes[{index}] must be K x {width}, one box {corners} a row (one box is "
                f"[[{corners}]]) for {maps} maps; got shape {tuple(tensor.shape)}"
            )
        good = torch.isfinite(tensor).all(dim=1) & (tensor[:, :dims] < tensor[:, dims:]).all(dim=1)
        if not bool(good.all()):
            box = _first_true(~good)
            names = [f"{axis}1 < {axis}2" for axis in "xyz"[:dims]]
            ordered = " and ".join([", ".join(names[:-1]), names[-1]] if dims > 1 else names)
            raise ValueError(
                f"boxes[{index}][{box}] is {tensor[box].tolist()}: a box {corners} must "
                f"be finite with {ordered}"
            )
        checked.append(tensor)
    return checked


def _check_masks(masks: Any, maps: Tensor) -> Tensor:
    """``N x 1 x *spatial`` binary masks as ``(N, *spatial)`` bool on the maps' device."""
    layout = _MAP_LAYOUTS[maps.dim() - 1]
    if not isinstance(masks, Tensor):
        try:
            masks = torch.as_tensor(masks)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(
                f"masks must be an {layout} tensor; got {type(masks).__name__}"
            ) from None
    expected = (len(maps), 1, *maps.shape[1:])
    if tuple(masks.shape) != expected:
        # Labels without their channel axis (N x D x H x W): the one thing to add.
        hint = " (add the channel axis: masks[:, None])" if masks.shape == maps.shape else ""
        raise ValueError(
            f"masks must be {layout} like the attributions, {expected}; got "
            f"{tuple(masks.shape)}{hint}"
        )
    masks = masks.detach().to(maps.device)[:, 0]
    if masks.dtype != torch.bool:
        binary = (masks == 0) | (masks == 1)
        if not bool(binary.all()):
            value = masks[~binary][0].item()
            index = _first_true(~binary.flatten(1).all(dim=1))
            raise ValueError(
                f"masks must be binary (bool, or 0 and 1 values); example {index} holds {value}"
            )
        masks = masks != 0
    return masks


# --- Tensor helpers --------------------------------------------------------------------------


def _value_dtype(maps: Tensor) -> torch.dtype:
    """The dtype of the values: the maps', float32 at least (so that a box's corners up to
    16,777,216 pixels, and fractions, keep their digits under half-precision maps)."""
    return torch.promote_types(maps.dtype, torch.float32)


def _float64(values: Any) -> Tensor:
    """``values`` as a float64 CPU tensor; numbers given as Python floats keep every digit
    (``torch.as_tensor([0.7])`` would round them to float32 first)."""
    if isinstance(values, Tensor):
        return values.detach().to("cpu", torch.float64)
    return torch.as_tensor(values, dtype=torch.float64)


def _indices(flags: Tensor) -> list[int]:
    return flags.nonzero().squeeze(1).tolist()


def _first_true(flags: Tensor, dim: int | None = None) -> Any:
    """The index of the first ``True`` along ``dim`` (its length where there is none); an int
    for ``dim=None`` on a 1-D tensor. Written out rather than ``argmax``, so that ties are
    broken the same way on every device."""
    if dim is None:
        size = len(flags)
        positions = torch.arange(size, device=flags.device)
        return int(torch.where(flags, positions, size).amin())
    size = flags.shape[dim]
    shape = [1] * flags.dim()
    shape[dim] = size
    positions = torch.arange(size, device=flags.device).view(shape)
    return torch.where(flags, positions, size).amin(dim=dim)


def _last_true(flags: Tensor, dim: int) -> Tensor:
    """The index of the last ``True`` along ``dim`` (-1 where there is none)."""
    size = flags.shape[dim]
    shape = [1] * flags.dim()
    shape[dim] = size
    positions = torch.arange(size, device=flags.device).view(shape)
    return torch.where(flags, positions, -1).amax(dim=dim)


def _iou(first: Tensor, second: Tensor) -> Tensor:
    """IoU of boxes ``(..., 2 d)`` with whole-pixel corners, broadcast, in float64: the
    intersection and the areas (volumes) are products of the sides, ``x`` first."""
    first, second = first.double(), second.double()
    dims = first.shape[-1] // 2
    low = torch.maximum(first[..., :dims], second[..., :dims])
    sides = (torch.minimum(first[..., dims:], second[..., dims:]) - low).clamp(min=0)
    first_sides = first[..., dims:] - first[..., :dims]
    second_sides = second[..., dims:] - second[..., :dims]
    inter, area_first, area_second = sides[..., 0], first_sides[..., 0], second_sides[..., 0]
    for axis in range(1, dims):
        inter = inter * sides[..., axis]
        area_first = area_first * first_sides[..., axis]
        area_second = area_second * second_sides[..., axis]
    union = area_first + area_second - inter
    return inter / union.clamp(min=1)


# --- Connected regions -----------------------------------------------------------------------
#
# Labelling every pixel of N x T binary images by propagation costs N * T * H * W operations
# per step, over dozens of steps (tens of seconds for 16 maps of 224 x 224 at 100 thresholds on
# a CPU). The regions are found instead from the runs of foreground along each row: a pixel of
# level k (foreground at the thresholds j < k) starts a run at the thresholds between its left
# neighbour's level and its own, so that every run of every threshold comes from one pass
# over the pixels, and smooth maps have few runs. Runs on adjacent rows whose columns overlap,
# or touch diagonally, are 8-connected; a union-find on those links, with pointer jumping,
# labels each region by its first run, which holds its first pixel in row-major order.
#
# A volume's rows are those of every slice, in row-major order (slice, then row); a run links
# to the runs of the 8 rows around its own (the next and previous row of its slice, and the
# three rows facing it in each neighbouring slice) whose columns overlap or touch diagonally:
# 26-connectivity, every voxel touching by a face, an edge or a corner, as 8-connectivity is
# for pixels. A signal is one row: its regions are its runs.


class _Runs(NamedTuple):
    """Every run of foreground, sorted by group (a map at one threshold), row and column."""

    group: Tensor
    row: Tensor  # the row's index among the map's rows, in row-major order
    start: Tensor  # first column
    end: Tensor  # last column


def _rows_of(levels: Tensor) -> Tensor:
    """``(n, *spatial)`` maps as ``(n, R, W)``: their rows, every slice's for a volume, one for
    a signal."""
    return levels.reshape(len(levels), -1, levels.shape[-1])


def _runs(levels: Tensor, steps: int) -> _Runs:
    """The runs of ``levels`` (``n x R x W`` ints in ``[0, steps]``, a pixel foreground at the
    thresholds ``j < level``) at each threshold, group ``example * steps + j``."""
    height, width = levels.shape[1:]
    device = levels.device
    padded = F.pad(levels, (1, 1))
    keys = []
    # A run starts where the left neighbour is background, and ends where the right one is.
    for neighbour in (padded[..., :-2], padded[..., 2:]):
        spans = (levels - neighbour).clamp(min=0).flatten()
        pixels = torch.repeat_interleave(torch.arange(len(spans), device=device), spans)
        offsets = torch.arange(len(pixels), device=device) - torch.repeat_interleave(
            spans.cumsum(0) - spans, spans
        )
        step = neighbour.flatten().index_select(0, pixels) + offsets
        example, position = pixels // (height * width), pixels % (height * width)
        keys.append((((example * steps + step) * height * width) + position).sort().values)
    starts, ends = keys
    return _Runs(
        starts // (height * width),
        starts // width % height,
        starts % width,
        ends % width,
    )


def _row_indices(rows: Tensor, shape: Sequence[int]) -> list[Tensor]:
    """The index of each row along each axis of ``shape`` (the spatial axes but the last)."""
    indices = []
    for side in reversed(shape):
        indices.insert(0, rows % side)
        rows = rows // side
    return indices


def _row_steps(shape: Sequence[int]) -> list[tuple[int, ...]]:
    """The steps from a row to the rows of the following half of its neighbours, which touch
    it (the other half link to it): every step of -1, 0 or 1 along each axis of ``shape``
    whose first non-zero step is 1. ``[(1,)]`` for images, the next row; 4 steps for volumes."""
    found = [()]
    for _ in shape:
        found = [(*step, move) for step in found for move in (-1, 0, 1)]
    return [step for step in found if any(step) and next(m for m in step if m) == 1]


def _label_runs(runs: _Runs, shape: Sequence[int], width: int) -> Tensor:
    """Each run's region, as the index of the region's first run; ``shape`` is the maps'
    spatial shape but the last axis, ``width`` the last axis's length."""
    count = len(runs.group)
    device = runs.group.device
    rows = math.prod(shape)
    stride = width + 2  # columns shifted by one, so that -1 and width fit in a row's keys
    row_key = runs.group * rows + runs.row
    start_key = row_key * stride + runs.start + 1
    end_key = row_key * stride + runs.end + 1
    indices = _row_indices(runs.row, shape)
    uppers, lowers = [], []
    for step in _row_steps(shape):
        # The runs of the row ``step`` away that overlap [start - 1, end + 1] are consecutive:
        # from the first that ends at start - 1 or later to the last that starts at end + 1 or
        # earlier.
        offset = sum(move * math.prod(shape[axis + 1 :]) for axis, move in enumerate(step))
        below = (row_key + offset) * stride
        first = torch.searchsorted(end_key, below + runs.start, side="left")
        last = torch.searchsorted(start_key, below + runs.end + 2, side="right") - 1
        inside = torch.ones_like(runs.row, dtype=torch.bool)
        for index, move, side in zip(indices, step, shape, strict=True):
            inside &= (index + move >= 0) & (index + move < side)
        links = torch.where(inside, (last - first + 1).clamp(min=0), 0)
        uppers.append(torch.repeat_interleave(torch.arange(count, device=device), links))
        lowers.append(
            torch.repeat_interleave(first, links)
            + (
                torch.arange(len(uppers[-1]), device=device)
                - torch.repeat_interleave(links.cumsum(0) - links, links)
            )
        )
    label = torch.arange(count, device=device)
    if not uppers:  # a signal: every run is a region
        return label
    upper, lower = torch.cat(uppers), torch.cat(lowers)
    while True:
        # Hook the larger label of each link under the smaller; when no hook changes a label
        # (the labels being roots), every link joins runs of one label.
        label_upper = label.index_select(0, upper)
        label_lower = label.index_select(0, lower)
        before = label.clone()
        label.scatter_reduce_(
            0,
            torch.maximum(label_upper, label_lower),
            torch.minimum(label_upper, label_lower),
            "amin",
        )
        if torch.equal(label, before):
            return label
        # Jump every label to its root.
        while True:
            jumped = label.index_select(0, label)
            if torch.equal(jumped, label):
                break
            label = jumped


def _largest_region_boxes(levels: Tensor, steps: int) -> Tensor:
    """``(n, steps, 2 d)`` long: the tight box of the largest connected region (8-connected
    pixels, 26-connected voxels) of each of the ``n x *spatial`` maps at each threshold (every
    map has foreground at every threshold), a few maps at a time."""
    count = len(levels)
    left = F.pad(levels, (1, 0))[..., :-1]
    per_map = (levels - left).clamp(min=0).flatten(1).sum(dim=1).tolist()
    boxes = []
    start = 0
    while start < count:
        stop, total = start + 1, per_map[start]
        while stop < count and total + per_map[stop] <= _RUNS_PER_CHUNK:
            total += per_map[stop]
            stop += 1
        boxes.append(_largest_in_chunk(levels[start:stop], steps))
        start = stop
    return torch.cat(boxes)


def _box_reducers(runs: _Runs, shape: Sequence[int], width: int) -> list[tuple[Tensor, int, str]]:
    """What the tight box of runs reduces: per corner ``x1, y1, (z1,) x2, y2, (z2)``, the runs'
    values along that axis, the reduction's starting value and the reduction."""
    indices = _row_indices(runs.row, shape)[::-1]  # y, then z
    sides = list(shape)[::-1]
    lows = [(runs.start, width, "amin")] + [
        (index, side, "amin") for index, side in zip(indices, sides, strict=True)
    ]
    highs = [(runs.end, -1, "amax")] + [(index, -1, "amax") for index in indices]
    return lows + highs


def _largest_in_chunk(levels: Tensor, steps: int) -> Tensor:
    count, *size = levels.shape
    shape, width = size[:-1], size[-1]
    device = levels.device
    runs = _runs(_rows_of(levels), steps)
    label = _label_runs(runs, shape, width)
    groups = count * steps
    lengths = runs.end - runs.start + 1
    total = len(label)
    index = torch.arange(total, device=device)
    # Each region's pixel count, at its first run (0 at the others).
    size_of = torch.zeros(total, dtype=torch.long, device=device).scatter_add_(0, label, lengths)
    largest = torch.zeros(groups, dtype=torch.long, device=device).scatter_reduce_(
        0, runs.group, size_of, "amax"
    )
    # Of the largest regions, the first: its first run (its label) comes first.
    tied = size_of == largest.index_select(0, runs.group)
    chosen = torch.full((groups,), total, dtype=torch.long, device=device).scatter_reduce_(
        0, runs.group, torch.where(tied, index, total), "amin"
    )
    member = label == chosen.index_select(0, runs.group)

    def reduce(values: Tensor, initial: int, how: str) -> Tensor:
        out = torch.full((groups,), initial, dtype=torch.long, device=device)
        return out.scatter_reduce_(0, runs.group, torch.where(member, values, initial), how)

    corners = [reduce(*reducer) for reducer in _box_reducers(runs, shape, width)]
    dims = len(size)
    box = torch.stack(corners[:dims] + [corner + 1 for corner in corners[dims:]], dim=1)
    return box.view(count, steps, 2 * dims)


def _component_boxes(masks: Tensor) -> tuple[Tensor, Tensor]:
    """``(N, K, 2 d)`` long: the tight boxes of each mask's connected components (8-connected
    pixels, 26-connected voxels), padded, with their ``(N, K)`` validity."""
    count, *size = masks.shape
    shape, width = size[:-1], size[-1]
    device = masks.device
    runs = _runs(_rows_of(masks.long()), 1)
    label = _label_runs(runs, shape, width)
    total = len(label)

    def reduce(values: Tensor, initial: int, how: str) -> Tensor:
        out = torch.full((total,), initial, dtype=torch.long, device=device)
        return out.scatter_reduce_(0, label, values, how)

    corners = [reduce(*reducer) for reducer in _box_reducers(runs, shape, width)]
    dims = len(size)
    box = torch.stack(corners[:dims] + [corner + 1 for corner in corners[dims:]], dim=1)
    roots = (label == torch.arange(total, device=device)).nonzero().squeeze(1)
    example = runs.group[roots]
    per_example = torch.bincount(example, minlength=count)
    most = int(per_example.max()) if count else 0
    # Roots come sorted by example: each one's place among its example's components.
    place = torch.arange(len(roots), device=device) - (per_example.cumsum(0) - per_example)[example]
    padded = torch.zeros(count, most, 2 * dims, dtype=torch.long, device=device)
    valid = torch.zeros(count, most, dtype=torch.bool, device=device)
    padded[example, place] = box[roots]
    valid[example, place] = True
    return padded, valid
