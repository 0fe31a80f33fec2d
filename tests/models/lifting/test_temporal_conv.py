"""VideoPose3D's TCN: shapes for receptive fields 27/81/243, the receptive field and causality measured by
perturbing real inputs, the strided training form, edge padding, and ONNX export with a dynamic batch."""

from __future__ import annotations

import copy

import numpy as np
import onnxruntime as ort
import pytest
import torch

from posecore.codecs.pose_lifting import VideoPoseLifting
from posecore.models.lifting import TemporalConvNet, build_lifter

CHANNELS = 8  # tiny: the structure, not the capacity, is under test


def tcn(receptive_field: int, causal: bool, **options: object) -> TemporalConvNet:
    torch.manual_seed(0)
    model = build_lifter(
        "videopose3d", VideoPoseLifting(), receptive_field=receptive_field, causal=causal, channels=CHANNELS, **options
    )
    assert isinstance(model, TemporalConvNet)
    return model.eval()


def all_relus_active(model: TemporalConvNet) -> TemporalConvNet:
    """A copy whose BN biases keep every ReLU in its linear range, so that no dead unit hides a dependence.

    With a few random channels a ReLU can zero every path from an edge frame of a window; the
    receptive field is a property of the wiring, which this copy shows whole.
    """
    active = copy.deepcopy(model)
    with torch.no_grad():
        for m in active.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.bias.fill_(1e3)
    return active


def changed_outputs(model: TemporalConvNet, frames: int, *perturbed: list[int]) -> list[set[int]]:
    """For each list of input frames, the indices of the outputs that change when those frames change.

    One eval-mode float64 batch: the unperturbed sequence, then one copy per list. "Changes" is
    relative to the largest output: the rows of a batch may take different kernel paths (the
    CPU's vector width), which moves untouched outputs by a few ulps, 2e-12 on outputs of 1e4.
    """
    model = copy.deepcopy(model).double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, frames, 17, 2, generator=g, dtype=torch.float64).repeat(1 + len(perturbed), 1, 1, 1)
    for row, chosen in enumerate(perturbed, start=1):
        x[row, chosen] += torch.randn(len(chosen), 17, 2, generator=g, dtype=torch.float64)
    with torch.no_grad():
        out = model(x)
    diff = (out[1:] - out[:1]).abs().amax(dim=(2, 3))  # (len(perturbed), T_out)
    tol = 1e-10 * float(out.abs().max())
    return [{int(i) for i in torch.nonzero(d > tol).flatten()} for d in diff]


@pytest.mark.parametrize("receptive_field", [27, 81, 243])
@pytest.mark.parametrize("causal", [False, True])
def test_output_shapes(receptive_field: int, causal: bool) -> None:
    model = tcn(receptive_field, causal)
    assert len(model.blocks) == {27: 2, 81: 3, 243: 4}[receptive_field]
    assert [b.dilated.conv.dilation[0] for b in model.blocks] == [3, 9, 27, 81][: len(model.blocks)]
    for frames in (receptive_field, receptive_field + 7):
        out = model(torch.randn(2, frames, 17, 2))
        assert out.shape == (2, frames - receptive_field + 1, 17, 3)


