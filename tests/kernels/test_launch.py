"""cupy_backend's launch on the host: what it looks up once and what it hands the kernel, with a stand-in
for CuPy (the kernel's numbers are tests/kernels/test_gpu.py's, on a GPU)."""

from __future__ import annotations

import types
from contextlib import contextmanager

import pytest
import torch

from freqnets.kernels import cupy_backend
from freqnets.kernels.operands import kernel_arguments, product_operands


class FakeCupy:
    """The parts of CuPy that the launch touches, recording what happens."""

    def __init__(self):
        self.current_device = 0
        self.device_entries: list[int] = []
        self.streams: list[tuple[int, int]] = []
        self.loads: list[tuple[int, str]] = []
        self.calls: list[dict] = []
        fake = self

        @contextmanager
        def device(index):
            fake.device_entries.append(index)
            previous, fake.current_device = fake.current_device, index
            try:
                yield
            finally:
                fake.current_device = previous

        def external_stream(ptr, index):
            fake.streams.append((ptr, index))
            return types.SimpleNamespace(ptr=ptr, device=index)

        self.cuda = types.SimpleNamespace(
            Device=device,
            ExternalStream=external_stream,
            runtime=types.SimpleNamespace(getDevice=lambda: fake.current_device),
        )

    def module(self, device_index):
        fake = self

        def get_function(name):
            fake.loads.append((fake.current_device, name))

            def function(grid, block, args, stream=None):
                call = {"name": name, "grid": grid, "block": block, "args": args, "stream": stream}
                fake.calls.append(call | {"device": fake.current_device})

            return types.SimpleNamespace(kernel=function)

        return types.SimpleNamespace(get_function=get_function)


@pytest.fixture
def fake_cupy(monkeypatch):
    fake = FakeCupy()
    stream_ptrs = {0: 1111, 1: 2222}
    monkeypatch.setattr(cupy_backend, "_import_cupy", lambda: fake)
    monkeypatch.setattr(cupy_backend, "_module", fake.module)
    monkeypatch.setattr(cupy_backend, "current_stream_ptr", lambda index: stream_ptrs[index])
    monkeypatch.setattr(cupy_backend, "_functions", {})
    monkeypatch.setattr(cupy_backend, "_streams", {})
    fake.stream_ptrs = stream_ptrs
    return fake


def _ops(product="forward"):
    x, w = torch.randn(2, 5, 3 * 4), torch.randn(2, 5, 6 * 4)
    return product_operands(product, x, w, 3, 1)


@pytest.mark.parametrize("gauss", [False, True])
def test_launch_passes_the_packed_arguments_on_torchs_stream(fake_cupy, gauss):
    ops = _ops()
    launches = cupy_backend.launch_count()
    assert cupy_backend._launch_on(0, ops, gauss) is ops.out
    args = kernel_arguments(ops, gauss)
    (call,) = fake_cupy.calls
    assert call["name"] == args.name and call["grid"] == (args.grid,) and call["block"] == (args.block,)
    assert call["args"] == cupy_backend.pack_arguments(ops, args)
    assert call["stream"].ptr == 1111 and call["device"] == 0
    assert cupy_backend.launch_count() == launches + 1


def test_kernels_and_streams_are_looked_up_once(fake_cupy):
    for _ in range(3):
        cupy_backend._launch_on(0, _ops(), False)
    assert fake_cupy.loads == [(0, kernel_arguments(_ops(), False).name)]  # loaded once, on its device
    assert fake_cupy.streams == [(1111, 0)]
    assert len({id(call["stream"]) for call in fake_cupy.calls}) == 1
    fake_cupy.stream_ptrs[0] = 3333  # torch's current stream changed (e.g. inside torch.cuda.stream(...))
    cupy_backend._launch_on(0, _ops(), False)
    assert fake_cupy.calls[-1]["stream"].ptr == 3333 and fake_cupy.streams[-1] == (3333, 0)


def test_the_device_is_switched_only_when_it_is_not_current(fake_cupy):
    cupy_backend._launch_on(0, _ops(), False)
    entries = len(fake_cupy.device_entries)  # the first launch loads the kernel inside the device's context
    cupy_backend._launch_on(0, _ops(), False)
    assert len(fake_cupy.device_entries) == entries  # current device: no switch
    cupy_backend._launch_on(1, _ops(), False)
    assert fake_cupy.calls[-1]["device"] == 1 and fake_cupy.calls[-1]["stream"].ptr == 2222
    assert fake_cupy.loads[-1][0] == 1  # loaded into device 1's context
    assert fake_cupy.current_device == 0  # and switched back


def test_launch_refuses_cpu_tensors_before_touching_cupy(fake_cupy):
    with pytest.raises(cupy_backend.BackendUnavailable, match="runs on CUDA tensors, got tensors on cpu"):
        cupy_backend.launch(_ops(), False)
    assert not fake_cupy.calls
