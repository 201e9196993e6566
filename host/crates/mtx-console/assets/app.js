// mtx operator console: one page, hash routes, plain DOM. Every view is rebuilt from the
// JSON API, which reads the state directory on each request (MTX-SPEC 9.9); the page keeps
// no state of its own beyond the current route. Text from the state directory is always
// inserted as text, never as HTML.
'use strict';

const TOKEN = new URLSearchParams(location.search).get('token');
const app = document.getElementById('app');
const crumbs = document.getElementById('crumbs');
const liveBadge = document.getElementById('live');
const JOB_STATUSES = ['queued', 'running', 'stalled', 'awaiting_validation', 'awaiting_user', 'completed',
  'completed_with_issues', 'failed', 'cancelled', 'poisoned'];
const OUTCOME_MARK = { SUCCESS: '\u2713', RETRY: '\u21bb', ESCALATE: '\u2191', BLOCKED: '\u25a0', SKIPPED: '\u00bb' };

// ------------------------------------------------------------------ plumbing

function withToken(url) {
  if (!TOKEN) return url;
  return url + (url.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(TOKEN);
}

async function api(path, options) {
  const opts = Object.assign({ headers: {} }, options || {});
  opts.headers['X-Mtx-Console'] = '1';
  if (TOKEN) opts.headers['Authorization'] = 'Bearer ' + TOKEN;
  if (opts.body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(opts.body);
  }
  const res = await fetch(path, opts);
  let body = null;
  try { body = await res.json(); } catch (_) { body = null; }
  if (!res.ok) {
    const err = new Error((body && body.error) || ('HTTP ' + res.status));
    err.status = res.status;
    throw err;
  }
  return body;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function fmtTime(ts) {
  if (!ts) return '';
  const d = new Date(ts);
  return isNaN(d) ? ts : d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

function fmtMs(ms) {
  if (ms === null || ms === undefined || isNaN(ms)) return '';
  if (ms < 1000) return ms + ' ms';
  const s = ms / 1000;
  if (s < 60) return s.toFixed(1) + ' s';
  const m = Math.floor(s / 60);
  if (m < 60) return m + ' min ' + Math.round(s % 60) + ' s';
  return Math.floor(m / 60) + ' h ' + (m % 60) + ' min';
}

function jobDuration(j) {
  const start = Date.parse(j.started_at || j.created_at);
  const end = Date.parse(j.completed_at || j.updated_at);
  return isNaN(start) || isNaN(end) ? null : Math.max(0, end - start);
}

function badge(status) { return el('span', { class: 'badge ' + (status || '') }, status || 'unknown'); }

function artHref(ref, jobId) {
  let q = 'path=' + encodeURIComponent(ref.path);
  if (!ref.path.startsWith('sha256/') && jobId) q += '&job=' + encodeURIComponent(jobId);
  return '#/artifact/' + ref.sha256 + '?' + q;
}

function artLink(ref, jobId, label) {
  if (!ref || !ref.path || !ref.sha256) return el('span', { class: 'muted' }, '\u2014');
  return el('a', { href: artHref(ref, jobId), class: 'mono', title: ref.sha256 }, label || ref.path.split('/').pop());
}

function jsonBlock(value, summary) {
  return el('details', {}, el('summary', {}, summary || 'JSON'), el('pre', {}, JSON.stringify(value, null, 2)));
}

function setCrumbs(...parts) {
  crumbs.replaceChildren(...parts.flatMap((p, i) => (i ? [' / ', p] : [p])));
}

function showError(e) {
  app.replaceChildren(el('section', { class: 'card' }, el('p', { class: 'bad' }, 'Error: ' + e.message)));
}

// ------------------------------------------------------------------ live updates

let live = null; // { close() }

function stopLive() {
  if (live) live.close();
  live = null;
  liveBadge.textContent = 'offline';
  liveBadge.className = 'live off';
}

// Server-sent events for a job (new FR records); falls back to polling every 2 s.
function followJob(jobId, after, onEvent) {
  stopLive();
  let closed = false;
  let timer = null;
  let source = null;
  const poll = () => {
    timer = setInterval(() => { if (!closed) onEvent(null); }, 2000);
    liveBadge.textContent = 'polling';
    liveBadge.className = 'live on';
  };
  if (window.EventSource) {
    source = new EventSource(withToken('/api/jobs/' + encodeURIComponent(jobId) + '/stream?after=' + after));
    source.addEventListener('open', () => { liveBadge.textContent = 'live'; liveBadge.className = 'live on'; });
    source.addEventListener('fr', (m) => { if (!closed) onEvent(JSON.parse(m.data)); });
    // job.json changed (e.g. marked completed after the last FR record): views re-read it.
    source.addEventListener('job', () => { if (!closed) onEvent(null); });
    source.addEventListener('error', () => {
      if (closed || timer) return;
      source.close();
      poll();
    });
  } else {
    poll();
  }
  live = { close() { closed = true; if (source) source.close(); if (timer) clearInterval(timer); } };
}

function pollEvery(ms, fn) {
  stopLive();
  const timer = setInterval(fn, ms);
  liveBadge.textContent = 'polling';
  liveBadge.className = 'live on';
  live = { close() { clearInterval(timer); } };
}

function debounce(fn, ms) {
  let t = null;
  return () => { clearTimeout(t); t = setTimeout(fn, ms); };
}

// ------------------------------------------------------------------ Job History

async function renderJobs(params) {
  setCrumbs(el('span', {}, 'Job History'));
  const status = params.get('status') || '';
  const wp = params.get('wp') || '';
  const statusSel = el('select', { id: 'filter-status' }, el('option', { value: '' }, 'any'),
    JOB_STATUSES.map((s) => el('option', { value: s, selected: s === status }, s)));
  const wpInput = el('input', { id: 'filter-wp', type: 'text', value: wp, placeholder: 'WP id' });
  const apply = () => {
    const q = new URLSearchParams();
    if (statusSel.value) q.set('status', statusSel.value);
    if (wpInput.value.trim()) q.set('wp', wpInput.value.trim());
    location.hash = '#/jobs' + (q.toString() ? '?' + q : '');
  };
  statusSel.addEventListener('change', apply);
  wpInput.addEventListener('keydown', (e) => { if (e.key === 'Enter') apply(); });
  const tableHolder = el('div', { id: 'jobs' });
  app.replaceChildren(el('h1', {}, 'Job History'),
    el('div', { class: 'filters' }, el('label', {}, 'status', statusSel), el('label', {}, 'work packet', wpInput),
      el('button', { onclick: apply }, 'Filter')),
    tableHolder);

  const load = async () => {
    const q = new URLSearchParams();
    if (status) q.set('status', status);
    if (wp) q.set('wp', wp);
    const data = await api('/api/jobs' + (q.toString() ? '?' + q : ''));
    const rows = data.jobs.map((j) => {
      // failed_mts counts blocked MTs too (MTX-SPEC 3.5.3), e.g. one waiting at a gate.
      const c = j.counts || {};
      const gate = j.pending_gate ? el('span', { class: 'warn' }, 'gate: ' + j.pending_gate.gate_reason)
        : (j.pending_consent ? el('span', { class: 'warn' }, 'cloud consent') : '');
      return el('tr', { class: 'job-row', 'data-job': j.job_id },
        el('td', {}, el('a', { href: '#/job/' + encodeURIComponent(j.job_id), class: 'mono' }, j.job_id)),
        el('td', {}, j.wp_id), el('td', { class: 'muted' }, j.profile_id),
        el('td', {}, badge(j.status), j.status_reason ? el('div', { class: 'muted' }, j.status_reason) : ''),
        el('td', {}, c.total_mts === undefined ? '' : `${c.completed_mts}/${c.total_mts}` +
          (c.failed_mts ? `, ${c.failed_mts} failed or blocked` : '') + (c.skipped_mts ? `, ${c.skipped_mts} skipped` : '')),
        el('td', {}, c.total_iterations ?? ''), el('td', {}, c.escalations ?? ''),
        el('td', {}, c.distillation_candidates ?? ''), el('td', {}, gate),
        el('td', { class: 'muted' }, fmtTime(j.created_at)), el('td', {}, fmtMs(jobDuration(j))));
    });
    tableHolder.replaceChildren(rows.length
      ? el('table', {}, el('thead', {}, el('tr', {}, ['job', 'WP', 'profile', 'status', 'MTs', 'iterations',
        'escalations', 'distillation', 'gate', 'created', 'duration'].map((h) => el('th', {}, h)))), el('tbody', {}, rows))
      : el('p', { class: 'muted' }, 'No jobs in ' + data.state_dir + (status || wp ? ' match these filters.' : '.')));
  };
  await load();
  pollEvery(3000, () => load().catch(() => {}));
}

// ------------------------------------------------------------------ job page

function jobTabs(jobId, active) {
  const base = '#/job/' + encodeURIComponent(jobId);
  return el('div', { class: 'tabs' },
    el('a', { href: base, class: active === 'job' ? 'active' : '' }, 'Overview'),
    el('a', { href: base + '/events', class: active === 'events' ? 'active' : '' }, 'Events'),
    el('a', { href: base + '/ledger', class: active === 'ledger' ? 'active' : '' }, 'Run ledger'));
}

function gatePanel(d, rerender) {
  const jobId = d.job_id;
  const result = el('div', { id: 'action-result', class: 'result' });
  const send = async (path, body, buttons) => {
    buttons.forEach((b) => { b.disabled = true; });
    result.className = 'result';
    result.textContent = 'recording\u2026';
    try {
      const r = await api('/api/jobs/' + encodeURIComponent(jobId) + path, { method: 'POST', body });
      result.className = 'result ok';
      result.textContent = r.requested
        ? 'requested; the job acts on it at its next check'
        : (r.recorded ? 'recorded; ' : '') + (r.resumed ? 'the job is resuming' : 'resume failed: ' + r.resume_error);
      rerender();
    } catch (e) {
      result.className = 'result err';
      result.textContent = 'refused: ' + e.message;
      buttons.forEach((b) => { b.disabled = false; });
    }
  };
  const panels = [];
  if ((d.pending_gate && d.gate_decided) || (d.pending_consent && d.consent_decided)) {
    const buttons = [];
    buttons.push(el('button', { id: 'job-resume', class: 'primary', onclick: () => send('/resume', {}, buttons) }, 'Resume job'));
    panels.push(el('section', { class: 'card gate', id: 'gate-panel' },
      el('h2', {}, 'Decision recorded: the job has not resumed yet'),
      d.pending_gate && d.pending_gate.decision_ref ? el('p', {}, 'decision ', artLink(d.pending_gate.decision_ref, jobId)) : '',
      el('div', { class: 'actions' }, buttons)));
  } else if (d.pending_gate) {
    const g = d.pending_gate;
    const note = el('input', { id: 'gate-note', type: 'text', placeholder: 'note (optional)' });
    const buttons = [];
    const decide = (decision) => () => {
      if (decision === 'abort' && !window.confirm('Abort job ' + jobId + '?')) return;
      send('/gate', { decision, note: note.value || null }, buttons);
    };
    buttons.push(el('button', { id: 'gate-continue', class: 'primary', onclick: decide('continue') }, 'Continue'),
      el('button', { id: 'gate-skip', onclick: decide('skip') }, 'Skip MT'),
      el('button', { id: 'gate-abort', class: 'danger', onclick: decide('abort') }, 'Abort job'));
    panels.push(el('section', { class: 'card gate', id: 'gate-panel' },
      el('h2', {}, 'Hard gate: the job waits for a decision'),
      el('dl', { class: 'kv' }, el('dt', {}, 'reason'), el('dd', { id: 'gate-reason' }, g.gate_reason),
        el('dt', {}, 'MT'), el('dd', {}, g.mt_id), el('dt', {}, 'level'), el('dd', {}, String(g.level)),
        el('dt', {}, 'requested'), el('dd', {}, fmtTime(g.requested_at))),
      el('div', { class: 'actions' }, note, buttons)));
  }
  if (d.pending_consent && !d.consent_decided) {
    const c = d.pending_consent;
    const note = el('input', { id: 'consent-note', type: 'text', placeholder: 'note (optional)' });
    const buttons = [];
    buttons.push(el('button', { id: 'consent-approve', class: 'primary',
      onclick: () => send('/consent', { approve: true, note: note.value || null }, buttons) }, 'Approve cloud escalation'),
    el('button', { id: 'consent-deny', class: 'danger',
      onclick: () => send('/consent', { approve: false, note: note.value || null }, buttons) }, 'Deny'));
    const plan = d.projection_plan || {};
    panels.push(el('section', { class: 'card gate', id: 'consent-panel' },
      el('h2', {}, 'Cloud escalation: consent needed'),
      el('dl', { class: 'kv' }, el('dt', {}, 'MT'), el('dd', {}, c.mt_id), el('dt', {}, 'model'), el('dd', {}, c.requested_model_id),
        el('dt', {}, 'local attempts'), el('dd', {}, String(c.local_attempts)),
        el('dt', {}, 'last error'), el('dd', {}, c.last_error_summary || '')),
      el('p', {}, 'What would leave this machine (projection plan ', artLink(c.projection_plan_ref, jobId), '):'),
      plan.plan ? el('pre', { id: 'projection-plan' }, JSON.stringify(plan.plan, null, 2)) : el('p', { class: 'bad' }, plan.error || 'plan unavailable'),
      el('div', { class: 'actions' }, note, buttons)));
  }
  const running = d.progress && d.progress.status === 'in_progress' && d.progress.current_state
    && d.progress.current_state.active_mt;
  if (!panels.length && running) {
    const note = el('input', { id: 'request-note', type: 'text', placeholder: 'note (optional)' });
    const buttons = [];
    const ask = (kind) => () => {
      if (kind === 'cancel' && !window.confirm('Stop job ' + jobId + '?')) return;
      send('/request', { kind, note: note.value || null }, buttons);
    };
    buttons.push(el('button', { id: 'request-skip', onclick: ask('skip') }, 'Skip ' + d.progress.current_state.active_mt),
      el('button', { id: 'request-cancel', class: 'danger', onclick: ask('cancel') }, 'Cancel job'));
    panels.push(el('section', { class: 'card gate', id: 'request-panel' },
      el('h2', {}, 'Running: ' + d.progress.current_state.active_mt),
      el('p', { class: 'muted' }, 'A skip is honoured at the MT\'s next decision, a cancel at the job\'s next check.'),
      el('div', { class: 'actions' }, note, buttons)));
  }
  if (!panels.length) {
    panels.push(el('section', { class: 'card gate none', id: 'gate-panel' },
      el('p', { id: 'gate-none', class: 'muted' }, 'No pending gate or consent.')));
  }
  panels.push(result);
  return panels;
}

function timeline(d) {
  const p = d.progress;
  if (!p) return el('p', { class: 'bad' }, 'progress artifact unreadable: ' + (d.progress_error || 'missing'));
  const byId = new Map(p.micro_tasks.map((m) => [m.mt_id, m]));
  const activeMt = p.current_state && p.current_state.active_mt;
  const legendLevels = (p.policy.escalation_chain || []).map((l) =>
    el('span', {}, el('span', { class: 'sw lv-' + l.level }), 'L' + l.level + ' ' + (l.model_id || '')));
  const legend = el('div', { class: 'legend' }, legendLevels,
    Object.entries(OUTCOME_MARK).map(([o, m]) => el('span', {}, el('span', { class: 'ob ob-' + o }), m + ' ' + o)));
  const maxDur = Math.max(1, ...p.micro_tasks.flatMap((m) => m.iterations.map((i) => i.duration_ms || 0)));
  const row = (mt) => {
    const blocks = mt.iterations.map((it) => {
      const width = 34 + Math.round(90 * (it.duration_ms || 0) / maxDur);
      const tip = [it.step_id, 'level ' + it.escalation_level + ' \u00b7 ' + it.model_id + (it.lora_id ? ' + ' + it.lora_id : ''),
        'iteration ' + it.iteration + ' \u00b7 ' + it.outcome + (it.failure_category ? ' \u00b7 ' + it.failure_category : ''),
        fmtMs(it.duration_ms) + ' \u00b7 ' + (it.tokens_prompt + it.tokens_completion) + ' tokens',
        it.validation_passed === null || it.validation_passed === undefined ? 'validation not run' : 'validation ' + (it.validation_passed ? 'passed' : 'failed'),
        it.error_summary || ''].filter(Boolean).join('\n');
      const block = el('div', { class: `iter lv-${it.escalation_level} o-${it.outcome}`, title: tip, style: `width:${width}px`,
        'data-step': it.step_id, 'data-level': it.escalation_level, 'data-outcome': it.outcome },
      'L' + it.escalation_level, el('span', {}, OUTCOME_MARK[it.outcome] || '?'));
      return el('a', { href: '#/job/' + encodeURIComponent(d.job_id) + '/step/' + encodeURIComponent(it.step_id), class: 'iter-link' }, block);
    });
    if (mt.mt_id === activeMt && mt.status === 'in_progress') {
      blocks.push(el('div', { class: 'iter running', title: 'running' }, '\u2026'));
    }
    return el('div', { class: 'mt-row', id: 'mt-' + mt.mt_id },
      el('div', { class: 'mt-name' }, el('span', { class: 'id' }, mt.mt_id), ' ', mt.name, ' ',
        el('span', { class: 'badge ' + (mt.status === 'blocked' ? 'awaiting_user' : mt.status) }, mt.status)),
      el('div', { class: 'timeline' }, blocks.length ? blocks : el('span', { class: 'muted' }, 'no iterations yet')));
  };
  const waves = d.waves.length ? d.waves : [p.micro_tasks.map((m) => m.mt_id)];
  return el('div', { id: 'timeline' }, legend, waves.map((wave, i) => el('div', { class: 'wave' },
    el('div', { class: 'wave-title' }, 'wave ' + (i + 1)), wave.map((id) => byId.get(id)).filter(Boolean).map(row))));
}

// One version of an escalation record (3.9.1): its link and its JSON, or why it is unreadable.
function recordVersion(ref, record, error, jobId, label) {
  const version = record && record.version !== undefined ? ' v' + record.version : '';
  return el('div', { class: 'record-version' }, artLink(ref, jobId, label + version),
    record ? jsonBlock(record, 'EscalationRecord' + version) : el('div', { class: 'bad' }, error || ''));
}

// What the newest version of a record says about how the episode ended.
function remediation(record) {
  const r = record && record.remediation;
  if (!r) return '';
  const drop = r.drop_back_decision || {};
  return `succeeded at L${r.success_level} ${r.success_model_id || ''}` + (r.success_lora_id ? ' + ' + r.success_lora_id : '') +
    (drop.action ? `; ${drop.action}` + (drop.target_level !== undefined && drop.target_level !== null ? ` to L${drop.target_level}` : '') : '');
}

function escalationsTable(d) {
  if (!d.escalations.length) return el('p', { class: 'muted', id: 'escalations' }, 'No escalations.');
  return el('table', { id: 'escalations' }, el('thead', {}, el('tr', {}, ['seq', 'MT', 'from', 'to', 'reason', 'failure', 'outcome', 'record'].map((h) => el('th', {}, h)))),
    el('tbody', {}, d.escalations.map((e) => el('tr', { class: 'escalation' },
      el('td', {}, e.seq ?? ''), el('td', {}, e.mt_id || ''),
      el('td', {}, e.from_level !== undefined && e.from_level !== null ? `L${e.from_level} ${e.from_model || ''}` + (e.from_lora ? ' + ' + e.from_lora : '') : ''),
      el('td', {}, e.to_level !== undefined && e.to_level !== null ? `L${e.to_level} ${e.to_model || ''}` : ''),
      el('td', {}, e.reason || ''), el('td', {}, e.failure_category || ''),
      el('td', { class: 'remediation' }, remediation(e.latest_record || e.record)),
      el('td', {}, recordVersion(e.record_ref, e.record, e.error, d.job_id, 'record'),
        e.latest_record_ref ? recordVersion(e.latest_record_ref, e.latest_record, e.latest_error, d.job_id, 'newest') : '')))));
}

// A model attempt of a distillation candidate (3.12 student_attempt / teacher_success).
function attempt(a, jobId) {
  if (!a || !a.model_id) return el('span', { class: 'bad' }, 'missing');
  return el('div', {}, a.model_id + (a.lora_id ? ' + ' + a.lora_id : ''),
    el('div', { class: 'muted' }, (a.outcome || '') + (a.iterations !== undefined ? ` after ${a.iterations} iteration${a.iterations === 1 ? '' : 's'}` : '')),
    el('div', {}, artLink(a.prompt_snapshot_ref, jobId, 'prompt'), ' ', artLink(a.output_snapshot_ref, jobId, 'output')));
}

function candidatesTable(d) {
  if (!d.distillation_candidates.length) return el('p', { class: 'muted', id: 'candidates' }, 'No distillation candidates.');
  return el('table', { id: 'candidates' }, el('thead', {}, el('tr', {}, ['seq', 'MT', 'candidate', 'tags', 'student', 'teacher', 'trust'].map((h) => el('th', {}, h)))),
    el('tbody', {}, d.distillation_candidates.map((c) => {
      const cand = c.candidate;
      if (!cand) {
        return el('tr', { class: 'candidate' }, el('td', {}, c.seq ?? ''), el('td', {}, c.mt_id || ''),
          el('td', { colspan: 5 }, artLink(c.candidate_ref, d.job_id, 'candidate'), el('div', { class: 'bad' }, c.error || '')));
      }
      return el('tr', { class: 'candidate' }, el('td', {}, c.seq ?? ''), el('td', {}, c.mt_id || ''),
        el('td', {}, artLink(c.candidate_ref, d.job_id, 'candidate'), jsonBlock(cand, 'DistillationCandidate')),
        el('td', {}, (cand.task_type_tags || []).join(', ')),
        el('td', { class: 'student' }, attempt(cand.student_attempt, d.job_id)),
        el('td', { class: 'teacher' }, attempt(cand.teacher_success, d.job_id)),
        el('td', {}, cand.data_trust_score ?? '', el('div', { class: 'muted' }, cand.distillation_eligible ? 'eligible' : 'not eligible')));
    })));
}

async function renderJob(jobId) {
  const load = async () => {
    const d = await api('/api/jobs/' + encodeURIComponent(jobId));
    const j = d.job || {};
    const p = d.progress || {};
    const s = p.aggregate_stats || {};
    setCrumbs(el('a', { href: '#/jobs' }, 'Job History'), el('span', { class: 'mono' }, jobId));
    const header = el('section', { class: 'card' },
      el('h1', {}, 'Job ', el('span', { class: 'mono' }, jobId), ' ', badge(j.status)),
      jobTabs(jobId, 'job'),
      el('dl', { class: 'kv' },
        el('dt', {}, 'work packet'), el('dd', {}, j.wp_id || p.wp_id || ''),
        el('dt', {}, 'profile'), el('dd', {}, j.profile_id || ''),
        el('dt', {}, 'status reason'), el('dd', {}, j.status_reason || ''),
        el('dt', {}, 'progress'), el('dd', {}, p.status || ''),
        el('dt', {}, 'created'), el('dd', {}, fmtTime(j.created_at)),
        el('dt', {}, 'duration'), el('dd', {}, fmtMs(jobDuration(j))),
        el('dt', {}, 'MTs'), el('dd', {}, s.total_mts === undefined ? '' : `${s.completed_mts} completed, ${s.failed_mts} failed or blocked, ${s.skipped_mts} skipped of ${s.total_mts}`),
        el('dt', {}, 'iterations'), el('dd', {}, s.total_iterations === undefined ? '' : `${s.total_iterations} (${s.escalation_count} escalations, ${s.drop_back_count} drop-backs)`),
        el('dt', {}, 'tokens'), el('dd', {}, s.total_tokens_prompt === undefined ? '' : `${s.total_tokens_prompt} prompt + ${s.total_tokens_completion} completion`)));
    const decisions = d.decisions.length ? el('table', { id: 'decisions' }, el('tbody', {}, d.decisions.map((r) =>
      el('tr', {}, el('td', {}, r.seq), el('td', {}, r.kind), el('td', {}, r.record.decision || (r.record.approved === undefined ? '' : (r.record.approved ? 'approved' : 'denied'))),
        el('td', {}, r.record.mt_id || r.record.request_id || ''), el('td', {}, jsonBlock(r.record)))))) : el('p', { class: 'muted' }, 'No decisions recorded.');
    const problems = d.problems.length ? el('table', { id: 'problems' }, el('tbody', {}, d.problems.map((x) =>
      el('tr', { class: 'problem' }, el('td', {}, x.seq), el('td', {}, el('span', { class: 'bad' }, x.kind)), el('td', {}, x.mt_id || ''),
        el('td', {}, x.detail), el('td', { class: 'mono muted' }, x.event_type))))) : null;
    app.replaceChildren(header, ...gatePanel(d, () => load().catch(showError)),
      problems ? el('section', { class: 'card' }, el('h2', {}, 'Problems'), problems) : '',
      el('section', { class: 'card' }, el('h2', {}, 'Micro-tasks by wave'), timeline(d)),
      el('section', { class: 'card' }, el('h2', {}, 'Escalations'), escalationsTable(d)),
      el('section', { class: 'card' }, el('h2', {}, 'Distillation candidates'), candidatesTable(d)),
      el('section', { class: 'card' }, el('h2', {}, 'Gate and consent decisions (run ledger)'), decisions));
    return d;
  };
  const d = await load();
  const refresh = debounce(() => load().catch(() => {}), 300);
  followJob(jobId, d.last_seq, () => refresh());
}

// ------------------------------------------------------------------ one iteration

async function renderStep(jobId, stepId) {
  stopLive();
  setCrumbs(el('a', { href: '#/jobs' }, 'Job History'), el('a', { href: '#/job/' + encodeURIComponent(jobId), class: 'mono' }, jobId),
    el('span', { class: 'mono' }, stepId));
  const d = await api('/api/jobs/' + encodeURIComponent(jobId) + '/steps/' + encodeURIComponent(stepId));
  const s = d.ledger_step;
  const it = d.iteration;
  const kv = (pairs) => el('dl', { class: 'kv' }, pairs.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v === null || v === undefined ? '' : v)]));
  app.replaceChildren(el('h1', {}, 'Iteration ', el('span', { class: 'mono' }, stepId)), jobTabs(jobId, ''),
    el('section', { class: 'card' }, el('h2', {}, 'Run ledger step'), kv([['status', s.status], ['level', 'L' + s.escalation_level],
      ['idempotency key', el('span', { class: 'mono' }, s.idempotency_key)], ['started', fmtTime(s.started_at)], ['completed', fmtTime(s.completed_at)],
      ['output', s.output_artifact_ref ? artLink(s.output_artifact_ref, jobId) : ''], ['error', s.error]])),
    it ? el('section', { class: 'card' }, el('h2', {}, 'Progress record'), kv([['model', it.model_id + (it.lora_id ? ' + ' + it.lora_id : '')],
      ['iteration at level', String(it.iteration)], ['outcome', it.outcome], ['failure category', it.failure_category],
      ['claimed complete', String(it.claimed_complete)], ['validation', it.validation_passed === null || it.validation_passed === undefined ? 'not run' : (it.validation_passed ? 'passed' : 'failed')],
      ['validation evidence', it.validation_evidence_ref ? artLink(it.validation_evidence_ref, jobId) : ''], ['duration', fmtMs(it.duration_ms)],
      ['tokens', it.tokens_prompt + ' prompt + ' + it.tokens_completion + ' completion'], ['error', it.error_summary]])) : '',
    el('section', { class: 'card' }, el('h2', {}, 'Step files (prompt, context, response, validation)'),
      d.files.length ? el('table', { id: 'step-files' }, el('thead', {}, el('tr', {}, ['file', 'sha256', 'size'].map((h) => el('th', {}, h)))),
        el('tbody', {}, d.files.map((f) => el('tr', {}, el('td', {}, artLink(f, jobId, f.name)), el('td', { class: 'mono' }, f.sha256), el('td', {}, f.size_bytes + ' bytes')))))
        : el('p', { class: 'muted' }, 'No step files were written for this step.'),
      d.output_refs.length ? [el('h2', {}, 'Artifacts named by output.json'),
        el('ul', {}, d.output_refs.map((r) => el('li', {}, r.field.replace(/^output\./, '') + ': ', artLink(r, jobId, r.path))))] : ''));
}

