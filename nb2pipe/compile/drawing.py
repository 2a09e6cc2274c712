"""Pictures of the step graph: SVG and PNG, laid out by grandalf's Sugiyama layout.

grandalf (pure Python) places the steps in layers with few edge crossings, and routes edges that
span several layers through the gaps between boxes; SVG is then written as text and PNG drawn
with Pillow, so `pip install nb2pipe` alone can draw (no Graphviz). Each box shows the step's
name and options; each edge the variables it carries; with statuses (from a run) each box is
coloured by its step's state. Text from the notebook (names, variables) is escaped in SVG.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from nb2pipe.model.spec import PipelineSpec

CHAR_W, LINE_H, PAD = 7.2, 16.0, 10.0  # the layout's text metrics (monospace-ish, 12 px)
X_GAP, Y_GAP, MARGIN = 40.0, 56.0, 24.0
LABEL_CHARS = 32

# status -> (fill, stroke): readable on white, distinct in greyscale too
COLOURS = {
    None: ("#ffffff", "#555555"),
    "pending": ("#ffffff", "#555555"), "queued": ("#ffffff", "#555555"),
    "running": ("#fff3bf", "#e6a700"), "succeeded": ("#d3f9d8", "#2b8a3e"), "cached": ("#d0ebff", "#1864ab"),
    "failed": ("#ffe3e3", "#c92a2a"), "skipped": ("#f1f3f5", "#868e96"), "cancelled": ("#f3d9fa", "#862e9c"),
}


@dataclass
class Box:
    name: str
    lines: list[str]
    x: float  # centre
    y: float
    w: float
    h: float
    status: str | None = None


@dataclass
class Arrow:
    up: str
    down: str
    label: str
    points: list[tuple[float, float]] = field(default_factory=list)
    dashed: bool = False  # an `after:` edge: order only, no data


@dataclass
class Picture:
    boxes: dict[str, Box]
    arrows: list[Arrow]
    width: float
    height: float


def _shorten(text: str, limit: int = LABEL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def layout(spec: PipelineSpec, statuses: dict[str, str] | None = None) -> Picture:
    from grandalf.graphs import Edge, Graph, Vertex
    from grandalf.layouts import SugiyamaLayout

    from nb2pipe.compile.render import options_text

    statuses = statuses or {}
    boxes: dict[str, Box] = {}
    vertices = {}
    for s in spec.steps:
        lines = [s.name] + ([_shorten(options_text(s.options))] if options_text(s.options) else [])
        if s.name in statuses:
            lines.append(statuses[s.name])
        w = max(len(line) for line in lines) * CHAR_W + 2 * PAD
        h = len(lines) * LINE_H + PAD
        boxes[s.name] = Box(s.name, lines, 0, 0, w, h, statuses.get(s.name))
        v = Vertex(s.name)
        v.view = _View(w, h)
        vertices[s.name] = v
    arrows, edges = [], []
    for s in spec.steps:
        for up in s.upstreams:
            names = [i.name for i in s.inputs if i.producer == up]
            arrow = Arrow(up, s.name, _shorten(", ".join(names)), dashed=not names)
            e = Edge(vertices[up], vertices[s.name])
            e.view = _EdgeView(arrow)
            arrows.append(arrow)
            edges.append(e)
    graph = Graph(list(vertices.values()), edges)
    # Each connected part is laid out on its own, then the parts are placed side by side.
    offset = MARGIN
    height = 0.0
    for part in graph.C:
        sug = SugiyamaLayout(part)
        sug.xspace, sug.yspace = X_GAP, Y_GAP
        sug.init_all()
        sug.draw()
        # The part's extent: its boxes and the routes of its edges (which bend around boxes).
        xs = [v.view.xy[0] - v.view.w / 2 for v in part.sV] + [v.view.xy[0] + v.view.w / 2 for v in part.sV]
        xs += [x for e in part.sE for x, _ in e.view.points]
        left, right = min(xs), max(xs) + PAD
        top = min(v.view.xy[1] - v.view.h / 2 for v in part.sV)
        for v in part.sV:
            box = boxes[v.data]
            box.x = v.view.xy[0] - left + offset
            box.y = v.view.xy[1] - top + MARGIN
            height = max(height, box.y + box.h / 2)
        right += max((len(e.view.arrow.label) * CHAR_W * 0.9 for e in part.sE), default=0) / 2
        for e in part.sE:
            arrow = e.view.arrow
            arrow.points = [(x - left + offset, y - top + MARGIN) for x, y in e.view.points]
        offset += right - left + X_GAP
    for arrow in arrows:  # end every edge on the boxes' borders, not their centres
        up, down = boxes[arrow.up], boxes[arrow.down]
        middle = arrow.points[1:-1] if len(arrow.points) > 2 else []
        arrow.points = [(up.x, up.y + up.h / 2), *middle, (down.x, down.y - down.h / 2)]
    return Picture(boxes, arrows, offset - X_GAP + MARGIN, height + MARGIN)


class _View:
    def __init__(self, w: float, h: float):
        self.w, self.h, self.xy = w, h, (0.0, 0.0)


class _EdgeView:
    def __init__(self, arrow: Arrow):
        self.arrow = arrow
        self.points: list[tuple[float, float]] = []

    def setpath(self, points) -> None:
        self.points = [tuple(p) for p in points]


def svg(spec: PipelineSpec, statuses: dict[str, str] | None = None) -> str:
    pic = layout(spec, statuses)
    e = html.escape
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{pic.width:.0f}" height="{pic.height:.0f}" '
           f'viewBox="0 0 {pic.width:.0f} {pic.height:.0f}" font-family="DejaVu Sans Mono, monospace" '
           'font-size="12">',
           f"<title>{e(spec.name)}: {len(spec.steps)} steps</title>",
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555555"/></marker></defs>',
           '<rect width="100%" height="100%" fill="#ffffff"/>']
    for a in pic.arrows:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in a.points)
        dash = ' stroke-dasharray="5,4"' if a.dashed else ""
        out.append(f'<polyline points="{path}" fill="none" stroke="#555555" stroke-width="1.3"{dash} '
                   f'marker-end="url(#arrow)"><title>{e(a.up)} → {e(a.down)}</title></polyline>')
        if a.label:
            x, y = _midpoint(a.points)
            out.append(f'<text x="{x + 4:.1f}" y="{y:.1f}" fill="#364fc7" font-size="11">{e(a.label)}</text>')
    for b in pic.boxes.values():
        fill, stroke = COLOURS.get(b.status, COLOURS[None])
        out.append(f'<g data-step="{e(b.name)}" data-status="{e(b.status or "")}">'
                   f'<rect x="{b.x - b.w / 2:.1f}" y="{b.y - b.h / 2:.1f}" width="{b.w:.1f}" height="{b.h:.1f}" '
                   f'rx="6" fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>')
        top = b.y - b.h / 2 + PAD / 2 + LINE_H * 0.75
        for i, line in enumerate(b.lines):
            weight = ' font-weight="bold"' if i == 0 else ' fill="#495057" font-size="11"'
            out.append(f'<text x="{b.x:.1f}" y="{top + i * LINE_H:.1f}" text-anchor="middle"{weight}>'
                       f"{e(line)}</text>")
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def png(spec: PipelineSpec, statuses: dict[str, str] | None = None, scale: float = 2.0) -> bytes:
    import io

    from PIL import Image, ImageDraw, ImageFont

    pic = layout(spec, statuses)
    image = Image.new("RGB", (int(pic.width * scale), int(pic.height * scale)), "#ffffff")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=12 * scale)
    small = ImageFont.load_default(size=11 * scale)

    def at(x: float, y: float) -> tuple[float, float]:
        return x * scale, y * scale

    for a in pic.arrows:
        points = [at(x, y) for x, y in a.points]
        if a.dashed:
            for p, q in zip(points, points[1:]):
                _dashed(draw, p, q, scale)
        else:
            draw.line(points, fill="#555555", width=max(1, int(1.3 * scale)))
        _arrow_head(draw, points[-2], points[-1], scale)
        if a.label:
            x, y = _midpoint(a.points)
            draw.text(at(x + 4, y - 10), a.label, fill="#364fc7", font=small)
    for b in pic.boxes.values():
        fill, stroke = COLOURS.get(b.status, COLOURS[None])
        draw.rounded_rectangle([at(b.x - b.w / 2, b.y - b.h / 2), at(b.x + b.w / 2, b.y + b.h / 2)],
                               radius=6 * scale, fill=fill, outline=stroke, width=max(1, int(1.5 * scale)))
        top = b.y - b.h / 2 + PAD / 2
        for i, line in enumerate(b.lines):
            draw.text(at(b.x, top + i * LINE_H + LINE_H / 2), line, anchor="mm",
                      fill="#000000" if i == 0 else "#495057", font=font if i == 0 else small)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _midpoint(points: list[tuple[float, float]]) -> tuple[float, float]:
    if len(points) > 2:
        return points[len(points) // 2]
    (x1, y1), (x2, y2) = points[0], points[-1]
    return (x1 + x2) / 2, (y1 + y2) / 2


def _arrow_head(draw, p, q, scale: float) -> None:
    import math

    angle = math.atan2(q[1] - p[1], q[0] - p[0])
    size = 7 * scale
    left = (q[0] - size * math.cos(angle - 0.4), q[1] - size * math.sin(angle - 0.4))
    right = (q[0] - size * math.cos(angle + 0.4), q[1] - size * math.sin(angle + 0.4))
    draw.polygon([q, left, right], fill="#555555")


def _dashed(draw, p, q, scale: float) -> None:
    import math

    length = math.dist(p, q)
    if length == 0:
        return
    dash = 5 * scale
    steps = int(length // (2 * dash)) + 1
    for i in range(steps):
        a = i * 2 * dash / length
        b = min(1.0, (i * 2 * dash + dash) / length)
        draw.line([(p[0] + (q[0] - p[0]) * a, p[1] + (q[1] - p[1]) * a),
                   (p[0] + (q[0] - p[0]) * b, p[1] + (q[1] - p[1]) * b)], fill="#555555", width=max(1, int(scale)))
