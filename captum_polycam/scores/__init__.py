"""Score functions for models that are not classifiers: detectors and segmenters.

Each is a ``score_fn`` for :class:`~captum_polycam.PolyCam` and the metrics: it turns the
model's output for a pass of ``B`` inputs into a ``(B, T)`` tensor, the score of every input
against each of ``T`` targets (boxes, or regions), and the ``target`` argument picks each
input's own column. Inputs of several examples can then share a forward pass, each scored
against its own box or region.
"""

from captum_polycam.scores.detection import DetectionBoxScore
from captum_polycam.scores.segmentation import SegmentationScore

__all__ = ["DetectionBoxScore", "SegmentationScore"]
