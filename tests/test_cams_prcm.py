"""CPN's pixel-region correlation module (wsss/cams/prcm.py) against per-region / per-pixel loops
of its definition, for both key layouts."""

import math

import pytest
import torch

from wsss.cams.prcm import class_keys, region_attention, region_vectors


def naive_regions(features, probs):
    """r[d, k] = sum_i softmax_i(probs_k)[i] * f[d, i] (one image)."""
    d, h, w = features.shape
    k = probs.shape[0]
    out = torch.zeros(d, k, dtype=torch.float64)
    for c in range(k):
        z = [math.exp(float(v)) for v in probs[c].reshape(-1)]
        total = sum(z)
        for i in range(h * w):
            out[:, c] += z[i] / total * features[:, i // w, i % w].double()
    return out


def naive_keys(projected, layout):
    """Class keys (K, E) from the projected region vectors (E, K): column k, or the reference's
    row-major reading of the (E, K) buffer as (K, E)."""
    e, k = projected.shape
    keys = torch.zeros(k, e, dtype=torch.float64)
    for c in range(k):
        for j in range(e):
            if layout == "transpose":
                keys[c, j] = projected[j, c]
            else:
                flat = c * e + j  # position in the (E, K) buffer
                keys[c, j] = projected[flat // k, flat % k]
    return keys


def naive_attention(keys, query, scale):
    """att[k, i] = exp(s * key_k . q_i) / sum_i' exp(s * key_k . q_i') (one image)."""
    e, h, w = query.shape
    k = keys.shape[0]
    att = torch.zeros(k, h, w, dtype=torch.float64)
    for c in range(k):
        logits = [scale * float((keys[c] * query[:, i // w, i % w].double()).sum()) for i in range(h * w)]
        top = max(logits)
        z = [math.exp(v - top) for v in logits]
        for i in range(h * w):
            att[c, i // w, i % w] = z[i] / sum(z)
    return att


@pytest.mark.parametrize("layout", ["transpose", "reference"])
def test_prcm_equals_the_per_region_and_per_pixel_loops(layout):
    g = torch.Generator().manual_seed(3)
    n, d, e, k, h, w = 2, 5, 4, 3, 3, 4
    features = torch.randn(n, d, h, w, generator=g)
    probs = torch.rand(n, k, h, w, generator=g)
    f10 = torch.nn.Conv2d(d, e, 1, bias=False)
    query = torch.relu(torch.randn(n, e, h, w, generator=g))
    with torch.no_grad():
        f10.weight.copy_(torch.randn(e, d, 1, 1, generator=g))
        regions = region_vectors(features, probs)
        assert regions.shape == (n, d, k, 1)
        projected = torch.relu(f10(regions))
        att = region_attention(class_keys(projected, layout), query)
    assert att.shape == (n, k, h, w)
    for b in range(n):
        r = naive_regions(features[b], probs[b])
        torch.testing.assert_close(regions[b, :, :, 0].double(), r, atol=1e-5, rtol=1e-5)
        proj = torch.relu(f10.weight.detach()[:, :, 0, 0].double() @ r)
        expected = naive_attention(naive_keys(proj, layout), query[b], scale=k ** -0.5)
        torch.testing.assert_close(att[b].double(), expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(att[b].sum(dim=(1, 2)).double(), torch.ones(k, dtype=torch.float64))


def test_the_two_layouts_differ_only_when_keys_are_not_symmetric():
    keys = torch.arange(6.0).reshape(1, 2, 3, 1)  # E = 2, K = 3
    assert class_keys(keys, "transpose")[0].tolist() == [[0.0, 3.0], [1.0, 4.0], [2.0, 5.0]]
    assert class_keys(keys, "reference")[0].tolist() == [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]
    with pytest.raises(ValueError, match="key layout"):
        class_keys(keys, "rows")


def test_attention_scale_defaults_to_one_over_sqrt_channels():
    g = torch.Generator().manual_seed(4)
    keys, query = torch.randn(1, 21, 4, generator=g), torch.randn(1, 4, 2, 3, generator=g)
    torch.testing.assert_close(region_attention(keys, query), region_attention(keys, query, scale=21 ** -0.5))
    assert not torch.allclose(region_attention(keys, query), region_attention(keys, query, scale=4 ** -0.5))
