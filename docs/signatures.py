"""Signatures as the docs show them; used to write docs/hooks.md and by the test that keeps it true."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any


def format_signature(func: Callable[..., Any], name: str | None = None, drop_self: bool = False) -> str:
    """``name(arg: annotation, ...) -> return`` with annotations as written in the source."""
    sig = inspect.signature(func)
    params = []
    for param in sig.parameters.values():
        if drop_self and param.name == "self":
            continue
        text = param.name
        if param.annotation is not inspect.Parameter.empty:
            text += f": {_ann(param.annotation)}"
        params.append(text)
    ret = "" if sig.return_annotation is inspect.Signature.empty else f" -> {_ann(sig.return_annotation)}"
    return f"{name or func.__name__}({', '.join(params)}){ret}"


def _ann(annotation: Any) -> str:
    return annotation if isinstance(annotation, str) else getattr(annotation, "__name__", repr(annotation))


def hookspecs() -> Iterator[tuple[str, Callable[..., Any]]]:
    """Every hook specification of ftx, in source order."""
    from ftx_hookspecs import specs

    funcs = [(n, f) for n, f in vars(specs).items() if n.startswith("ftx_") and callable(f)]
    yield from sorted(funcs, key=lambda item: item[1].__code__.co_firstlineno)


def protocol_methods() -> Iterator[tuple[str, str]]:
    """``(Protocol, signature)`` for every method of every component Protocol."""
    from ftx_hookspecs import memory, protocols

    for proto in (protocols.Method, protocols.Objective, protocols.DataFormat, protocols.Evaluator,
                  protocols.Reward, protocols.Logger, protocols.RunContext, memory.MemoryPlanner):
        for name, member in vars(proto).items():
            if callable(member) and (not name.startswith("_") or name == "__call__"):
                yield proto.__name__, format_signature(member, name, drop_self=True)


if __name__ == "__main__":
    for name, func in hookspecs():
        print(format_signature(func, name))
    for proto, sig in protocol_methods():
        print(proto, sig)
