// The agents page and the DAGs page.
import * as api from './api.js';
import { h, badge, fmtAge, fmtTime, action, flash, table } from './util.js';

const enc = api.enc;

function healthCell(a) {
  const hl = a.health;
  if (!hl || !hl.status) return h('span.muted', {}, 'no report');
  const failing = (hl.checks || []).filter((c) => c.status !== 'ok');
  return h('div', {}, badge(hl.status),
    failing.length
      ? h('ul.checks', {}, failing.map((c) => h('li', {}, badge(c.status, `${c.name}: ${c.status}`),
        c.message ? ` ${c.message}` : '')))
      : null,
    h('div.muted', {}, `reported ${fmtAge(hl.reported_at)}`));
}

function agentRow(a, reload) {
  const desired = a.desired_state || 'run';
  const set = (state) => async () => {
    await api.patch(`/api/v1/admin/agents/${a.agent_id}`, { desired_state: state });
    flash(`${a.name}: ${state === 'run' ? 'resumed' : state}`);
    await reload();
  };
  const shown = a.state === 'running' ? 'healthy' : a.state;
  return h('tr', { 'data-agent': a.name },
    h('th', { scope: 'row' }, a.name, h('div.muted', {}, a.hostname || '')),
    h('td', {}, (a.roles || []).join(', ')),
    h('td', {}, (a.queues || []).join(', ')),
    h('td', {}, a.version),
    h('td', { class: 'state' }, badge(shown), desired !== 'run' ? h('div.muted', {}, `wanted: ${desired}`) : null),
    h('td', {}, h('time', { datetime: a.last_heartbeat_at || '' }, fmtAge(a.last_heartbeat_at))),
    h('td', {}, `${a.free_slots} free / ${a.slots}`, h('div.muted', {}, `${a.running || 0} busy`)),
    h('td', {}, a.triggers_held === undefined ? '–' : String(a.triggers_held)),
    h('td', {}, healthCell(a)),
    h('td.actions', {},
      action('Drain', set('drain'), { aria: `Drain ${a.name}` }),
      action('Maintenance', set('maintenance'), { aria: `Maintenance for ${a.name}` }),
      action('Resume', set('run'), { aria: `Resume ${a.name}` })));
}

export async function agentsPage(view) {
  const body = h('div');
  view.replaceChildren(h('h1', {}, 'Agents'), body);
  const load = async () => {
    const { agents: full } = await api.get('/api/v1/admin/agents');
    body.replaceChildren(full.length === 0
      ? h('p.muted', {}, 'No agent has registered yet.')
      : table(['Agent', 'Roles', 'Queues', 'Version', 'State', 'Last heartbeat', 'Slots',
        'Triggers held', 'Health', 'Actions'], full.map((a) => agentRow(a, load))));
  };
  await load();
  return load;
}

function triggerForm(dagId, after) {
  const ta = h('textarea', { id: `conf-${dagId}`, rows: 4, cols: 40, spellcheck: 'false',
    'aria-describedby': `conf-err-${dagId}` }, '{}');
  const err = h('p.error', { id: `conf-err-${dagId}`, role: 'alert' });
  const form = h('form.trigger', { 'data-dag': dagId },
    h('label', { for: `conf-${dagId}` }, `conf for a run of ${dagId} (a JSON object)`), ta,
    h('div', {}, h('button', { type: 'submit' }, 'Trigger run'),
      h('button', { type: 'button', onclick: () => form.remove() }, 'Cancel')), err);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    let conf;
    try {
      conf = JSON.parse(ta.value || '{}');
    } catch (e) {
      err.textContent = `Not JSON: ${e.message}`;
      return;
    }
    if (conf === null || typeof conf !== 'object' || Array.isArray(conf)) {
      err.textContent = 'conf must be a JSON object ({...}).';
      return;
    }
    try {
      const run = await api.post(`/api/v1/admin/dags/${enc(dagId)}/runs`, { conf });
      flash(`Triggered ${run.run_id}`);
      form.remove();
      await after(run);
    } catch (e) {
      err.textContent = e.message;
    }
  });
  setTimeout(() => ta.focus(), 0);
  return form;
}

export function triggerButton(dagId, host, after) {
  return h('button', { type: 'button', 'aria-label': `Trigger ${dagId}`, onclick: () => {
    const old = host.querySelector('form.trigger');
    if (old) old.remove();
    host.append(triggerForm(dagId, after));
  } }, 'Trigger…');
}

export function pauseButton(d, after) {
  const verb = d.is_paused ? 'unpause' : 'pause';
  return action(d.is_paused ? 'Unpause' : 'Pause', async () => {
    await api.post(`/api/v1/admin/dags/${enc(d.dag_id)}/${verb}`);
    flash(`${d.dag_id} ${verb}d`);
    await after();
  }, { aria: `${d.is_paused ? 'Unpause' : 'Pause'} ${d.dag_id}` });
}

function importErrors(list) {
  if (!list.length) return null;
  return h('section', { 'aria-labelledby': 'ie-h' }, h('h2', { id: 'ie-h' }, `Import errors (${list.length})`),
    h('ul.import-errors', {}, list.map((e) => h('li', {},
      h('code', {}, `${e.file}:${e.line ?? '?'}:${e.column ?? '?'}`), ` ${e.message}`,
      h('span.muted', {}, ` (bundle ${e.bundle})`)))));
}

export async function dagsPage(view) {
  const body = h('div');
  const forms = h('div');
  view.replaceChildren(h('h1', {}, 'DAGs'), forms, body);
  const load = async () => {
    const [{ dags }, ie] = await Promise.all([api.get('/api/v1/admin/dags'),
      api.get('/api/v1/admin/import-errors')]);
    const last = dags.map((d) => d.last_run || null);
    const rows = dags.map((d, i) => h('tr', { 'data-dag': d.dag_id },
      h('th', { scope: 'row' }, h('a', { href: `#/dags/${enc(d.dag_id)}` }, d.dag_id),
        d.description ? h('div.muted', {}, d.description) : null),
      h('td', {}, d.schedule || 'none'),
      h('td', { class: 'paused' }, badge(d.is_paused ? 'paused' : 'active', d.is_paused ? 'paused' : 'active'),
        d.is_active ? null : h('div.muted', {}, 'inactive')),
      h('td', {}, d.bundle || '–', h('div.muted', {}, (d.bundle_version || '').slice(0, 12))),
      h('td', {}, last[i] ? h('a', { href: `#/dags/${enc(d.dag_id)}/runs/${enc(last[i].run_id)}` },
        badge(last[i].state)) : h('span.muted', {}, 'no run')),
      h('td', {}, fmtTime(d.next_dagrun_create_after)),
      h('td.actions', {}, pauseButton(d, load), triggerButton(d.dag_id, forms, load))));
    body.replaceChildren(dags.length
      ? table(['DAG', 'Schedule', 'Paused', 'Bundle', 'Last run', 'Next run', 'Actions'], rows)
      : h('p.muted', {}, 'No DAG yet: push one with remexctl dags push or a dag-processor.'),
    importErrors(ie.import_errors || []) || '');
  };
  await load();
  return load;
}
