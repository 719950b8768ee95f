// A DAG's page: the grid (tasks x runs, coloured by state with a glyph, try
// number on hover), the graph (tasks and upstreams left to right, coloured by
// the selected run) and the canonical definition.
import * as api from './api.js';
import { h, esc, GLYPH, stateClass, badge, fmtTime } from './util.js';
import { pauseButton, triggerButton } from './pages.js';

const enc = api.enc;
const SVG = 'http://www.w3.org/2000/svg';

// The grid as one HTML string (escaped), set once: 5000 cells render in one
// layout pass. Returns the milliseconds the render took.
export function renderGrid(host, dagId, grid) {
  const t0 = performance.now();
  const runs = grid.dag_runs;
  const base = `#/dags/${enc(dagId)}/runs/`;
  const parts = ['<table class="grid" aria-label="Runs (columns, oldest first) by tasks (rows)">',
    '<thead><tr><th scope="col">Task</th>'];
  for (const r of runs) {
    const s = r.state;
    parts.push(`<th scope="col" class="run"><a class="${stateClass(s)}" href="${base}${esc(enc(r.run_id))}"`
      + ` title="${esc(`${r.run_id}: ${s}, ${fmtTime(r.logical_date)}`)}"`
      + ` aria-label="${esc(`run ${r.run_id}: ${s}`)}">${GLYPH[s] || '•'}</a></th>`);
  }
  parts.push('</tr></thead><tbody>');
  for (const t of grid.tasks) {
    const tid = t.task_id;
    parts.push(`<tr><th scope="row">${esc(tid)}</th>`);
    for (const r of runs) {
      const ti = r.tis[tid];
      if (!ti) {
        parts.push('<td></td>');
        continue;
      }
      const [s, n] = ti;
      const label = `${tid} in ${r.run_id}: ${s}, try ${n}`;
      parts.push(`<td><a class="${stateClass(s)}" href="${base}${esc(enc(r.run_id))}/tasks/${esc(enc(tid))}"`
        + ` title="${esc(label)}" aria-label="${esc(label)}" data-state="${esc(s)}">`
        + `${GLYPH[s] || '•'}</a></td>`);
    }
    parts.push('</tr>');
  }
  parts.push('</tbody></table>');
  host.innerHTML = parts.join('');
  host.getBoundingClientRect(); // layout, so the figure includes it
  const ms = performance.now() - t0;
  host.dataset.renderMs = ms.toFixed(1);
  return ms;
}

// Columns by longest path from a root; rows in order within a column.
export function layout(tasks) {
  const col = new Map();
  for (const t of tasks) { // tasks come in dependency order
    col.set(t.task_id, t.upstream.reduce((m, u) => Math.max(m, (col.get(u) ?? 0) + 1), 0));
  }
  const rows = new Map();
  const pos = new Map();
  for (const t of tasks) {
    const c = col.get(t.task_id);
    const r = rows.get(c) || 0;
    rows.set(c, r + 1);
    pos.set(t.task_id, { c, r });
  }
  return { pos, ncol: Math.max(0, ...col.values()) + 1, nrow: Math.max(1, ...rows.values()) };
}

