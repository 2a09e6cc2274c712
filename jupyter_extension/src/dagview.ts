/**
 * The pipeline's DAG as SVG: one node per step (data-step, data-status), edges with the names that
 * flow along them, and a legend of the statuses shown. Names are set with textContent.
 */
import { NotebookPipeline } from './controller';
import { el } from './dom';
import { formatDuration, IGraphNode, layoutGraph } from './graph';

const SVG_NS = 'http://www.w3.org/2000/svg';

function svg<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attrs: { [k: string]: string | number } = {}
): SVGElementTagNameMap[K] {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    e.setAttribute(k, String(v));
  }
  return e;
}

export function renderDag(
  box: HTMLElement,
  p: NotebookPipeline | null,
  selected: string | null,
  select: (step: string | null) => void
): void {
  box.replaceChildren();
  if (!p) {
    return;
  }
  const g = p.graph;
  if (!g.nodes.length) {
    box.appendChild(
      el('div', 'nb2pipe-empty', p.pipeline ? 'No pipeline: fix the problems above.' : 'Loading the pipeline…')
    );
    return;
  }
  const W = 160;
  const H = 46;
  const lay = layoutGraph(g, { width: W, height: H });
  const root = svg('svg', {
    class: 'nb2pipe-dag-svg',
    width: lay.width,
    height: lay.height,
    viewBox: `0 0 ${lay.width} ${lay.height}`,
    role: 'img'
  });
  root.setAttribute('aria-label', 'pipeline graph');
  // a click on the background clears the selection
  root.addEventListener('click', () => select(null));
  const defs = svg('defs');
  const marker = svg('marker', {
    id: 'nb2pipe-arrow',
    viewBox: '0 0 10 10',
    refX: 9,
    refY: 5,
    markerWidth: 7,
    markerHeight: 7,
    orient: 'auto-start-reverse'
  });
  marker.appendChild(svg('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: 'nb2pipe-arrow' }));
  defs.appendChild(marker);
  root.appendChild(defs);
  for (const e of lay.edges) {
    if (!e.points.length) {
      continue;
    }
    const d = e.points.map((pt, i) => `${i ? 'L' : 'M'} ${pt.x.toFixed(1)} ${pt.y.toFixed(1)}`).join(' ');
    const path = svg('path', { d, class: 'nb2pipe-edge', 'marker-end': 'url(#nb2pipe-arrow)' });
    path.setAttribute('data-from', e.from);
    path.setAttribute('data-to', e.to);
    if (e.names.length) {
      const t = svg('title');
      t.textContent = `${e.from} → ${e.to}: ${e.names.join(', ')}`;
      path.appendChild(t);
    }
    root.appendChild(path);
  }
  for (const ln of lay.nodes) {
    const n = g.nodes.find(x => x.name === ln.name)!;
    root.appendChild(node(n, ln.x - ln.width / 2, ln.y - ln.height / 2, ln.width, ln.height, selected, select));
  }
  box.appendChild(root);
  const legend = el('div', 'nb2pipe-legend');
  const used = Array.from(new Set(g.nodes.map(n => n.status)));
  for (const s of used) {
    const item = el('span', 'nb2pipe-legend-item');
    item.dataset.status = s;
    item.appendChild(el('span', 'nb2pipe-legend-swatch'));
    item.appendChild(document.createTextNode(s));
    legend.appendChild(item);
  }
  box.appendChild(legend);
}

function node(
  n: IGraphNode,
  x: number,
  y: number,
  w: number,
  h: number,
  selected: string | null,
  select: (step: string | null) => void
): SVGGElement {
  const g = svg('g', { class: 'nb2pipe-node', transform: `translate(${x.toFixed(1)},${y.toFixed(1)})`, tabindex: 0 });
  g.setAttribute('data-step', n.name);
  g.setAttribute('data-status', n.status);
  g.setAttribute('role', 'button');
  if (n.name === selected) {
    g.classList.add('nb2pipe-node-selected');
  }
  g.appendChild(svg('rect', { class: 'nb2pipe-node-box', width: w, height: h, rx: 6, ry: 6 }));
  g.appendChild(svg('rect', { class: 'nb2pipe-node-bar', width: 5, height: h, rx: 2, ry: 2 }));
  const name = svg('text', { class: 'nb2pipe-node-name', x: 12, y: 18 });
  name.textContent = n.name.length > 20 ? n.name.slice(0, 19) + '…' : n.name;
  g.appendChild(name);
  const parts: string[] = [n.status];
  if (n.status === 'running' && n.cell && n.cells) {
    parts.push(`cell ${n.cell}/${n.cells}`);
  }
  if (n.duration !== null && n.duration !== undefined) {
    parts.push(formatDuration(n.duration));
  }
  const sub = svg('text', { class: 'nb2pipe-node-sub', x: 12, y: 35 });
  sub.textContent = parts.join(' · ');
  g.appendChild(sub);
  const title = svg('title');
  title.textContent = `${n.name}: ${n.status}${n.reason ? ` — ${n.reason}` : ''}`;
  g.appendChild(title);
  const pick = () => select(n.name);
  g.addEventListener('click', ev => {
    ev.stopPropagation();
    pick();
  });
  g.addEventListener('keydown', ev => {
    if (ev.key === 'Enter' || ev.key === ' ') {
      ev.preventDefault();
      pick();
    }
  });
  return g;
}

