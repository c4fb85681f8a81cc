"""PolyCam works with Captum's visualisation, metrics and wrappers as any Captum attribution."""

from __future__ import annotations

import inspect

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from captum.attr import LayerAttribution, NoiseTunnel, visualization
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


def test_infidelity_of_the_map_equals_its_definition(
    tiny_cnn: nn.Module, tiny_inputs: Tensor
) -> None:
    maps = PolyCam(tiny_cnn, LAYERS).attribute(tiny_inputs, target=1)
    attributions = maps.expand_as(tiny_inputs)
    step = torch.linspace(-0.2, 0.2, tiny_inputs[0].numel()).view_as(tiny_inputs[0])

    def perturb(inputs: Tensor) -> tuple[Tensor, Tensor]:
        perturbation = step.expand_as(inputs)  # the same for every sample: one term to check
        return perturbation, inputs - perturbation

    scores = infidelity(tiny_cnn, perturb, tiny_inputs, attributions, target=1, n_perturb_samples=3)
    # E[(I . attribution - (f(x) - f(x - I)))^2], f the logit of class 1.
    with torch.no_grad():
        drop = tiny_cnn(tiny_inputs)[:, 1] - tiny_cnn(tiny_inputs - step)[:, 1]
    expected = ((step * attributions).flatten(1).sum(dim=1) - drop) ** 2
    torch.testing.assert_close(scores, expected)
    assert float(expected.min()) > 0  # a value that depends on the map


def test_is_a_captum_layer_and_perturbation_attribution(tiny_cnn: nn.Module) -> None:
    from captum.attr import PerturbationAttribution

    polycam = PolyCam(tiny_cnn, LAYERS)
    assert isinstance(polycam, LayerAttribution) and isinstance(polycam, PerturbationAttribution)
    assert polycam.layer == [tiny_cnn.block1, tiny_cnn.block2, tiny_cnn.block3]
    assert not polycam.has_convergence_delta()


@pytest.mark.parametrize("nt_type", ["smoothgrad", "smoothgrad_sq", "vargrad"])
@pytest.mark.parametrize("batch_size", [None, 2])
def test_noise_tunnel_averages_polycam_over_noisy_copies(
    tiny_cnn: nn.Module, tiny_inputs: Tensor, nt_type: str, batch_size: int | None
) -> None:
    polycam = PolyCam(tiny_cnn, LAYERS, "plus")
    inputs, targets, samples, stdev = tiny_inputs[:2], torch.tensor([1, 3]), 3, 0.1
    torch.manual_seed(0)
    smoothed = NoiseTunnel(polycam).attribute(
        inputs,
        nt_type=nt_type,
        nt_samples=samples,
        nt_samples_batch_size=batch_size,
        stdevs=stdev,
        target=targets,
    )

    # The same noise, drawn as Captum draws it: one normal sample per element of each group of
    # copies, the copies of an example next to each other.
    torch.manual_seed(0)
    group = batch_size or samples
    maps = []
    for size in [group] * (samples // group) + [samples % group] * (samples % group > 0):
        noisy = inputs.repeat_interleave(size, dim=0)
        noisy = noisy + torch.normal(0, torch.tensor(stdev).repeat(noisy.shape))
        maps.append(
            polycam.attribute(noisy, target=targets.repeat_interleave(size)).view(
                len(inputs), size, 1, 16, 16
            )
        )
    stacked = torch.cat(maps, dim=1)
    mean, mean_sq = stacked.mean(dim=1), (stacked**2).mean(dim=1)
    expected = {"smoothgrad": mean, "smoothgrad_sq": mean_sq, "vargrad": mean_sq - mean**2}
    assert smoothed.shape == (2, 1, 16, 16)
    torch.testing.assert_close(smoothed, expected[nt_type], atol=1e-5, rtol=0)


def test_noise_tunnel_keeps_the_tuple_form(tiny_cnn: nn.Module, tiny_inputs: Tensor) -> None:
    smoothed = NoiseTunnel(PolyCam(tiny_cnn, LAYERS, "plus")).attribute(
        (tiny_inputs[:1],), nt_samples=2, target=0
    )
    assert isinstance(smoothed, tuple) and smoothed[0].shape == (1, 1, 16, 16)


def test_help_shows_polycams_own_arguments() -> None:
    init_doc = inspect.getdoc(PolyCam.__init__) or ""
    assert "variant:" in init_doc and "score_fn:" in init_doc and "device_ids" not in init_doc
    assert "Poly-CAM" in (inspect.getdoc(PolyCam) or "")
    assert "perturbations_per_eval" in (inspect.getdoc(PolyCam.attribute) or "")


def test_repr_names_layers_variant_and_score(tiny_cnn: nn.Module) -> None:
    assert repr(PolyCam(tiny_cnn, LAYERS, "plus")) == (
        "PolyCam(layers=['block1', 'block2', 'block3'], variant='plus', score_fn='softmax', "
        "local_normalisation=True, precision='fp32', compile=False)"
    )
    assert repr(PolyCam(tiny_cnn, ["block1:0"], score_fn=torch.sigmoid)) == (
        "PolyCam(layers=['block1:0'], variant='plusminus', score_fn=sigmoid, "
        "local_normalisation=True, precision='fp32', compile=False)"
    )
    discovered = (
        "PolyCam(layers=None, variant='plusminus', score_fn='softmax', local_normalisation=True, "
        "precision='fp32', compile=False)"
    )
    assert repr(PolyCam(tiny_cnn)) == discovered
