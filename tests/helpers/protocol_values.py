"""PSNR / SSIM that other codebases' own metric code gives on real photographs, for the protocol tests.

The values were computed by running each codebase's own metric code on the three photographs of
tests/fixtures/official/official_metrics.npz (scikit-image's astronaut, coffee, chelsea; SR = PIL bicubic /4
then x4, uint8 RGB), in a scratch environment outside this repository (numpy 2, opencv-python-headless):
- ttsr_official: researchmm/TTSR@550e4c9e utils.py calc_psnr_and_ssim(sr, hr) on (1, 3, H, W) float32
  tensors uint8 / 127.5 - 1 (the fixture's own psnr_/ssim_ values are the same numbers);
- basicsr: XPixelGroup/BasicSR@8d56e3a basicsr/metrics/psnr_ssim.py calculate_psnr / calculate_ssim
  (img=sr, img2=hr, crop_border=4, input_order="HWC", test_y_channel=True) on the uint8 images in BGR
  order (what BasicSR's tensor2img(rgb2bgr=True) feeds); yumingj/C2-Matching@6d60149's
  mmsr/utils/metrics.py gives the same to 2e-6 dB;
- mmagic: open-mmlab/mmagic@0a560bb mmagic/evaluation/metrics/psnr.py psnr() and ssim.py ssim()
  (crop_border=4, input_order="CHW", convert_to=None), the function sources run as they are (their
  modules need mmengine / mmcv, which were not installed);
- masa: dvlab-research/MASA-SR@80d1bd8 utils/calculate_PSNR_SSIM.py in the flow of models/trainer.py
  Trainer.test (BGR uint8 -> bgr2ycbcr(only_y) -> calculate_psnr / calculate_ssim, no crop).
"""

from __future__ import annotations

# (PSNR dB, SSIM) per photograph, printed by each codebase's code (see the module docstring)
THEIR_VALUES = {
    "ttsr_official": {
        "astronaut": (26.880479432744337, 0.8451691342878953),
        "coffee": (27.28794969567167, 0.763107573586987),
        "chelsea": (31.591443020413248, 0.8107823386756198),
    },
    "basicsr": {
        "astronaut": (26.83815060056865, 0.8427130423348284),
        "coffee": (27.290830329695794, 0.7647937040595723),
        "chelsea": (31.471777441179967, 0.8061716943077143),
    },
    "mmagic": {
        "astronaut": (25.336593627929688, 0.8139008419000905),
        "coffee": (25.797311782836914, 0.7364628766166046),
        "chelsea": (30.04583168029785, 0.7806800684417851),
    },
    "masa": {
        "astronaut": (26.88048614046542, 0.845169192513162),
        "coffee": (27.28795525702799, 0.7631076709955682),
        "chelsea": (31.591450585458748, 0.8107824475331887),
    },
}
PHOTOS = ("astronaut", "coffee", "chelsea")
