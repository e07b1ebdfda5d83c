import pytest
import torch

from lab.device import autocast_dtype


def test_auto_precision_follows_device_and_width(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    cuda = torch.device("cuda")
    # Launch-bound widths train faster in fp32 on a GPU; the paper's widths in bf16.
    assert autocast_dtype(cuda, 64) is None and autocast_dtype(cuda, 176) is None
    assert autocast_dtype(cuda, 1024) is torch.bfloat16
    assert autocast_dtype(cuda, 64, "bf16") is torch.bfloat16 and autocast_dtype(cuda, 1024, "fp32") is None
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert autocast_dtype(cuda, 1024) is None
    assert autocast_dtype(torch.device("mps"), 1024) is None
    with pytest.raises(Exception, match="precision"):
        autocast_dtype(cuda, 64, "fp16")
