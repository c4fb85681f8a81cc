"""reshape: stages laid out channels-last or as tokens, read as N x C x h x w maps.

The known answer: a CNN whose stages are rewritten channels-last, or as a class token and a
grid of tokens, computes exactly what the CNN computes, so Poly-CAM must give its maps.
"""

from __future__ import annotations

import re

import pytest
import torch
from torch import Tensor, nn

from captum_polycam import PolyCam, describe_layers
from captum_polycam.attr.capture import reshape_function
from tests.conftest import (
    FromChannelsLast,
    FromTokens,
    Restaged,
    TinyCNN,
    ToChannelsLast,
    ToTokens,
    hooked_modules,
)

CNN_LAYERS = ["block1", "block2", "block3"]
STAGES = ["stage1", "stage2", "stage3"]


def test_the_built_in_reshapes_by_hand() -> None:
    nhwc = torch.arange(24.0).reshape(1, 2, 3, 4)  # N x h x w x C
    assert torch.equal(reshape_function("nhwc")(nhwc), nhwc.permute(0, 3, 1, 2))
    # A class token then a 2 x 2 grid of 3-channel tokens: the class token is dropped.
    tokens = torch.arange(15.0).reshape(1, 5, 3)
    grid = reshape_function("tokens")(tokens)
    assert grid.shape == (1, 3, 2, 2)
    assert torch.equal(grid[0, :, 0, 1], tokens[0, 2])  # token 2: row 0, column 1
    assert torch.equal(grid[0, 2], torch.tensor([[5.0, 8.0], [11.0, 14.0]]))
    # A class and 4 register tokens before a 3 x 3 grid: 14 tokens, 5 dropped.
    assert reshape_function("tokens")(torch.rand(2, 14, 6)).shape == (2, 6, 3, 3)
    assert reshape_function(None) is None


@pytest.mark.parametrize(
    ("layout", "reshape"),
    [
        ((ToChannelsLast, FromChannelsLast), "nhwc"),
        ((ToChannelsLast, FromChannelsLast), lambda x: x.permute(0, 3, 1, 2)),
        ((ToTokens, FromTokens), "tokens"),
    ],
    ids=["nhwc", "callable", "tokens"],
)
@pytest.mark.parametrize("variant", ["plus", "minus", "plusminus"])
def test_restaged_models_give_the_cnns_maps(
    tiny_cnn: TinyCNN, tiny_inputs: Tensor, layout, reshape, variant: str
) -> None:
    model = Restaged(tiny_cnn, *layout).eval()
    expected = PolyCam(tiny_cnn, CNN_LAYERS, variant).attribute(tiny_inputs)
    polycam = PolyCam(model, STAGES, variant, reshape=reshape)
    maps = polycam.attribute(tiny_inputs)
    torch.testing.assert_close(maps, expected)
    singles = torch.cat([polycam.attribute(x[None], target=None) for x in tiny_inputs])
    torch.testing.assert_close(singles, maps)
    assert hooked_modules(model) == []


def test_describe_layers_reads_the_reshaped_maps(tiny_cnn: TinyCNN, tiny_inputs: Tensor) -> None:
    model = Restaged(tiny_cnn, ToTokens, FromTokens).eval()
    found = [str(layer) for layer in describe_layers(model, tiny_inputs, STAGES, reshape="tokens")]
    assert found == ["stage1 (4@16x16)", "stage2 (6@8x8)", "stage3 (8@4x4)"]


def test_mistakes_are_named(tiny_cnn: TinyCNN, tiny_inputs: Tensor) -> None:
    model = Restaged(tiny_cnn, ToChannelsLast, FromChannelsLast).eval()
    with pytest.raises(ValueError, match="reshape must be None, 'nhwc', 'tokens', 'package"):
        PolyCam(model, STAGES, reshape="nchw")
    with pytest.raises(ValueError, match=r"reshape: 'tests\.nowhere:f': cannot import it"):
        PolyCam(model, STAGES, reshape="tests.nowhere:f")
    # Without the reshape, a channels-last stage is read as the wrong shape: N x C x h x w is
    # all that says so here, so the message suggests the reshape when the maps are not 4-D.
    tokens = Restaged(tiny_cnn, ToTokens, FromTokens).eval()
    with pytest.raises(ValueError, match=re.escape("pass reshape='nhwc' for channels-last")):
        PolyCam(tokens, STAGES).attribute(tiny_inputs)
    with pytest.raises(ValueError, match="reshape failed on the output of stage1: boom"):

        def broken(x: Tensor) -> Tensor:
            raise RuntimeError("boom")

        PolyCam(model, STAGES, reshape=broken).attribute(tiny_inputs)
    with pytest.raises(ValueError, match="reshape='tokens' needs N x L x C outputs"):
        PolyCam(model, STAGES, reshape="tokens").attribute(tiny_inputs)
    assert hooked_modules(model) == [] and hooked_modules(tokens) == []


def restaged_channels_last() -> nn.Module:
    """A factory for the command line's ``--model``: TinyCNN with channels-last stages."""
    return Restaged(TinyCNN(), ToChannelsLast, FromChannelsLast).eval()


def from_channels_last(output: Tensor) -> Tensor:
    """A reshape that the command line and an evaluation can name."""
    return output.permute(0, 3, 1, 2)


def test_a_reshape_can_be_named_as_package_module_callable(
    tiny_cnn: TinyCNN, tiny_inputs: Tensor
) -> None:
    model = Restaged(tiny_cnn, ToChannelsLast, FromChannelsLast).eval()
    named = PolyCam(model, STAGES, reshape="tests.attr.test_reshape:from_channels_last")
    expected = PolyCam(model, STAGES, reshape="nhwc").attribute(tiny_inputs)
    torch.testing.assert_close(named.attribute(tiny_inputs), expected)


def test_discovery_reads_channels_last_stages(tiny_cnn: TinyCNN, tiny_inputs: Tensor) -> None:
    model = Restaged(tiny_cnn, ToChannelsLast, FromChannelsLast).eval()
    found = describe_layers(model, tiny_inputs, reshape="nhwc")
    assert [str(x) for x in found] == ["stage1 (4@16x16)", "stage2 (6@8x8)", "stage3 (8@4x4)"]
    expected = PolyCam(tiny_cnn, CNN_LAYERS).attribute(tiny_inputs)
    torch.testing.assert_close(PolyCam(model, reshape="nhwc").attribute(tiny_inputs), expected)
