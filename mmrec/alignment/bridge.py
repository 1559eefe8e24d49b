"""A training-free image -> text bridge through ImageNet class names.

EfficientNet-Lite0 was trained to name ImageNet classes, so its own classifier maps an
image to 1000 class probabilities; the MiniLM embeddings of those class names turn the
probabilities into a point of the text space: ``softmax(logits / T) @ E``, whose length
is the bridge's confidence (fused with the heads unnormalised, so an image the
classifier cannot name, such as an emoji, leans on the heads).
Measured here, it beats heads fitted on another domain on photo-like images and adds
to fitted heads when fused. It needs exactly those two encoders: the store keeps each
image's raw feature norm, so the classifier's logits are recomputed from the store.

Shipped: ``assets/bridge/classes.safetensors`` (the 1000 class-name embeddings,
float16, made once by ``scripts/train_default_heads.py``) and ``bridge.json`` (the
names, the text template and the softmax temperature, chosen on validation data).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

IMAGE_ENCODER = "builtin:efficientnet-lite0"
TEXT_ENCODER = "builtin:minilm-l6-v2"
EMBEDDINGS = "bridge/classes.safetensors"
SETTINGS = "bridge/bridge.json"


def supports(encoders: dict[str, Any]) -> bool:
    """True when a store's encoders are the ones the bridge was built for."""
    name = lambda m: (encoders.get(m) or {}).get("encoder")  # noqa: E731
    return name("image") == IMAGE_ENCODER and name("text") == TEXT_ENCODER


def imagenet_classifier() -> tuple[np.ndarray, np.ndarray]:
    """EfficientNet-Lite0's ImageNet ``(weight (1000, 1280), bias (1000,))``, float32."""
    import torch

    from mmrec.encoders.builtin import EfficientNetLite0Encoder

    encoder = EfficientNetLite0Encoder()
    encoder.load(torch.device("cpu"))  # the encoder's own strict loading code
    fc = encoder.model._fc
    return fc.weight.detach().numpy().copy(), fc.bias.detach().numpy().copy()


@dataclass
class ImageNetBridge:
    weight: np.ndarray  # (classes, features)
    bias: np.ndarray  # (classes,)
    classes: np.ndarray  # (classes, text dim), unit rows
    temperature: float = 1.0

    @classmethod
    def load(cls, temperature: float | None = None) -> ImageNetBridge:
        import numpy as np
        from safetensors.numpy import load_file

        from mmrec.resources import asset

        settings = json.loads(asset(SETTINGS).read_text())
        classes = load_file(str(asset(EMBEDDINGS)))["embeddings"].astype(np.float32)
        classes /= np.linalg.norm(classes, axis=1, keepdims=True)
        weight, bias = imagenet_classifier()
        return cls(weight, bias, classes,
                   float(temperature if temperature is not None else settings["temperature"]))

    def probabilities(self, unit: np.ndarray, norms: np.ndarray) -> np.ndarray:
        """ImageNet class probabilities from unit feature rows and their raw norms."""
        import numpy as np

        raw = np.asarray(unit, dtype=np.float32) * np.asarray(norms, dtype=np.float32)[:, None]
        logits = (raw @ self.weight.T + self.bias) / self.temperature
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        return probs / probs.sum(axis=1, keepdims=True)

    def raw(self, unit: np.ndarray, norms: np.ndarray, chunk: int = 2048) -> np.ndarray:
        """``probabilities @ class embeddings``, not normalised: the length says how sure
        the classifier is (near 1 for one confident class, ~0.5 for a diffuse guess)."""
        import numpy as np

        out = np.zeros((len(unit), self.classes.shape[1]), dtype=np.float32)
        for start in range(0, len(unit), chunk):
            part = self.probabilities(unit[start:start + chunk], norms[start:start + chunk])
            out[start:start + chunk] = part @ self.classes
        return out

    def __call__(self, unit: np.ndarray, norms: np.ndarray) -> np.ndarray:
        """Unit rows in the text encoder's space, one per image."""
        from mmrec.vectors import unit_rows

        return unit_rows(self.raw(unit, norms))
