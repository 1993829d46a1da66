"""A tripwire for host-device synchronisation, for tests that stand in for a GPU.

:class:`NoHostSync` is a ``TorchDispatchMode`` that raises on every op that would make the
host wait for a (non-CPU) device: ``.item()`` / ``float()`` / ``bool()`` of a device tensor,
a blocking copy between host and device, data-dependent shapes (``nonzero``, boolean masks),
and, with ``check_mix``, an op mixing a device tensor with a CPU tensor of rank 1 or more
(CUDA raises on those or copies implicitly; the meta device silently allows several). It
runs over meta tensors or FakeTensorMode's fake CUDA tensors, so it works on a CPU-only host.
"""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

aten = torch.ops.aten
DATA_DEPENDENT = {
    aten.nonzero.default,
    aten.masked_select.default,
    aten.equal.default,
    aten.unique_consecutive.default,
    aten._unique2.default,
    aten.unique_dim.default,
    aten.repeat_interleave.Tensor,
}


class HostSyncError(RuntimeError):
    pass


def _host(device: torch.device) -> bool:
    return torch.device(device).type == "cpu"


class NoHostSync(TorchDispatchMode):
    def __init__(self, check_mix: bool = True):
        super().__init__()
        self.check_mix = check_mix

    def _fail(self, func, why: str):
        raise HostSyncError(f"host sync: {func}: {why}")

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [a for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor)]
        if func is aten._local_scalar_dense.default and not _host(args[0].device):
            self._fail(func, f".item()/float()/bool() of a {args[0].device} tensor")
        if (
            func is aten.index.Tensor
            and not _host(args[0].device)
            and any(t is not None and t.dtype in (torch.bool, torch.uint8) for t in args[1])
        ):
            self._fail(func, "boolean-mask indexing of a device tensor")
        if func in DATA_DEPENDENT and any(not _host(t.device) for t in tensors):
            self._fail(func, "an output shape that depends on device data")
        if func is aten._to_copy.default:
            src, dst = args[0].device, kwargs.get("device") or args[0].device
            if _host(src) != _host(dst) and not kwargs.get("non_blocking", False):
                self._fail(func, f"a blocking copy {src} -> {dst}")
        elif func in (aten.copy_.default, aten._copy_from.default, aten._copy_from_and_resize.default):
            dst, src = (args[0], args[1]) if func is aten.copy_.default else (args[1], args[0])
            blocking = not (args[2] if len(args) > 2 else kwargs.get("non_blocking", False))
            if _host(src.device) != _host(dst.device) and blocking:
                self._fail(func, f"a blocking copy {src.device} -> {dst.device}")
        elif func is aten._foreach_copy_.default:
            if any(_host(s.device) != _host(d.device) for d, s in zip(args[0], args[1])):
                self._fail(func, "a copy between host and device")
        elif self.check_mix:
            devices = {t.device for t in tensors if not _host(t.device)}
            host = [tuple(t.shape) for t in tensors if _host(t.device) and t.dim() > 0]
            if devices and host:
                self._fail(func, f"mixes {sorted(map(str, devices))} with CPU tensors of shape {host}")
        return func(*args, **kwargs)
