"""SEAM's pixel correlation module (wsss/cams/pcm.py) against a per-pixel loop of its definition."""

import math

import torch

from wsss.cams.pcm import PCM, pcm_affinity


def naive_pcm(cam, emb, eps=1e-5):
    """out[k, j] = sum_i cam[k, i] * W_ij / (sum_i' W_i'j + eps), W_ij = relu(cos-like(e_i, e_j))."""
    n, k, h, w = cam.shape
    out = torch.zeros(n, k, h * w, dtype=torch.float64)
    for b in range(n):
        pix = [emb[b, :, y, x].double() for y in range(h) for x in range(w)]
        unit = [p / (math.sqrt(float((p * p).sum())) + eps) for p in pix]
        for j in range(h * w):
            weights = [max(0.0, float((unit[i] * unit[j]).sum())) for i in range(h * w)]
            total = sum(weights) + eps
            for c in range(k):
                out[b, c, j] = sum(float(cam[b, c].reshape(-1)[i]) * weights[i] for i in range(h * w)) / total
    return out.reshape(n, k, h, w)


def test_pcm_equals_the_per_pixel_definition():
    g = torch.Generator().manual_seed(0)
    cam = torch.rand(2, 3, 3, 4, generator=g)
    emb = torch.randn(2, 5, 3, 4, generator=g)
    out = PCM()(cam, emb)
    assert out.shape == (2, 3, 3, 4)
    torch.testing.assert_close(out.double(), naive_pcm(cam, emb), atol=1e-5, rtol=1e-5)


def test_affinity_columns_sum_to_one_and_negative_similarities_are_cut():
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]).T.reshape(1, 2, 1, 3)  # pixels e0, e1, -e0
    aff = pcm_affinity(emb)[0]
    # e0 sees itself only (orthogonal to e1, opposite to -e0): column 0 = [1, 0, 0]
    torch.testing.assert_close(aff[:, 0], torch.tensor([1.0, 0.0, 0.0]), atol=1e-4, rtol=0)
    torch.testing.assert_close(aff.sum(dim=0), torch.ones(3), atol=1e-4, rtol=0)
    assert (aff >= 0).all()


def test_cam_is_resized_to_the_embedding_and_the_module_has_no_parameters():
    pcm = PCM()
    assert list(pcm.parameters()) == []
    cam = torch.rand(1, 2, 2, 2)
    emb = torch.randn(1, 4, 4, 4)
    up = torch.nn.functional.interpolate(cam, (4, 4), mode="bilinear", align_corners=True)
    torch.testing.assert_close(pcm(cam, emb), pcm(up, emb))
    # identical embeddings everywhere: every output pixel is the mean of the (resized) map
    same = torch.ones(1, 4, 4, 4)
    torch.testing.assert_close(pcm(up, same), up.mean(dim=(2, 3), keepdim=True).expand(1, 2, 4, 4), atol=1e-5,
                               rtol=1e-5)
