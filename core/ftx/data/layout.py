"""Render conversations and locate their trained spans without running the chat template per example.

:func:`ftx.data.tokenize.assistant_spans` renders a conversation once whole and twice more per trained
turn (the prefix before it with a generation prompt, the prefix up to its end), through Jinja: most
of preparation's time. Most templates only ever *print* a message's content: the output is fixed
text that depends on the roles alone, with each content pasted in once, verbatim. For such a
template the text of any conversation with the same roles is a join of the same pieces around its
contents, so the pieces are worked out once per sequence of roles (a "shape") and reused.

A shape is accepted only when the template provably treats contents as opaque:

* the template is rendered (as ``apply_chat_template`` renders it) with stand-ins for the contents
  that record any use other than printing (comparison, ``in``, ``length``, slicing, ``trim`` and every
  other string method, also on strings concatenated from them); any such use refuses the shape;
* each stand-in must come out verbatim, once, in message order; a second set of stand-ins with
  whitespace at both ends, quotes, backslashes, ``<&>`` and mixed case must give the same pieces (so
  ``trim``, ``tojson``, escaping or case changes anywhere refuse it);
* the result must equal ``tokenizer.apply_chat_template`` itself on those stand-ins, and the
  renderings of growing prefixes must extend each other (as :func:`assistant_spans` requires).

Anything else (tools, tool calls, extra message keys such as ``weight``, empty or non-text
contents, a refused shape) takes the exact path, :func:`assistant_spans`. Both give the same text
and spans; tests compare them on every built-in template and the real SmolLM2 tokenizer.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ftx_hookspecs import TRAINED_ROLES, ChatExample

Pieces = tuple[str, ...]
"""The fixed text around the contents: ``pieces[0] + c0 + pieces[1] + c1 + ... + pieces[n]``."""

_ALLOWED = frozenset({
    "__str__", "__repr__", "__class__", "__new__", "__init__", "__getattribute__", "__getattr__", "__setattr__",
    "__delattr__", "__dir__", "__init_subclass__", "__subclasshook__", "__reduce__", "__reduce_ex__", "__sizeof__",
    "__getnewargs__", "__doc__", "__hash__", "__bool__", "__add__", "__radd__", "__format__",
})


class _Probe(str):
    """A content stand-in: printing it is fine; any other use marks the template as reading contents."""

    touched: list[bool]

    def __new__(cls, value: str, touched: list[bool]) -> _Probe:
        made = super().__new__(cls, value)
        made.touched = touched
        return made

    def __bool__(self) -> bool:  # contents on the fast path are never empty
        return True

    def __str__(self) -> str:
        return str.__str__(self)

    def __format__(self, spec: str) -> str:
        if spec:
            self.touched[0] = True
        return str.__str__(self)

    def __add__(self, other: Any) -> Any:
        if not isinstance(other, str):
            return NotImplemented
        return _Probe(str.__str__(self) + str(other), self.touched)

    def __radd__(self, other: Any) -> Any:
        if not isinstance(other, str):
            return NotImplemented
        return _Probe(str(other) + str.__str__(self), self.touched)

    __hash__ = str.__hash__


def _touching(name: str) -> Any:
    original = getattr(str, name)

    def method(self: _Probe, *args: Any, **kwargs: Any) -> Any:
        self.touched[0] = True
        return original(str.__str__(self), *args, **kwargs)

    method.__name__ = name
    return method


for _name in dir(str):
    if _name not in _ALLOWED and callable(getattr(str, _name)):
        setattr(_Probe, _name, _touching(_name))


def _stand_ins(n: int, odd: bool) -> list[str]:
    if odd:
        return [f" \n\t<&\"'\\{{}} \ue000Ftx{i}Q\ue001 \t\n " for i in range(n)]
    return [f"\ue000ftx{i}x\ue001" for i in range(n)]


class TemplateLayout:
    """The pieces of each shape of one template, worked out on first use (``None``: take the exact path)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.shapes: dict[tuple[tuple[str, ...], bool], Pieces | None] = {}
        self.compiled: Any = None
        self.kwargs: dict[str, Any] = {}
        try:
            from transformers.utils.chat_template_utils import _compile_jinja_template, _plain_template_data

            template = tokenizer.get_chat_template(None, None)
            self.compiled = _compile_jinja_template(template)
            self.kwargs = _plain_template_data(dict(tokenizer.special_tokens_map))
        except Exception:  # noqa: BLE001 - no template, an older transformers: every example takes the exact path
            self.compiled = None

    def _render(self, roles: Sequence[str], contents: Sequence[str], generation: bool, probe: bool) -> str | None:
        touched = [False]
        messages = [{"role": r, "content": _Probe(c, touched) if probe else c} for r, c in zip(roles, contents)]
        try:
            if probe:
                out = self.compiled.render(messages=messages, tools=None, documents=None,
                                           add_generation_prompt=generation, **self.kwargs)
            else:
                out = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)
        except Exception:  # noqa: BLE001 - a template that refuses this shape: the exact path says why
            return None
        return None if touched[0] else str(out)

    def _split(self, text: str, contents: Sequence[str]) -> Pieces | None:
        pieces: list[str] = []
        at = 0
        for content in contents:
            if text.count(content) != 1:
                return None
            found = text.find(content, at)
            if found < 0:
                return None
            pieces.append(text[at:found])
            at = found + len(content)
        pieces.append(text[at:])
        return tuple(pieces)

    def pieces(self, roles: tuple[str, ...], generation: bool = False) -> Pieces | None:
        """The fixed text of conversations with these roles, or ``None`` when the template reads contents."""
        key = (roles, generation)
        if key in self.shapes:
            return self.shapes[key]
        found: Pieces | None = None
        if self.compiled is not None and len(self.shapes) < 4096:
            plain, odd = _stand_ins(len(roles), False), _stand_ins(len(roles), True)
            first = self._render(roles, plain, generation, probe=True)
            second = self._render(roles, odd, generation, probe=True)
            real = self._render(roles, plain, generation, probe=False)
            if first is not None and second is not None and real == first:
                a, b = self._split(first, plain), self._split(second, odd)
                found = a if a is not None and a == b else None
        self.shapes[key] = found
        return found

    def spans(self, example: ChatExample, train_on: str) -> tuple[str, list[tuple[int, int]]] | None:
        """The rendered text and trained spans :func:`assistant_spans` would give, or ``None`` (take the exact path)."""
        if example.meta.get("tools"):
            return None
        messages = example.messages
        roles: list[str] = []
        contents: list[str] = []
        for message in messages:
            if not isinstance(message, dict) or len(message) != 2:
                return None
            role, content = message.get("role"), message.get("content")
            if type(role) is not str or type(content) is not str or not content:
                return None
            roles.append(role)
            contents.append(content)
        if not roles:
            return None
        shape = tuple(roles)
        full = self.pieces(shape)
        if full is None:
            return None
        text = _join(full, contents)
        if train_on == "all":
            return text, [(0, len(text))]
        turns = [i for i, role in enumerate(roles) if role in TRAINED_ROLES]
        if train_on == "last":
            turns = turns[-1:]
        spans: list[tuple[int, int]] = []
        for i in turns:
            upto = self.pieces(shape[: i + 1])
            before = self.pieces(shape[:i], True) if i else ("",)
            if upto is None or before is None or not _extends(full, upto) or not _extends(upto, before):
                return None
            start = sum(map(len, before)) + sum(len(c) for c in contents[:i])
            upto_len = sum(map(len, upto)) + sum(len(c) for c in contents[: i + 1])
            spans.append((start, len(text[:upto_len].rstrip())))
        return text, spans


