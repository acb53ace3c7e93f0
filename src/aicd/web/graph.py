"""The pipeline graph as SVG: stages as columns, jobs as nodes coloured by status, `needs` as edges.

`layout` places the nodes (pure: jobs' rows and the saved IR in, coordinates out); the template
draws them. Names are text in the SVG, escaped by the template like everything else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aicd.pipeline.ir import Pipeline
from aicd.store.records import JobRecord

COLUMN_W = 210
NODE_W = 176
NODE_H = 34
ROW_GAP = 12
HEADER_H = 30
PAD = 12
LABEL_CHARS = 20


@dataclass(frozen=True)
class Node:
    job: JobRecord
    x: int
    y: int
    label: str  # the name, shortened to fit (the full one is the node's <title>)

    @property
    def cx_right(self) -> int:
        return self.x + NODE_W

    @property
    def cy(self) -> int:
        return self.y + NODE_H // 2


@dataclass(frozen=True)
class Column:
    stage: str
    x: int


@dataclass(frozen=True)
class Edge:
    path: str  # an SVG path (a cubic curve from the needed job to the job that needs it)
    source: str
    target: str


@dataclass(frozen=True)
class Graph:
    width: int
    height: int
    columns: tuple[Column, ...]
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    node_w: int = NODE_W
    node_h: int = NODE_H


# Status written in each node as well as by colour (never colour alone)
MARKS = {
    "success": "✓",
    "failed": "✗",
    "running": "●",
    "pending": "…",
    "created": "…",
    "canceled": "⊘",
    "skipped": "»",
    "manual": "▶",
}


def mark(status: str) -> str:
    return MARKS.get(status, "?")


def shorten(name: str, limit: int = LABEL_CHARS) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def layout(jobs: Sequence[JobRecord], pipeline: Pipeline | None) -> Graph:
    """Columns in the pipeline's stage order (stages without jobs left out), jobs in creation order."""
    order = list(pipeline.stages) if pipeline is not None else []
    for job in jobs:
        if job.stage not in order:
            order.append(job.stage)
    stages = [s for s in order if any(j.stage == s for j in jobs)]
    columns: list[Column] = []
    nodes: dict[str, Node] = {}
    tallest = 0
    for index, stage in enumerate(stages):
        x = PAD + index * COLUMN_W
        columns.append(Column(stage, x))
        members = [j for j in jobs if j.stage == stage]
        for row, job in enumerate(members):
            y = HEADER_H + PAD + row * (NODE_H + ROW_GAP)
            nodes[job.name] = Node(job, x, y, shorten(job.name))
        tallest = max(tallest, len(members))
    edges: list[Edge] = []
    if pipeline is not None:
        for ir_job in pipeline.jobs:
            target = nodes.get(ir_job.name)
            if target is None or ir_job.needs is None:
                continue
            for need in ir_job.needs:
                source = nodes.get(need.job)
                if source is not None:
                    edges.append(Edge(_curve(source, target), need.job, ir_job.name))
    width = PAD * 2 + max(1, len(stages)) * COLUMN_W - (COLUMN_W - NODE_W)
    height = HEADER_H + PAD * 2 + max(1, tallest) * (NODE_H + ROW_GAP)
    return Graph(width, height, tuple(columns), tuple(nodes.values()), tuple(edges))


def _curve(source: Node, target: Node) -> str:
    if target.x > source.x:
        x1, y1, x2, y2 = source.cx_right, source.cy, target.x, target.cy
        bend = (x2 - x1) / 2
        return f"M{x1},{y1} C{x1 + bend:.0f},{y1} {x2 - bend:.0f},{y2} {x2},{y2}"
    # a need within the same column (or backwards): around the left side
    x1, y1, x2, y2 = source.x, source.cy, target.x, target.cy
    return f"M{x1},{y1} C{x1 - 24},{y1} {x2 - 24},{y2} {x2},{y2}"