// ------------------------------------------------------------------ events

async function renderEvents(jobId, params) {
  setCrumbs(el('a', { href: '#/jobs' }, 'Job History'), el('a', { href: '#/job/' + encodeURIComponent(jobId), class: 'mono' }, jobId), el('span', {}, 'events'));
  const type = params.get('type') || '';
  const mt = params.get('mt') || '';
  const q = new URLSearchParams();
  if (type) q.set('type', type);
  if (mt) q.set('mt', mt);
  const data = await api('/api/jobs/' + encodeURIComponent(jobId) + '/events' + (q.toString() ? '?' + q : ''));
  const typeSel = el('select', { id: 'filter-type' }, el('option', { value: '' }, 'any'),
    data.event_types.map((t) => el('option', { value: t, selected: t === type }, t)));
  const mtSel = el('select', { id: 'filter-mt' }, el('option', { value: '' }, 'any'),
    data.mt_ids.map((m) => el('option', { value: m, selected: m === mt }, m)));
  const apply = () => {
    const n = new URLSearchParams();
    if (typeSel.value) n.set('type', typeSel.value);
    if (mtSel.value) n.set('mt', mtSel.value);
    location.hash = '#/job/' + encodeURIComponent(jobId) + '/events' + (n.toString() ? '?' + n : '');
  };
  typeSel.addEventListener('change', apply);
  mtSel.addEventListener('change', apply);
  const row = (e) => el('tr', { class: 'event', 'data-type': e.event_type, 'data-seq': e.seq },
    el('td', {}, e.seq), el('td', { class: 'muted' }, fmtTime(e.timestamp)),
    el('td', { class: 'mono' }, e.event_type), el('td', {}, e.event_name), el('td', {}, e.mt_id || ''),
    el('td', {}, e.iteration ?? ''), el('td', {}, e.actor),
    el('td', {}, (e.artifact_refs || []).map((r) => el('div', {}, artLink(r, jobId, r.field.replace(/^payload\./, ''))))),
    el('td', {}, jsonBlock(e.payload, 'payload')));
  const tbody = el('tbody', {}, data.events.map(row));
  app.replaceChildren(el('h1', {}, 'Flight Recorder'), jobTabs(jobId, 'events'),
    el('div', { class: 'filters' }, el('label', {}, 'event type', typeSel), el('label', {}, 'MT', mtSel)),
    el('table', { id: 'events' }, el('thead', {}, el('tr', {}, ['seq', 'time', 'type', 'name', 'MT', 'iter', 'actor', 'artifacts', 'payload'].map((h) => el('th', {}, h)))), tbody));
  followJob(jobId, data.last_seq, (e) => {
    if (!e) return;
    if ((type && e.event_type !== type) || (mt && e.mt_id !== mt)) return;
    tbody.append(row(e));
  });
}

