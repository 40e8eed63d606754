"""Custom autograd functions at eager speed, with torch.func support kept: one function, two call forms.

A ``torch.autograd.Function`` with ``setup_context`` (the form ``torch.func`` transforms need: ``vmap``,
``grad``, ``jacrev``) makes ``Function.apply`` bind its arguments through ``inspect.signature`` on every call
(torch 2.11 and 2.14): tens of microseconds, a large share of a small layer's host time. The older form,
``forward(ctx, ...)``, skips that binding but cannot run under those transforms. :func:`eager_twin` derives
the older form from a ``setup_context`` function (same forward, saved state and backward), and
:func:`apply` picks the twin when :func:`runs_eagerly`, the original otherwise (and only the forward when
an eager call records no graph).
"""

from __future__ import annotations

import torch


def runs_eagerly() -> bool:
    """Whether torch runs the current call eagerly on plain tensors.

    False under a ``torch.compile`` / ``torch.export`` trace, ``torch.jit.trace``, any tensor or function
    mode (fake tensors, ``make_fx`` proxies, ``with torch.device(...)``) and any ``torch.func`` transform:
    there the original forms must run (transforms need them; traces record them). Each check is one C call.
    """
    return not (
        torch.compiler.is_compiling()
        or torch._C._get_tracing_state() is not None
        or torch._C._len_torch_dispatch_stack() > 0
        or torch._C._len_torch_function_stack() > 0
        or torch._C._are_functorch_transforms_active()
    )


def eager_twin(function: type[torch.autograd.Function]) -> type[torch.autograd.Function]:
    """``function`` (static ``forward(*args)``, ``setup_context``, ``backward``) in the ``forward(ctx, *args)`` form."""

    def forward(ctx, *args):
        output = function.forward(*args)
        function.setup_context(ctx, args, output)
        return output

    attributes = {"forward": staticmethod(forward), "backward": staticmethod(function.backward)}
    twin = type(f"{function.__name__}Eager", (torch.autograd.Function,), attributes)
    twin.__doc__ = f"{function.__name__} for eager calls (see freqnets._autograd)."
    return twin


def apply(function: type[torch.autograd.Function], twin: type[torch.autograd.Function], *args):
    """``function.apply(*args)``, through ``twin`` (its :func:`eager_twin`) when :func:`runs_eagerly`.

    An eager call with grad mode off (inference, and the backward pass itself unless it builds a graph
    for higher derivatives) records nothing, so it runs ``function.forward`` without the autograd machinery.
    Pass every argument positionally (the twin's ``forward`` has no defaults to fill in).
    """
    if not runs_eagerly():
        return function.apply(*args)
    if torch.is_grad_enabled():
        return twin.apply(*args)
    return function.forward(*args)
