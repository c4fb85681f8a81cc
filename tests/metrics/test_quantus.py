"""Cross-checks with Quantus where the definitions coincide, and Poly-CAM as Quantus's
``explain_func``.

Quantus's ``PointingGame`` is a hit when *any* maximal pixel lies in the mask; ours points at
the first maximal pixel in row-major order (TorchRay's ``argmax``), with a tolerance. They agree
at ``tolerance=0`` on maps with one maximum, which random maps have: ties are excluded, and
shown to differ below. Quantus also scores a constant map (every pixel maximal) as a hit where
ours is undefined, and an empty mask as a hit (its NaN cast to a bool) where ours is undefined:
both excluded. Quantus's ``RelevanceMassAccuracy`` is our ``EnergyPointingGame`` with masks;
Quantus takes negative maps, which ours refuses, so the maps are non-negative.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from captum_polycam import PolyCam
from captum_polycam.attr import poly_cam_explain_func
from captum_polycam.metrics import EnergyPointingGame, PointingGame
from tests.conftest import TinyCNN

quantus = pytest.importorskip("quantus")

CASES = [(4, 5, 5), (3, 7, 4), (6, 16, 12)]  # N, H, W
SEEDS = [0, 1, 2]


def random_case(count: int, height: int, width: int, seed: int) -> tuple[np.ndarray, ...]:
    """Inputs, targets, non-negative maps with one maximum each, and masks with a pixel each."""
    rng = np.random.default_rng(seed)
    inputs = rng.random((count, 3, height, width)).astype(np.float32)
    targets = np.zeros(count, dtype=np.int64)
    maps = rng.random((count, 1, height, width))
    maps[rng.random(maps.shape) < 0.3] = 0.0  # zeros, as CAMs have
    masks = rng.random((count, 1, height, width)) < 0.3
    masks[:, 0, 0, 0] |= ~masks.reshape(count, -1).any(axis=1)  # never empty
    flat = maps.reshape(count, -1)
    assert ((flat == flat.max(axis=1, keepdims=True)).sum(axis=1) == 1).all()  # no tie
    return inputs, targets, maps, masks


def quantus_scores(metric: type, inputs: np.ndarray, *arrays: np.ndarray) -> np.ndarray:
    # No normalisation nor absolute value: the maps as given, as ours takes them.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = metric(normalise=False, abs=False, disable_warnings=True)(
            model=None,
            x_batch=inputs,
            y_batch=np.zeros(len(inputs), dtype=np.int64),
            a_batch=arrays[0],
            s_batch=arrays[1],
            channel_first=True,
        )
    return np.asarray(scores, dtype=np.float64)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", CASES, ids=lambda shape: "x".join(map(str, shape)))
def test_pointing_game_equals_quantus_at_tolerance_0(
    shape: tuple[int, int, int], seed: int
) -> None:
    inputs, _, maps, masks = random_case(*shape, seed)
    expected = quantus_scores(quantus.PointingGame, inputs, maps, masks.astype(np.float32))
    ours = PointingGame(tolerance=0)(torch.from_numpy(maps), masks=torch.from_numpy(masks))
    np.testing.assert_array_equal(ours.values.numpy(), expected)


def test_the_random_cases_hold_hits_and_misses() -> None:
    values = []
    for shape in CASES:
        for seed in SEEDS:
            _, _, maps, masks = random_case(*shape, seed)
            metric = PointingGame(tolerance=0)
            values += metric(torch.from_numpy(maps), masks=torch.from_numpy(masks)).values.tolist()
    assert 0.2 < np.mean(values) < 0.8


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("shape", CASES, ids=lambda shape: "x".join(map(str, shape)))
def test_energy_equals_quantus_relevance_mass_accuracy(
    shape: tuple[int, int, int], seed: int
) -> None:
    inputs, _, maps, masks = random_case(*shape, seed)
    expected = quantus_scores(quantus.RelevanceMassAccuracy, inputs, maps, masks)
    ours = EnergyPointingGame()(torch.from_numpy(maps), masks=torch.from_numpy(masks))
    np.testing.assert_allclose(ours.values.numpy(), expected, rtol=1e-12)


def test_pointing_game_ties_differ_from_quantus() -> None:
    # Maxima at (0, 3) and (1, 0); the mask holds (1, 0) only. Ours points at (0, 3), the first
    # in row-major order: a miss. Quantus hits with any maximal pixel.
    maps = np.zeros((1, 1, 2, 4))
    maps[0, 0, 0, 3] = maps[0, 0, 1, 0] = 1.0
    masks = np.zeros((1, 1, 2, 4), dtype=bool)
    masks[0, 0, 1, 0] = True
    inputs = np.zeros((1, 3, 2, 4), dtype=np.float32)
    assert quantus_scores(quantus.PointingGame, inputs, maps, masks).tolist() == [1.0]
    ours = PointingGame(tolerance=0)(torch.from_numpy(maps), masks=torch.from_numpy(masks))
    assert ours.values.tolist() == [0.0]


# --- poly_cam_explain_func -------------------------------------------------------------------


@pytest.fixture
def model() -> TinyCNN:
    torch.manual_seed(0)
    return TinyCNN().eval()


def batch(seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    inputs = rng.standard_normal((3, 3, 16, 16)).astype(np.float32)
    targets = np.array([0, 2, 4])
    masks = np.zeros((3, 1, 16, 16), dtype=np.float32)
    masks[:, :, 2:9, 4:12] = 1.0
    return inputs, targets, masks


def test_explain_func_gives_poly_cam_maps(model: TinyCNN) -> None:
    inputs, targets, _ = batch()
    maps = poly_cam_explain_func(model=model, inputs=inputs, targets=targets)
    assert isinstance(maps, np.ndarray) and maps.shape == (3, 1, 16, 16)
    assert maps.dtype == np.float32
    direct = PolyCam(model).attribute(torch.from_numpy(inputs), target=torch.from_numpy(targets))
    torch.testing.assert_close(torch.from_numpy(maps), direct)
    assert float(maps.max()) > 0


def test_explain_func_forwards_poly_cam_options(model: TinyCNN) -> None:
    inputs, targets, _ = batch()
    layers = ["block2", "block3"]
    maps = poly_cam_explain_func(
        model, inputs.astype(np.float64), targets.tolist(), layers=layers, variant="plus"
    )
    direct = PolyCam(model, layers, variant="plus").attribute(
        torch.from_numpy(inputs), target=targets.tolist()
    )
    torch.testing.assert_close(torch.from_numpy(maps), direct)
    with pytest.raises(AssertionError):  # the options change the maps
        torch.testing.assert_close(
            torch.from_numpy(maps),
            PolyCam(model).attribute(torch.from_numpy(inputs), target=targets.tolist()),
        )


def test_explain_func_refuses_what_poly_cam_does_not_take(model: TinyCNN) -> None:
    inputs, targets, _ = batch()
    with pytest.raises(TypeError, match="abs, normalise that Poly-CAM does not take"):
        poly_cam_explain_func(model, inputs, targets, normalise=True, abs=True)
    with pytest.raises(TypeError, match=r"model must be an nn\.Module"):
        poly_cam_explain_func("model", inputs, targets)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="device is 'meta' but the model's parameters are on"):
        poly_cam_explain_func(model, inputs, targets, device="meta")
    with pytest.raises(ValueError, match="device must name a torch device"):
        poly_cam_explain_func(model, inputs, targets, device="gpu0")
    with pytest.raises(ValueError, match="targets must be class indices"):
        poly_cam_explain_func(model, inputs, np.array([0.5, 1.0, 2.0]))


def test_explain_func_takes_quantus_keywords(model: TinyCNN) -> None:
    inputs, targets, _ = batch()
    maps = poly_cam_explain_func(model, inputs, targets, device="cpu", method="PolyCam")
    direct = PolyCam(model).attribute(torch.from_numpy(inputs), target=torch.from_numpy(targets))
    torch.testing.assert_close(torch.from_numpy(maps), direct)


def test_quantus_metric_runs_poly_cam(model: TinyCNN) -> None:
    inputs, targets, masks = batch()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = quantus.RelevanceMassAccuracy(disable_warnings=True)(
            model=model,
            x_batch=inputs,
            y_batch=targets,
            a_batch=None,
            s_batch=masks,
            explain_func=poly_cam_explain_func,
            explain_func_kwargs={"variant": "plusminus"},
            device="cpu",
        )
        hits = quantus.PointingGame(disable_warnings=True)(
            model=model,
            x_batch=inputs,
            y_batch=targets,
            a_batch=None,
            s_batch=masks,
            explain_func=poly_cam_explain_func,
        )
    assert len(scores) == 3 and np.isfinite(scores).all()
    assert len(hits) == 3
    # Quantus divides the maps by their maximum first, which the energy does not see.
    maps = torch.from_numpy(poly_cam_explain_func(model, inputs, targets))
    ours = EnergyPointingGame()(maps, masks=torch.from_numpy(masks))
    np.testing.assert_allclose(ours.values.numpy(), np.asarray(scores), rtol=1e-5)


def test_quantus_evaluate_runs_poly_cam(model: TinyCNN) -> None:
    # quantus.evaluate adds method=<the method's name> to the keywords.
    inputs, targets, masks = batch()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = quantus.evaluate(
            metrics={"mass": quantus.RelevanceMassAccuracy(disable_warnings=True)},
            xai_methods={"PolyCam": poly_cam_explain_func},
            model=model,
            x_batch=inputs,
            y_batch=targets,
            s_batch=masks,
            explain_func_kwargs={"variant": "plus"},
        )
    scores = np.asarray(results["PolyCam"]["mass"])
    assert scores.shape == (3,) and np.isfinite(scores).all()