// ------------------------------------------------------------------ ledger

function ledgerSummary(r) {
  const x = r.record;
  switch (r.kind) {
    case 'header': return `ledger ${x.ledger_id} for ${x.wp_id}`;
    case 'step': return `${x.step_id} ${x.status} at L${x.escalation_level}` + (x.error ? ` \u2014 ${x.error}` : '');
    case 'resume': return `resume point ${x.resume_point ?? 'none'} (${x.resume_reason})`;
    case 'gate_decision': return `${x.decision} at ${x.gate_reason}` + (x.mt_id ? ` (${x.mt_id})` : '');
    case 'consent': return `${x.approved ? 'approved' : 'denied'} ${x.request_id}`;
    case 'plugin_call': return `${x.plugin}` + (x.step_id ? ` for ${x.step_id}` : '');
    case 'repair': return `repaired ${x.file}: ${x.reason}`;
    default: return '';
  }
}

async function renderLedger(jobId) {
  setCrumbs(el('a', { href: '#/jobs' }, 'Job History'), el('a', { href: '#/job/' + encodeURIComponent(jobId), class: 'mono' }, jobId), el('span', {}, 'ledger'));
  stopLive();
  const d = await api('/api/jobs/' + encodeURIComponent(jobId) + '/ledger');
  const c = d.chain;
  const status = c.all_ok
    ? el('div', { class: 'chain ok', id: 'chain-status' }, `hash chains verified: ${c.ledger_records} ledger records, ${c.events} events, ${c.inputs_checked} packed plugin inputs and ${c.artifacts_checked} artifacts re-hashed`)
    : el('div', { class: 'chain bad', id: 'chain-status' }, 'verification found problems' + (c.ledger_ok ? ' (the ledger chain itself is intact)' : ' in the ledger chain'),
      el('ul', {}, c.problems.map((p) => el('li', {}, `${p.file}${p.line ? ':' + p.line : ''}: ${p.message}`))));
  app.replaceChildren(el('h1', {}, 'Run ledger'), jobTabs(jobId, 'ledger'), status,
    d.read_error ? el('p', { class: 'bad' }, d.read_error) : '',
    el('table', { id: 'ledger' }, el('thead', {}, el('tr', {}, ['seq', 'kind', 'summary', 'output', 'record'].map((h) => el('th', {}, h)))),
      el('tbody', {}, d.records.map((r) => el('tr', { class: 'ledger-row', 'data-kind': r.kind },
        el('td', {}, r.seq), el('td', {}, r.kind), el('td', {}, ledgerSummary(r)),
        el('td', {}, r.record.output_artifact_ref ? artLink(r.record.output_artifact_ref, jobId) : ''),
        el('td', {}, jsonBlock(r.record)))))));
}

