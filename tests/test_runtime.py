from __future__ import annotations

import pytest
import torch

from mmrec.enums import Precision
from mmrec.errors import ConfigError, DeviceError
from mmrec.runtime import autocast_dtype, resolve_device, seed_everything, set_threads


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch):
    import mmrec.runtime as rt

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto").type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(rt, "_mps_available", lambda: True)
    assert resolve_device("auto").type == "mps"
    monkeypatch.setattr(rt, "_mps_available", lambda: False)
    assert resolve_device("auto").type == "cpu"


def test_unavailable_device_is_a_clear_error(monkeypatch):
    import mmrec.runtime as rt

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(rt, "_mps_available", lambda: False)
    with pytest.raises(DeviceError, match="no CUDA GPU is visible"):
        resolve_device("cuda")
    with pytest.raises(DeviceError, match="MPS is not available"):
        resolve_device("mps")
    with pytest.raises(ValueError):
        resolve_device("tpu")


def test_precision_and_seeds():
    cpu = torch.device("cpu")
    assert autocast_dtype(cpu, Precision.AUTO) is None        # fp32 on CPU unless asked
    assert autocast_dtype(cpu, Precision.BF16) is torch.bfloat16
    assert autocast_dtype(cpu, Precision.FP32) is None
    seed_everything(3)
    a = torch.rand(3)
    seed_everything(3)
    assert torch.equal(a, torch.rand(3))


def test_threads():
    before = torch.get_num_threads()
    try:
        set_threads(1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ConfigError):
        set_threads(0)
