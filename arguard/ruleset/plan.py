"""The compiled walk: one generated Python function per level of the rule tree.

A level is the ordered tuple of rules an event is tried against (the roots that accept its
decoder and category, or one rule's children). Its function tests each rule's checks in turn
— the same checks as the reference walk, as inline expressions (`'invalid user' in l`,
`fl.get('url')`, a bound pattern's search) — and returns the position of the first rule that
holds, or -1: no loop over check objects, no call per literal. A second function per level,
made when first needed, starts after a given position; it serves `noalert` rules whose
children did not match, whose later siblings are tried next.

Generated code refers to literals through repr() and to everything else through names bound
in its namespace (arguard/ruleset/checks.py, Names), so no text of a rule file becomes code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from arguard.ruleset.checks import Names

if TYPE_CHECKING:
    from arguard.model import Event
    from arguard.ruleset.engine import Engine
    from arguard.ruleset.loader import Rule

LevelFunction = Callable[..., int]


class CompiledWalk:
    def __init__(self, engine: "Engine"):
        self.engine = engine
        #: per level (by identity), its function from the start and, once made, from a position
        self._functions: dict[int, LevelFunction] = {}
        self._resumes: dict[int, LevelFunction] = {}
        self._levels: dict[int, tuple["Rule", ...]] = {}
        #: per roots tuple (by identity), whether its subtree tests lower-cased fields
        self._lowered: dict[int, bool] = {}

    def walk(self, event: "Event") -> tuple["Rule", ...]:
        engine = self.engine
        level = engine.roots_for(event)
        message = event.pre.message
        lowered = message.lower()
        fields = event.fields
        uses = self._lowered.get(id(level))
        if uses is None:
            uses = self._lowered[id(level)] = engine.uses_lowered_fields(level)
        lowered_fields = {key: value.lower() for key, value in fields.items()} if uses else None
        children = engine.children
        chain: list["Rule"] = []
        taken: list[tuple[tuple["Rule", ...], int]] = []
        function = self._function(level)
        while True:
            index = function(event, message, lowered, fields, lowered_fields)
            if index >= 0:
                rule = level[index]
                chain.append(rule)
                taken.append((level, index))
                level = children[rule.id]
                function = self._function(level)
            elif chain and chain[-1].noalert:
                chain.pop()
                level, index = taken.pop()
                resume = self._resume(level)
                function = _from(resume, index + 1)
            else:
                return tuple(chain)

    def _function(self, level: tuple["Rule", ...]) -> LevelFunction:
        function = self._functions.get(id(level))
        if function is None:
            function = self._functions[id(level)] = self._compile(level, resume=False)
            self._levels[id(level)] = level  # keeps the tuple alive while its id is a key
        return function

    def _resume(self, level: tuple["Rule", ...]) -> LevelFunction:
        function = self._resumes.get(id(level))
        if function is None:
            function = self._resumes[id(level)] = self._compile(level, resume=True)
            self._levels[id(level)] = level
        return function

    def _compile(self, level: tuple["Rule", ...], resume: bool) -> LevelFunction:
        names = Names()
        start = ", start" if resume else ""
        lines = [f"def level(ev, m, l, f, fl{start}):"]
        for position, rule in enumerate(level):
            tests = [check.expression(names) for check in self.engine.checks[rule.id]]
            if resume:
                tests.insert(0, f"start <= {position}")
            condition = " and ".join(tests) or "True"
            lines.append(f"    if {condition}:")
            lines.append(f"        return {position}")
        lines.append("    return -1")
        namespace: dict[str, object] = dict(names.bound)
        exec(compile("\n".join(lines), f"<rule level of {len(level)} rules>", "exec"), namespace)
        return namespace["level"]  # type: ignore[return-value]


def _from(resume: LevelFunction, start: int) -> LevelFunction:
    def level(event, message, lowered, fields, lowered_fields):
        return resume(event, message, lowered, fields, lowered_fields, start)
    return level