@pytest.mark.parametrize("receptive_field", [27, 81, 243])
@pytest.mark.parametrize("causal", [False, True])
def test_receptive_field_by_perturbing_one_frame(receptive_field: int, causal: bool) -> None:
    model = tcn(receptive_field, causal)
    frames = receptive_field + 20
    ks = (0, 10, receptive_field // 2 + 3, frames - 1)
    wired = changed_outputs(all_relus_active(model), frames, *([k] for k in ks))
    built = changed_outputs(model, frames, *([k] for k in ks))
    for k, w, b in zip(ks, wired, built, strict=True):
        expected = {i for i in range(frames - receptive_field + 1) if i <= k <= i + receptive_field - 1}
        assert w == expected, f"frame {k}"
        assert b <= expected, f"frame {k}"  # the model as built never reaches further


@pytest.mark.parametrize("receptive_field", [27, 81])
def test_causal_outputs_never_see_later_frames(receptive_field: int) -> None:
    model = tcn(receptive_field, causal=True)
    frames = receptive_field + 30
    frame_of = list(model.output_frames(frames))
    assert frame_of == list(range(receptive_field - 1, frames))
    ts = (receptive_field - 1, receptive_field + 5, frames - 2)
    later = [list(range(t + 1, frames)) for t in ts]
    built, wired = changed_outputs(model, frames, *later), changed_outputs(all_relus_active(model), frames, *later)
    for t, b, w in zip(ts, built, wired, strict=True):
        assert all(frame_of[i] > t for i in b | w), f"an output at frame <= {t} saw a later frame"
        assert set(range(frame_of.index(t + 1), len(frame_of))) == w  # every output from frame t + 1 on does


@pytest.mark.parametrize("receptive_field", [27, 81])
def test_centred_outputs_see_both_sides(receptive_field: int) -> None:
    model = all_relus_active(tcn(receptive_field, causal=False))
    frames = receptive_field + 30
    frame_of = list(model.output_frames(frames))
    half = receptive_field // 2
    assert frame_of == list(range(half, frames - half))
    i = 15
    f = frame_of[i]
    past, future, outside = changed_outputs(model, frames, [f - half], [f + half], [f - half - 1, f + half + 1])
    assert i in past and i in future  # the farthest past and future frames of its window
    assert i not in outside


@pytest.mark.parametrize("receptive_field", [27, 243])
@pytest.mark.parametrize("causal", [False, True])
def test_stride_conv_equals_the_dilated_network(receptive_field: int, causal: bool) -> None:
    model = tcn(receptive_field, causal).double()
    x = torch.randn(3, receptive_field, 17, 2, dtype=torch.float64)
    with torch.no_grad():
        dilated = model(x)
        model.use_stride_conv = True
        strided = model(x)
    assert strided.shape == dilated.shape == (3, 1, 17, 3)
    torch.testing.assert_close(strided, dilated, rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match="exactly 27 frames.*switch use_stride_conv off"):
        tcn(27, causal, use_stride_conv=True)(torch.zeros(1, 28, 17, 2))


def test_stride_conv_trains() -> None:
    model = tcn(27, False, use_stride_conv=True).train()
    model(torch.randn(4, 27, 17, 2)).square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("causal", [False, True])
def test_padding_gives_each_frame_its_output(causal: bool) -> None:
    model = tcn(27, causal)
    x = torch.randn(2, 40, 17, 2)
    padded = model.pad_inputs(x)
    assert padded.shape == (2, 40 + 26, 17, 2)
    out = model(padded)
    assert out.shape == (2, 40, 17, 3)
    assert list(model.output_frames(padded.shape[1])) == [f + (26 if causal else 13) for f in range(40)]
    first, last = (26, 0) if causal else (13, 13)
    assert bool((padded[:, :first] == x[:, :1]).all()) and bool(
        (padded[:, padded.shape[1] - last :] == x[:, -1:]).all()
    )
    torch.testing.assert_close(padded[:, first : first + 40], x)


def test_short_inputs_and_bad_settings_say_how_to_fix() -> None:
    with pytest.raises(ValueError, match="at least 27 frames.*pad_inputs"):
        tcn(27, False)(torch.zeros(1, 20, 17, 2))
    with pytest.raises(ValueError, match=r"\(N, T, J=17, C=2\)"):
        tcn(27, False)(torch.zeros(1, 30, 17, 3))
    for bad in (25, 1, 0, 27.0, True):
        with pytest.raises(ValueError, match="power of 3.*27, 81 or 243"):
            build_lifter("videopose3d", VideoPoseLifting(), receptive_field=bad)


def test_videopose3d_defaults() -> None:
    model = build_lifter("videopose3d", VideoPoseLifting())
    assert (model.receptive_field, model.causal, model.channels, model.use_stride_conv) == (243, False, 1024, False)
    assert model.expand.drop.p == 0.25


def test_onnx_export_with_a_dynamic_batch(tmp_path) -> None:
    model = tcn(27, causal=True)
    example = torch.randn(2, 30, 17, 2)
    path = tmp_path / "tcn.onnx"
    torch.onnx.export(
        model,
        (example,),
        str(path),
        input_names=["inputs"],
        output_names=["joints_3d"],
        dynamo=True,
        dynamic_shapes={"inputs": {0: torch.export.Dim("batch")}},
        external_data=False,
        verbose=False,
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 2, 5):
        x = torch.randn(batch, 30, 17, 2)
        (got,) = session.run(None, {"inputs": x.numpy()})
        with torch.no_grad():
            want = model(x).numpy()
        assert got.shape == want.shape == (batch, 4, 17, 3)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