// ------------------------------------------------------------------ artifacts

function renderText(text) {
  const looksLikeDiff = /^(diff --git|--- |\+\+\+ |@@ )/m.test(text);
  if (!looksLikeDiff) return el('pre', { id: 'artifact-text' }, text);
  return el('pre', { id: 'artifact-text' }, text.split('\n').map((line) => {
    const cls = line.startsWith('@@') ? 'diff-hunk' : line.startsWith('+') ? 'diff-add' : line.startsWith('-') ? 'diff-del' : '';
    return cls ? el('span', { class: cls }, line) : line + '\n';
  }));
}

async function renderArtifact(sha, params) {
  stopLive();
  const q = new URLSearchParams();
  if (params.get('path')) q.set('path', params.get('path'));
  if (params.get('job')) q.set('job', params.get('job'));
  const job = params.get('job');
  setCrumbs(el('a', { href: '#/jobs' }, 'Job History'),
    job ? el('a', { href: '#/job/' + encodeURIComponent(job), class: 'mono' }, job) : '', el('span', {}, 'artifact'));
  const a = await api('/api/artifacts/' + sha + (q.toString() ? '?' + q : ''));
  let text = a.text;
  if (a.meta && a.meta.media_type === 'application/json' || /\.json$/.test(a.path)) {
    try { text = JSON.stringify(JSON.parse(a.text), null, 2); } catch (_) { /* shown as stored */ }
  }
  app.replaceChildren(el('h1', {}, 'Artifact'),
    el('section', { class: 'card' }, el('dl', { class: 'kv' },
      el('dt', {}, 'path'), el('dd', { class: 'mono' }, a.path),
      el('dt', {}, 'sha256'), el('dd', { class: 'mono', id: 'artifact-sha' }, a.sha256, ' ', el('span', { class: 'ok' }, '\u2713 bytes match')),
      el('dt', {}, 'size'), el('dd', {}, a.size_bytes + ' bytes' + (a.truncated ? ' (shown truncated)' : '')),
      a.meta ? [el('dt', {}, 'kind'), el('dd', {}, a.meta.kind || ''), el('dt', {}, 'producer'), el('dd', {}, a.meta.producer || '')] : []),
    a.meta ? jsonBlock(a.meta, 'sidecar metadata') : ''),
    a.binary ? el('p', { class: 'muted' }, 'binary content, shown lossily') : '', renderText(text));
}

// ------------------------------------------------------------------ router

function route() {
  const hash = location.hash || '#/jobs';
  const [path, query] = hash.slice(1).split('?');
  const params = new URLSearchParams(query || '');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  let done;
  if (parts[0] === 'job' && parts[1] && parts[2] === 'events') done = renderEvents(parts[1], params);
  else if (parts[0] === 'job' && parts[1] && parts[2] === 'step' && parts[3]) done = renderStep(parts[1], parts[3]);
  else if (parts[0] === 'job' && parts[1] && parts[2] === 'ledger') done = renderLedger(parts[1]);
  else if (parts[0] === 'job' && parts[1]) done = renderJob(parts[1]);
  else if (parts[0] === 'artifact' && parts[1]) done = renderArtifact(parts[1], params);
  else done = renderJobs(params);
  done.catch((e) => { stopLive(); showError(e); });
}

window.addEventListener('hashchange', route);
route();
