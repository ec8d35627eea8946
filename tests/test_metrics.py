from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from fastdat.metrics import psnr, ssim


@pytest.mark.parametrize("shape", [(64, 64), (37, 53)])
def test_against_scikit_image(shape):
    rng = np.random.default_rng(0)
    ref = rng.gamma(2.0, 3.0, size=(4, *shape))
    img = ref + rng.normal(0, 1.5, size=ref.shape)
    p = psnr(torch.from_numpy(img), torch.from_numpy(ref))
    s = ssim(torch.from_numpy(img), torch.from_numpy(ref))
    for k in range(4):
        m = ref[k].max()
        want_p = peak_signal_noise_ratio(ref[k] / m, img[k] / m, data_range=1)
        want_s = structural_similarity(
            ref[k] / m,
            img[k] / m,
            data_range=1,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        assert p[k].item() == pytest.approx(want_p, abs=1e-9)
        assert s[k].item() == pytest.approx(want_s, abs=1e-9)


def test_identical_images_and_bad_input():
    ref = torch.rand(32, 32) + 0.1
    assert ssim(ref, ref).item() == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="shape"):
        psnr(ref, ref[:-1])
    with pytest.raises(ValueError, match="non-positive"):
        psnr(ref, torch.zeros(32, 32))
