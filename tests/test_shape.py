"""Shape ops and matmul against PyTorch, forward and backward in float64."""

import pytest
import torch
import torch.nn.functional as TF

import minseg
import minseg.functional as F
from helpers import check_op

CASES = [
    ("reshape", lambda t: F.reshape(t, 4, -1), lambda t: t.reshape(4, -1)),
    ("view_tuple", lambda t: t.view((2, 30)), lambda t: t.reshape(2, 30)),
    ("flatten", lambda t: F.flatten(t, 1), lambda t: torch.flatten(t, 1)),
    ("flatten_middle", lambda t: F.flatten(t, 1, 2), lambda t: torch.flatten(t, 1, 2)),
    ("unsqueeze", lambda t: F.unsqueeze(t, -1), lambda t: t.unsqueeze(-1)),
    ("squeeze", lambda t: F.squeeze(F.unsqueeze(t, 1)), lambda t: t.unsqueeze(1).squeeze()),
    ("transpose", lambda t: F.transpose(t, 0, -1), lambda t: t.transpose(0, -1)),
    ("permute", lambda t: F.permute(t, 2, 0, 1), lambda t: t.permute(2, 0, 1)),
    ("T", lambda t: t.T, lambda t: t.permute(2, 1, 0)),
    ("flip", lambda t: F.flip(t, (0, -1)), lambda t: torch.flip(t, (0, -1))),
    ("slices", lambda t: t[1:, ::2, -3:], lambda t: t[1:, ::2, -3:]),
    ("int_and_none", lambda t: t[0, None, ..., 2], lambda t: t[0, None, ..., 2]),
    ("repeated_int_array", lambda t: t[[0, 2, 0, 0], 1], lambda t: t[[0, 2, 0, 0], 1]),
    ("int_tensor", lambda t: t[:, minseg.tensor([3, 3, 1])], lambda t: t[:, torch.tensor([3, 3, 1])]),
    ("center_crop", lambda t: F.center_crop(t, (2, 3)), lambda t: t[..., 1:3, 1:4]),
    ("center_crop_odd_margin", lambda t: F.center_crop(t, 3), lambda t: t[..., 0:3, 1:4]),
]


@pytest.mark.parametrize("name,ours,theirs", CASES, ids=[c[0] for c in CASES])
def test_shape_op_matches_torch(name, ours, theirs, rng, device):
    check_op(ours, theirs, rng.standard_normal((3, 4, 5)), device=device)


def test_boolean_mask_indexing(rng, device):
    x = rng.standard_normal((3, 4))
    mask = x > 0.2
    check_op(lambda t: t[minseg.to_device(mask, device)], lambda t: t[torch.tensor(mask)], x, device=device)


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_cat_matches_torch(dim, rng, device):
    shapes = [(2, 3, 4), (2, 3, 4), (2, 3, 4)]
    shapes = [tuple(s + k if axis == dim % 3 else s for axis, s in enumerate(shape)) for k, shape in enumerate(shapes)]
    arrays = [rng.standard_normal(s) for s in shapes]
    check_op(lambda *ts: F.cat(ts, dim), lambda *ts: torch.cat(ts, dim), *arrays, device=device)


@pytest.mark.parametrize("dim", [0, 2, -1])
def test_stack_matches_torch(dim, rng, device):
    arrays = [rng.standard_normal((2, 3)) for _ in range(3)]
    check_op(lambda *ts: F.stack(ts, dim), lambda *ts: torch.stack(ts, dim), *arrays, device=device)


MATMUL_SHAPES = [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((4,), (4, 5)), ((3, 4), (4,)), ((4,), (4,)),
                 ((2, 1, 3, 4), (5, 4, 2)), ((4,), (2, 4, 3)), ((2, 3, 4), (4,))]


@pytest.mark.parametrize("a_shape,b_shape", MATMUL_SHAPES, ids=str)
def test_matmul_matches_torch(a_shape, b_shape, rng, device):
    check_op(F.matmul, torch.matmul, rng.standard_normal(a_shape), rng.standard_normal(b_shape), device=device)
    check_op(lambda a, b: a @ b, lambda a, b: a @ b, rng.standard_normal(a_shape), rng.standard_normal(b_shape),
             device=device)


def test_matmul_non_contiguous(rng, device):
    check_op(F.matmul, torch.matmul, rng.standard_normal((5, 3)).T, rng.standard_normal((2, 5, 4))[:, :, ::2],
             device=device)


def test_linear_matches_torch(rng, device):
    check_op(F.linear, TF.linear, rng.standard_normal((2, 3, 6)), rng.standard_normal((4, 6)),
             rng.standard_normal(4), device=device)


def test_matmul_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"input has shape \(2, 3\) and other has shape \(4, 5\)"):
        F.matmul(minseg.zeros(2, 3), minseg.zeros(4, 5))


def test_cat_mismatch_names_the_offending_tensor():
    with pytest.raises(ValueError, match=r"tensors\[1\] has shape \(2, 4\).*except in dim 1"):
        F.cat([minseg.zeros(3, 4), minseg.zeros(2, 4)], dim=1)


def test_reshape_and_crop_errors_name_the_sizes():
    with pytest.raises(ValueError, match=r"shape \(5, -1\) is invalid for input of shape \(2, 3\)"):
        F.reshape(minseg.zeros(2, 3), 5, -1)
    with pytest.raises(ValueError, match="center_crop: size"):
        F.center_crop(minseg.zeros(1, 4, 4), (5, 2))
    with pytest.raises(ValueError, match="not a permutation"):
        F.permute(minseg.zeros(2, 3), 0, 0)


def test_accepts_unbatched_adds_and_removes_the_batch_axis():
    from minseg.functional.shape import accepts_unbatched

    seen = []

    @accepts_unbatched("double")
    def double(x, factor=2):
        """Doc kept."""
        seen.append(tuple(x.shape))
        return x * factor, x.sum()

    image = minseg.ones(3, 4, 5)
    doubled, total = double(image, factor=3)
    assert seen == [(1, 3, 4, 5)] and doubled.shape == (3, 4, 5) and total.shape == ()
    assert double.__doc__ == "Doc kept." and double(minseg.ones(2, 3, 4, 5))[0].shape == (2, 3, 4, 5)
    with pytest.raises(ValueError, match=r"double: input must be 3-D \(C, H, W\) or 4-D \(N, C, H, W\); got 2-D "
                                         r"with shape \(4, 5\)"):
        double(minseg.ones(4, 5))