def _join(pieces: Pieces, contents: Sequence[str]) -> str:
    out = [pieces[0]]
    for content, piece in zip(contents, pieces[1:]):
        out.append(content)
        out.append(piece)
    return "".join(out)


def _extends(longer: Pieces, shorter: Pieces) -> bool:
    """Whether every conversation rendered as ``shorter`` is a prefix of its longer rendering, whatever the contents."""
    k = len(shorter) - 1
    return len(longer) > k and longer[:k] == shorter[:k] and longer[k].startswith(shorter[k])


_LAYOUTS: dict[str, TemplateLayout] = {}


def layout_for(tokenizer: Any) -> TemplateLayout:
    """The layout of the tokenizer's current template and special tokens (shared by tokenizers that agree on both)."""
    try:
        template = str(tokenizer.get_chat_template(None, None))
    except Exception:  # noqa: BLE001 - no template: the exact path raises the usual error
        template = ""
    specials = json.dumps(getattr(tokenizer, "special_tokens_map", {}), sort_keys=True, default=str)
    key = f"{id(type(tokenizer))}\x00{template}\x00{specials}"
    found = _LAYOUTS.get(key)
    if found is None:  # the pieces depend only on the template and the special tokens, both in the key
        found = TemplateLayout(tokenizer)
        if len(_LAYOUTS) > 64:
            _LAYOUTS.clear()
        _LAYOUTS[key] = found
    return found

