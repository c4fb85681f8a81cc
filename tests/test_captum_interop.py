"""PolyCam plugs into Captum's visualisation and metrics as any Captum attribution does."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import torch
from captum.attr import LayerAttribution, visualization
from captum.metrics import infidelity, sensitivity_max
from matplotlib import pyplot as plt
from torch import Tensor, nn

from captum_polycam import PolyCam

LAYERS = ["block1", "block2", "block3"]


def test_visualize_image_attr_draws_the_map(tiny_cnn: nn.Module, tiny_inputs: Tensor) -> None:
    maps = PolyCam(tiny_cnn, LAYERS).attribute(tiny_inputs[:1])
    image = (tiny_inputs[0] - tiny_inputs[0].min()) / (tiny_inputs[0].max() - tiny_inputs[0].min())
    figure, axis = plt.subplots()
    _, result_axis = visualization.visualize_image_attr(
        maps[0].permute(1, 2, 0).numpy(),
        image.permute(1, 2, 0).numpy(),
        method="blended_heat_map",
        sign="positive",
        plt_fig_axis=(figure, axis),
        use_pyplot=False,
    )
    assert result_axis is axis and len(axis.images) == 2
    plt.close(figure)


def test_sensitivity_max_runs_on_attribute(tiny_cnn: nn.Module, tiny_inputs: Tensor) -> None:
    polycam = PolyCam(tiny_cnn, LAYERS)
    torch.manual_seed(0)
    sensitivity = sensitivity_max(
        polycam.attribute, tiny_inputs[:2], target=[1, 2], n_perturb_samples=3
    )
    assert sensitivity.shape == (2,)
    assert torch.isfinite(sensitivity).all() and float(sensitivity.min()) > 0


def test_infidelity_runs_on_the_map(tiny_cnn: nn.Module, tiny_inputs: Tensor) -> None:
    maps = PolyCam(tiny_cnn, LAYERS).attribute(tiny_inputs, target=1)

    def perturb(inputs: Tensor) -> tuple[Tensor, Tensor]:
        noise = torch.randn_like(inputs) * 0.1
        return noise, inputs - noise

    torch.manual_seed(0)
    scores = infidelity(tiny_cnn, perturb, tiny_inputs, maps.expand_as(tiny_inputs), target=1)
    assert scores.shape == (3,) and torch.isfinite(scores).all()


def test_is_a_captum_layer_and_perturbation_attribution(tiny_cnn: nn.Module) -> None:
    from captum.attr import PerturbationAttribution

    polycam = PolyCam(tiny_cnn, LAYERS)
    assert isinstance(polycam, LayerAttribution) and isinstance(polycam, PerturbationAttribution)
    assert polycam.layer == [tiny_cnn.block1, tiny_cnn.block2, tiny_cnn.block3]
    assert not polycam.has_convergence_delta()
