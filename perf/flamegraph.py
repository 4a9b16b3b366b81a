"""A flame graph (SVG) from collapsed stacks ("f1;f2;f3 count" per line, as
py-spy's raw format writes them).  Used by perf/profile.py; also runnable:

    python perf/flamegraph.py perf/out/profile-ready_loop.raw > flame.svg
"""
from __future__ import annotations

import html
import sys
import zlib
from typing import Dict, List, TextIO, Tuple

ROW = 16          # pixels per frame
WIDTH = 1200      # pixels for all samples
MIN_WIDTH = 0.3   # frames narrower than this are not drawn


class Node:
    __slots__ = ("name", "count", "children")

    def __init__(self, name: str):
        self.name = name
        self.count = 0
        self.children: Dict[str, "Node"] = {}


def parse(lines: List[str]) -> Node:
    root = Node("all")
    for line in lines:
        stack, _, n = line.rstrip("\n").rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        node = root
        node.count += count
        for frame in stack.split(";"):
            node = node.children.setdefault(frame, Node(frame))
            node.count += count
    return root


def _color(name: str) -> str:
    h = zlib.crc32(name.encode())
    if "pyraftlog/" in name:      # ours: warm
        return f"rgb(230,{110 + h % 90},{40 + h % 40})"
    return f"rgb({170 + h % 50},{170 + h % 50},{190 + h % 50})"


def render(root: Node, title: str, out: TextIO) -> None:
    rects: List[Tuple[float, int, float, Node]] = []

    def walk(node: Node, x: float, depth: int) -> int:
        w = node.count / root.count * WIDTH if root.count else 0
        if w < MIN_WIDTH:
            return depth
        rects.append((x, depth, w, node))
        deepest = depth
        for child in sorted(node.children.values(), key=lambda c: c.name):
            deepest = max(deepest, walk(child, x, depth + 1))
            x += child.count / root.count * WIDTH
        return deepest

    depth = walk(root, 0.0, 0) + 1
    height = depth * ROW + 40
    out.write(f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
              f'font-family="monospace" font-size="11">\n'
              f'<text x="4" y="16" font-size="14">{html.escape(title)}</text>\n')
    for x, d, w, node in rects:
        y = height - (d + 1) * ROW
        pct = node.count / root.count * 100
        label = html.escape(node.name)
        out.write(f'<g><title>{label} ({node.count} samples, {pct:.1f}%)</title>'
                  f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{ROW - 1}" '
                  f'fill="{_color(node.name)}"/>')
        chars = int(w / 7)
        if chars >= 3:
            text = node.name if len(node.name) <= chars else node.name[:chars - 2] + ".."
            out.write(f'<text x="{x + 2:.1f}" y="{y + ROW - 4}">{html.escape(text)}</text>')
        out.write("</g>\n")
    out.write("</svg>\n")


def write_svg(raw_path: str, svg_path: str, title: str) -> None:
    with open(raw_path) as f:
        root = parse(f.readlines())
    with open(svg_path, "w") as out:
        render(root, title, out)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        render(parse(f.readlines()), sys.argv[1], sys.stdout)
