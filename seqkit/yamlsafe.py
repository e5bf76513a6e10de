"""YAML for recipes and overrides: ``safe_load`` with the limits a hostile file needs.

PyYAML's ``safe_load`` refuses Python tags but not the other two classic attacks: an alias bomb
("billion laughs": nine levels of nine aliases expand a 1 KB file into 10^9 nodes, and every
consumer that walks the tree pays for all of them) and nesting deep enough to exhaust the
recursion limit. This loader composes the node graph first (aliases share nodes there, so that
is cheap), measures the tree the aliases would expand into, and refuses it past
:data:`MAX_NODES` nodes or :data:`MAX_DEPTH` levels before anything is constructed. Duplicate
mapping keys are refused too (plain YAML silently keeps the last one).
"""

from __future__ import annotations

import re
from typing import Any

import yaml

# A recipe is a few hundred nodes; 100k leaves room for long inline lists and stays cheap.
MAX_NODES = 100_000
# Recipes nest four or five levels deep; 64 is far beyond any real one.
MAX_DEPTH = 64
# The biggest recipe file read at all (a recipe is a few KB).
MAX_BYTES = 1 << 20
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")


class YamlLimitError(ValueError):
    """The document is too large, too deep or holds a duplicate key; ``line`` is 1-based or None."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.line = line


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys in a mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise YamlLimitError(f"duplicate key {str(key)[:60]!r}", key_node.start_mark.line + 1)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _StrictLoader.construct_mapping)


def _check_depth(text: str) -> None:
    """Refuse deep nesting from the event stream, before the recursive composer sees it.

    PyYAML's scanner also slows down with every open flow level (50k ``[`` took 22 s parsed
    whole, 0.3 s to the 65th level), so flow nesting is measured on the text first, and the event
    stream is abandoned at the first event past the limit (block nesting).
    """
    # MAX_DEPTH + 1 flow openers with no closer between them is too deep whatever follows; with
    # everything but brackets removed that is a substring test, linear in C.
    brackets = _NOT_BRACKETS.sub("", text).replace("{", "[").replace("}", "]")
    if "[" * (MAX_DEPTH + 1) in brackets:
        raise YamlLimitError(f"nested deeper than {MAX_DEPTH} levels")
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise YamlLimitError(f"nested deeper than {MAX_DEPTH} levels", event.start_mark.line + 1)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _check_size(root: yaml.Node) -> None:
    """Expanded node count and depth of ``root``, aliases counted as often as they occur."""
    sizes: dict[int, int] = {}
    # Iterative post-order walk: the recursion limit is the very thing a hostile file attacks.
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, done = stack.pop()
        if depth > MAX_DEPTH:
            raise YamlLimitError(f"nested deeper than {MAX_DEPTH} levels", node.start_mark.line + 1)
        children = _children(node)
        if done or not children:
            sizes[id(node)] = 1 + sum(sizes[id(c)] for c in children)
            if sizes[id(node)] > MAX_NODES:
                raise YamlLimitError(f"expands to more than {MAX_NODES} values (aliases included); "
                                     "refusing it", node.start_mark.line + 1)
            continue
        if id(node) in sizes:
            continue
        stack.append((node, depth, True))
        stack.extend((c, depth + 1, False) for c in children if id(c) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def load(text: str) -> Any:
    """Parse one YAML document within the limits above.

    Raises yaml.YAMLError for syntax errors (with marks) and YamlLimitError for a document
    that is too large, too deep or holds a duplicate key.
    """
    if len(text) > MAX_BYTES:
        raise YamlLimitError(f"larger than {MAX_BYTES // 1024} KB; a recipe is a few KB")
    _check_depth(text)
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_size(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()