function renderGraph(host, dagId, grid, run) {
  const W = 170;
  const H = 44;
  const BW = 140;
  const BH = 28;
  const { pos, ncol, nrow } = layout(grid.tasks);
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', `0 0 ${ncol * W + 20} ${nrow * H + 20}`);
  svg.setAttribute('width', ncol * W + 20);
  svg.setAttribute('height', nrow * H + 20);
  svg.setAttribute('role', 'group');
  svg.setAttribute('aria-label', `Graph of ${dagId}${run ? `, states of ${run.run_id}` : ''}`);
  const xy = (id) => {
    const p = pos.get(id);
    return [10 + p.c * W, 10 + p.r * H];
  };
  for (const t of grid.tasks) {
    for (const u of t.upstream) {
      const [x1, y1] = xy(u);
      const [x2, y2] = xy(t.task_id);
      const path = document.createElementNS(SVG, 'path');
      const mx = (x1 + BW + x2) / 2;
      path.setAttribute('d', `M${x1 + BW},${y1 + BH / 2} C${mx},${y1 + BH / 2} ${mx},${y2 + BH / 2} ${x2},${y2 + BH / 2}`);
      path.setAttribute('class', 'edge');
      svg.append(path);
    }
  }
  for (const t of grid.tasks) {
    const [x, y] = xy(t.task_id);
    const ti = run && run.tis[t.task_id];
    const s = ti ? ti[0] : 'none';
    const a = document.createElementNS(SVG, 'a');
    if (run) a.setAttribute('href', `#/dags/${enc(dagId)}/runs/${enc(run.run_id)}/tasks/${enc(t.task_id)}`);
    a.setAttribute('aria-label', `${t.task_id}: ${s}`);
    a.setAttribute('class', `node ${stateClass(s)}`);
    const rect = document.createElementNS(SVG, 'rect');
    Object.entries({ x, y, width: BW, height: BH, rx: 5 }).forEach(([k, v]) => rect.setAttribute(k, v));
    const text = document.createElementNS(SVG, 'text');
    text.setAttribute('x', x + 8);
    text.setAttribute('y', y + 18);
    text.textContent = `${GLYPH[s] || '•'} ${t.task_id.length > 17 ? `${t.task_id.slice(0, 16)}…` : t.task_id}`;
    const title = document.createElementNS(SVG, 'title');
    title.textContent = `${t.task_id}: ${s}${ti ? `, try ${ti[1]}` : ''}`;
    a.append(rect, text, title);
    svg.append(a);
  }
  host.replaceChildren(svg);
}

export async function dagPage(view, dagId) {
  const head = h('div.head');
  const forms = h('div');
  const gridHost = h('div', { id: 'grid', class: 'scroll' });
  const runSel = h('select', { id: 'graph-run' });
  const graphHost = h('div', { id: 'graph', class: 'scroll' });
  const def = h('pre', { id: 'definition', class: 'code', tabindex: 0 });
  const limitSel = h('select', { id: 'grid-limit' }, [25, 100, 365].map((n) => h('option', { value: n }, n)));
  view.replaceChildren(head, forms,
    h('section', { 'aria-labelledby': 'grid-h' }, h('h2', { id: 'grid-h' }, 'Grid'),
      h('label', { for: 'grid-limit' }, 'Runs shown '), limitSel,
      h('p.muted', {}, 'Runs are columns (oldest left), tasks are rows; hover or focus a cell for its try.'),
      gridHost),
    h('section', { 'aria-labelledby': 'graph-h' }, h('h2', { id: 'graph-h' }, 'Graph'),
      h('label', { for: 'graph-run' }, 'States of run '), runSel, graphHost),
    h('section', { 'aria-labelledby': 'def-h' }, h('h2', { id: 'def-h' }, 'Definition'), def));
  let grid = null;
  const drawGraph = () => {
    const run = grid.dag_runs.find((r) => r.run_id === runSel.value) || null;
    renderGraph(graphHost, dagId, grid, run);
  };
  runSel.addEventListener('change', () => { runSel.dataset.chosen = '1'; drawGraph(); });
  const load = async () => {
    const [d, g] = await Promise.all([api.get(`/api/v1/admin/dags/${enc(dagId)}`),
      api.get(`/api/v1/admin/dags/${enc(dagId)}/grid?limit=${limitSel.value}`)]);
    grid = g;
    head.replaceChildren(h('h1', {}, d.dag_id),
      h('p', {}, badge(d.is_paused ? 'paused' : 'active'), ` schedule ${d.schedule || 'none'} · bundle `
        + `${d.bundle || '–'} ${(d.bundle_version || '').slice(0, 12)} · next run ${fmtTime(d.next_dagrun_create_after)}`),
      h('div.actions', {}, pauseButton(d, load), triggerButton(dagId, forms, load)));
    renderGrid(gridHost, dagId, g);
    const keep = runSel.dataset.chosen ? runSel.value : null;
    runSel.replaceChildren(...g.dag_runs.slice().reverse().map((r) => h('option', { value: r.run_id },
      `${r.run_id} (${r.state})`)));
    if (keep) runSel.value = keep;
    drawGraph();
    if (!def.textContent) def.textContent = JSON.stringify(d.dag, null, 2);
  };
  limitSel.addEventListener('change', load);
  await load();
  return load;
}
