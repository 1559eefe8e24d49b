"""Regenerate ``tests/fixtures/aisfx_golden.npz``: real clips + aiSFX's own embeddings.

The reference is the original package's code on its default spectrogram path
(essentia), run once in a scratch virtual environment; mmrec never imports essentia
(AGPL) or aisfx. Steps (Python 3.11, Debian; nothing goes into the system Python)::

    python3 -m venv /tmp/aisfx-ref-venv
    /tmp/aisfx-ref-venv/bin/pip download --no-deps essentia==2.1b6.dev1110 -d /tmp/ess
    /tmp/aisfx-ref-venv/bin/pip install /tmp/ess/essentia-*.whl numpy==1.23.0 \\
        torch==2.14.1 tqdm==4.62.3 soundfile
    /tmp/aisfx-ref-venv/bin/pip install --no-deps aisfx==0.1.2
    apt-get update   # once, for apt-get download
    /tmp/aisfx-ref-venv/bin/python scripts/make_aisfx_golden.py

Notes on that environment:

- numpy==1.23.0 is the package's pin. The newest essentia wheel needs numpy 2, so the
  last one built against numpy 1.x (2.1b6.dev1110, a pre-release, hence the explicit
  version) is used.
- librosa==0.9.2 (also pinned) is only used by the package's librosa path, which is
  not the reference, so it is not needed.
- ``aisfx.inference.load_weights`` calls ``torch.load`` without allow-listing the
  numpy scalars in the checkpoint, which torch >= 2.6 refuses; this script loads the
  checkpoint itself and then uses the package's ``load_bestModel``.

Clips: five CC0 sound effects from the Debian package ``sonic-pi-samples`` (fetched
with ``apt-get download``; licence and original source read from its copyright file),
mixed to mono, cut to at most 3.5 s, stored as float32 at 44.1 kHz. Each is written
as a float WAV so the package's own essentia loader reads exactly the stored samples
(checked), and embedded with the package's defaults: spectrogram, 'original'
normalisation, 100-frame blocks with hop 50, incomplete last block dropped. The
reference embedding is the mean of the block embeddings.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile
from pathlib import Path

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "aisfx_golden.npz"
DEB_PACKAGE = "sonic-pi-samples"
SAMPLES = "usr/share/sonic-pi/samples"
SAMPLE_RATE = 44100
# (file stem, seconds kept). Every clip must stay above ~1.14 s (51 frames): below
# that the package's hop-size assertion fails. ambi_dark_woosh spans two blocks.
CLIPS = [
    ("ambi_dark_woosh", 3.5),
    ("perc_till", 1.5),
    ("drum_splash_soft", 1.5),
    ("tabla_na_o", 1.49),
    ("vinyl_rewind", 1.5),
]


def fetch_samples(work: Path) -> tuple[Path, str, str]:
    """Download and unpack the Debian package; its samples dir, copyright text, version."""
    subprocess.run(["apt-get", "download", DEB_PACKAGE], cwd=work, check=True)
    deb = next(work.glob(f"{DEB_PACKAGE}_*.deb"))
    root = work / "root"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    version = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], check=True,
                             capture_output=True, text=True).stdout.strip()
    copyright_text = (root / "usr/share/doc" / DEB_PACKAGE / "copyright").read_text()
    return root / SAMPLES, copyright_text, version


def licence_of(stem: str, copyright_text: str, version: str) -> str:
    """The clip's licence line, refusing anything but CC0."""
    pattern = rf"Files: etc/samples/{stem}\.flac\nCopyright: (.*)\nSource: (.*)\nLicense: (.*)\n"
    match = re.search(pattern, copyright_text)
    if match is None or match.group(3).strip() != "CC0":
        raise SystemExit(f"{stem}: no CC0 licence in the {DEB_PACKAGE} copyright file")
    owner, source = match.group(1).strip(), match.group(2).strip()
    return (f"CC0-1.0; (c) {owner}; original: {source}; via Debian {DEB_PACKAGE} "
            f"{version}, /{SAMPLES}/{stem}.flac")


def load_clip(path: Path, seconds: float):
    import numpy as np
    import soundfile as sf

    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    if rate != SAMPLE_RATE:
        raise SystemExit(f"{path.name}: {rate} Hz, expected {SAMPLE_RATE}")
    mono = data.mean(axis=1, dtype=np.float32)
    return np.ascontiguousarray(mono[: int(round(seconds * SAMPLE_RATE))])


def load_model():
    import numpy as np
    import torch
    from aisfx import inference

    allowed = [np.core.multiarray.scalar, np.dtype, type(np.dtype(np.int64))]
    with torch.serialization.safe_globals(allowed):
        weights, datasets = torch.load(inference.get_path_modelWeights(), map_location="cpu")
    return inference.load_bestModel(weights, datasets, "cpu")


def reference_embedding(wave, wav_path: Path, model):
    """The package's own pipeline on a file; returns (block embeddings, mean)."""
    import essentia.standard as es
    import numpy as np
    import soundfile as sf
    from aisfx import inference, preprocessing
    from aisfx.spectrogram import spectrogram_essentia

    sf.write(str(wav_path), wave, SAMPLE_RATE, subtype="FLOAT")
    loaded = es.EasyLoader(filename=str(wav_path), sampleRate=SAMPLE_RATE)()
    if not np.array_equal(loaded, wave):
        raise SystemExit(f"{wav_path.name}: essentia did not read back the stored samples")
    spec = spectrogram_essentia.compute_spectrogram(
        filename=str(wav_path), sr=inference.SAMPLE_RATE,
        block_size=inference.SPEC_BLOCK_LENGTH, hop_size=inference.SPEC_HOP_LENGTH,
        n_mels=inference.MEL_BINS, f_min=inference.F_MIN, f_max=inference.F_MAX)
    spec = preprocessing.spectrogram_normalize(spec, spec_norm="original")
    per_block = inference.model_get_embedding(spec, 0.5, True, model, "cpu").numpy()
    return per_block, per_block.mean(axis=0)


def main() -> None:
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=FIXTURE)
    args = parser.parse_args()
    model = load_model()
    arrays: dict[str, np.ndarray] = {}
    names, licences, means, n_blocks = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        samples, copyright_text, version = fetch_samples(Path(tmp))
        for i, (stem, seconds) in enumerate(CLIPS):
            wave = load_clip(samples / f"{stem}.flac", seconds)
            per_block, mean = reference_embedding(wave, Path(tmp) / f"{stem}.wav", model)
            arrays[f"wave_{i}"] = wave
            names.append(stem)
            licences.append(licence_of(stem, copyright_text, version))
            means.append(mean)
            n_blocks.append(per_block.shape[0])
            print(f"{stem}: {wave.size / SAMPLE_RATE:.2f} s, {per_block.shape[0]} block(s)")
    arrays.update(
        names=np.array(names), licences=np.array(licences),
        embeddings=np.stack(means).astype(np.float32), n_blocks=np.array(n_blocks),
        sample_rate=np.array(SAMPLE_RATE),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_name(args.out.name + ".tmp.npz")
    np.savez_compressed(tmp_out, **arrays)
    os.replace(tmp_out, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
