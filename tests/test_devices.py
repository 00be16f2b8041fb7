"""The device layer on this CPU host: the NPU path runs against a fake torch_npu."""

import sys
import types

import pytest
import torch

from colobench.devices import DeviceUnavailable, check_device, get_device, parse_device, resolve_auto


def test_parse_device():
    assert parse_device("cpu") == ("cpu", None)
    assert parse_device("cuda") == ("cuda", 0)
    assert parse_device("npu:3") == ("npu", 3)


def test_cpu_device():
    dev = get_device("cpu")
    dev.synchronize()
    info = dev.info()
    assert info.kind == "cpu" and info.name and info.extra["logical_cores"] >= 1
    assert dev.peak_memory_bytes() > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="this host has a GPU")
def test_missing_cuda_is_explained():
    with pytest.raises(DeviceUnavailable, match="CUDA is not available"):
        check_device("cuda:0")
    assert resolve_auto() in ("cpu", "npu:0")


def test_missing_torch_npu_is_explained(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_npu", None)  # makes `import torch_npu` raise ImportError
    with pytest.raises(DeviceUnavailable, match="torch_npu is not installed"):
        check_device("npu:0")


class _FakeNpu:
    """The slice of `torch.npu` colobench uses, recording calls."""

    def __init__(self, count):
        self.count, self.calls = count, []

    def is_available(self):
        return self.count > 0

    def device_count(self):
        return self.count

    def synchronize(self, index):
        self.calls.append(("synchronize", index))

    def get_device_name(self, index):
        return "Ascend910B3"

    def get_device_properties(self, index):
        return types.SimpleNamespace(total_memory=64 * 2**30)

    def reset_peak_memory_stats(self, index):
        self.calls.append(("reset", index))

    def max_memory_allocated(self, index):
        return 123

    def set_per_process_memory_fraction(self, fraction, index):
        self.calls.append(("fraction", fraction, index))


@pytest.fixture
def fake_npu(monkeypatch):
    fake = _FakeNpu(count=2)
    module = types.ModuleType("torch_npu")
    module.__version__ = "2.1.0.post8"
    monkeypatch.setattr(torch.version, "cann", "8.0.RC3", raising=False)  # what `import torch_npu` sets
    monkeypatch.setitem(sys.modules, "torch_npu", module)
    monkeypatch.setattr(torch, "npu", fake, raising=False)
    # What `import torch_npu` does first: name the PrivateUse1 device type "npu" (once per process).
    if torch._C._get_privateuse1_backend_name() != "npu":
        torch.utils.rename_privateuse1_backend("npu")
    return fake


def test_npu_device_with_fake_torch_npu(fake_npu):
    check_device("npu:1")
    with pytest.raises(DeviceUnavailable, match=r"only 2 NPUs present \(npu:0..npu:1\)"):
        check_device("npu:2")
    dev = get_device("npu:1")
    dev.synchronize()
    dev.reset_peak_memory()
    assert dev.peak_memory_bytes() == 123
    info = dev.info()
    assert (info.name, info.driver, info.total_memory_bytes) == ("Ascend910B3", "CANN 8.0.RC3", 64 * 2**30)
    assert fake_npu.calls == [("synchronize", 1), ("reset", 1)]
    assert str(dev.torch_device()) == "npu:1"
    assert dev.cap_memory(0.5) and fake_npu.calls[-1] == ("fraction", 0.5, 1)


def test_memory_cap_on_cuda_and_cpu(monkeypatch):
    from colobench.devices.cuda import CudaDevice

    calls = []
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda f, i: calls.append((f, i)))
    assert CudaDevice(1).cap_memory(0.25) and calls == [(0.25, 1)]
    assert get_device("cpu").cap_memory(0.5) is False  # nothing partitions host memory


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_cuda_device_on_a_gpu():
    dev = get_device("cuda:0")
    x = torch.ones(1024, 1024, device=dev.torch_device())
    (x @ x).sum()
    dev.synchronize()
    assert dev.info().total_memory_bytes > 0 and dev.peak_memory_bytes() >= 4 * 1024 * 1024
