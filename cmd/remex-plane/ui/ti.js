// A DAG run's page and a task instance's page (tries, XCom references,
// actions, and the task log, followed while the try runs).
import * as api from './api.js';
import { h, badge, fmtTime, fmtDuration, action, flash, table } from './util.js';

const enc = api.enc;
const FINISHED = new Set(['success', 'failed', 'skipped', 'upstream_failed', 'removed']);

function dur(a, b) {
  if (!a || !b) return null;
  return (new Date(b) - new Date(a)) / 1000;
}

export async function runPage(view, dagId, runId) {
  const body = h('div');
  view.replaceChildren(h('p', {}, h('a', { href: `#/dags/${enc(dagId)}` }, `← ${dagId}`)),
    h('h1', {}, runId), body);
  const load = async () => {
    const r = await api.get(`/api/v1/admin/dags/${enc(dagId)}/runs/${enc(runId)}`);
    const rows = r.task_instances.map((t) => h('tr', { 'data-task': t.task_id },
      h('th', { scope: 'row' }, h('a', { href: `#/dags/${enc(dagId)}/runs/${enc(runId)}/tasks/${enc(t.task_id)}` },
        t.task_id)),
      h('td', {}, badge(t.state)), h('td', {}, String(t.try_number)),
      h('td', {}, fmtTime(t.start_date)), h('td', {}, fmtTime(t.end_date)),
      h('td', {}, fmtDuration(dur(t.start_date, t.end_date))),
      h('td', {}, t.agent_id ?? '–'), h('td', {}, t.reason || '')));
    body.replaceChildren(
      h('p', {}, badge(r.state), ` ${r.run_type} · logical date ${fmtTime(r.logical_date)} · started `
        + `${fmtTime(r.start_date)} · ended ${fmtTime(r.end_date)}`),
      h('details', {}, h('summary', {}, 'conf'), h('pre.code', {}, JSON.stringify(r.conf, null, 2))),
      table(['Task', 'State', 'Try', 'Start', 'End', 'Duration', 'Agent', 'Reason'], rows));
  };
  await load();
  return load;
}

function logPanel(base) {
  const sel = h('select', { id: 'log-try' });
  const where = h('p', { id: 'log-where', class: 'muted' });
  const pre = h('pre', { id: 'log', class: 'code log', tabindex: 0, 'aria-label': 'Task log' });
  const st = { try: null, offset: 0 };
  const read = async () => {
    if (!sel.value) return;
    if (Number(sel.value) !== st.try) {
      st.try = Number(sel.value);
      st.offset = 0;
      pre.textContent = '';
    }
    for (let i = 0; i < 8; i += 1) { // at most 8 chunks (2 MiB) per refresh
      const l = await api.get(`${base}/log?try_number=${st.try}&offset=${st.offset}`);
      where.textContent = l.location ? `Location: ${l.location}` : 'No log location reported yet.';
      if (!l.readable) {
        pre.textContent = '';
        where.textContent += ` — ${l.reason}`;
        pre.hidden = true;
        return;
      }
      pre.hidden = false;
      if (l.content) pre.append(l.content);
      const more = l.next_offset < l.size && l.next_offset > st.offset;
      st.offset = l.next_offset;
      if (!more) return;
    }
  };
  sel.addEventListener('change', () => read().catch((e) => flash(e.message, true)));
  const el = h('section', { 'aria-labelledby': 'log-h' }, h('h2', { id: 'log-h' }, 'Log'),
    h('label', { for: 'log-try' }, 'Try '), sel, where, pre);
  const setTries = (tries) => {
    const want = tries.map((t) => String(t.try_number));
    const have = [...sel.options].map((o) => o.value);
    if (want.join() !== have.join()) {
      const latest = have.length === 0 || sel.value === have[have.length - 1];
      sel.replaceChildren(...want.map((n) => h('option', { value: n }, `try ${n}`)));
      if (latest && want.length) sel.value = want[want.length - 1];
      else if (st.try) sel.value = String(st.try);
    }
  };
  return { el, read, setTries };
}

export async function tiPage(view, dagId, runId, taskId) {
  const base = `/api/v1/admin/dags/${enc(dagId)}/runs/${enc(runId)}/tasks/${enc(taskId)}`;
  const head = h('div');
  const tries = h('div');
  const xcom = h('div');
  const log = logPanel(base);
  const doAct = (verb, msg) => async () => {
    await api.post(`${base}/${verb}`, verb === 'clear' ? {} : undefined);
    flash(msg);
    await load();
  };
  const actions = h('div.actions', {},
    action('Clear', doAct('clear', `${taskId} cleared: it runs again`), { aria: `Clear ${taskId}` }),
    action('Mark success', doAct('success', `${taskId} marked success`), { aria: `Mark ${taskId} success` }),
    action('Mark failed', doAct('fail', `${taskId} marked failed`), { aria: `Mark ${taskId} failed` }));
  view.replaceChildren(
    h('p', {}, h('a', { href: `#/dags/${enc(dagId)}` }, `← ${dagId}`), ' / ',
      h('a', { href: `#/dags/${enc(dagId)}/runs/${enc(runId)}` }, runId)),
    h('h1', {}, taskId), head, actions,
    h('section', { 'aria-labelledby': 'tries-h' }, h('h2', { id: 'tries-h' }, 'Tries'), tries),
    h('section', { 'aria-labelledby': 'xcom-h' }, h('h2', { id: 'xcom-h' }, 'XCom'), xcom),
    log.el);
  let lastState = null;
  const load = async () => {
    const t = await api.get(base);
    head.replaceChildren(h('p', { id: 'ti-state' }, badge(t.state), ` try ${t.try_number} · queue ${t.queue}`));
    tries.replaceChildren(t.tries.length ? table(['Try', 'State', 'Start', 'End', 'Duration', 'Agent',
      'Exit', 'Reason'], t.tries.map((x) => h('tr', { 'data-try': x.try_number },
      h('th', { scope: 'row' }, String(x.try_number)), h('td', {}, badge(x.state)),
      h('td', {}, fmtTime(x.start_date)), h('td', {}, fmtTime(x.end_date)),
      h('td', {}, fmtDuration(x.duration)), h('td', {}, x.agent_name || (x.agent_id ?? '–')),
      h('td', {}, x.exit_code ?? (x.signal ? `signal ${x.signal}` : '–')),
      h('td', {}, x.reason || '')))) : h('p.muted', {}, 'No try yet.'));
    xcom.replaceChildren(t.xcom.length ? table(['Key', 'URI', 'Size', 'Checksum', 'Type'],
      t.xcom.map((x) => h('tr', {}, h('th', { scope: 'row' }, x.key), h('td', {}, h('code', {}, x.uri)),
        h('td', {}, String(x.size)), h('td', {}, h('code', {}, x.checksum)), h('td', {}, x.content_type))))
      : h('p.muted', {}, 'No XCom values.'));
    log.setTries(t.tries);
    // The log is read again while the try runs, and once more when it ends.
    if (!FINISHED.has(t.state) || lastState !== t.state) await log.read();
    lastState = t.state;
  };
  await load();
  return load;
}
