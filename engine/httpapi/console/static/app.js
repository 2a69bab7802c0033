// Sluice console: plain JavaScript over the HTTP API (/v1/), no build step, nothing from another
// origin. Every value from the broker reaches the page through textContent, never as markup.
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const enc = encodeURIComponent;
  let token = sessionStorage.getItem('sluice-token') || '';
  let view = '';
  let timer = 0;

  // ---- API ----
  class ApiError extends Error {
    constructor(status, body) {
      const e = body && body.error;
      super(e ? e.name + (e.message ? ': ' + e.message : '') : 'HTTP ' + status);
      this.status = status;
    }
  }
  async function api(method, path, body) {
    const headers = {};
    if (token) headers.Authorization = 'Bearer ' + token;
    const init = { method, headers };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const r = await fetch(path, init);
    if (r.status === 204) return null;
    const j = await r.json().catch(() => null);
    if (r.status === 401) showLogin();
    if (!r.ok) throw new ApiError(r.status, j);
    return j;
  }

  // ---- DOM helpers ----
  function el(tag, opts, ...kids) {
    const n = document.createElement(tag);
    if (opts) {
      for (const [k, v] of Object.entries(opts)) {
        if (k === 'text') n.textContent = v;
        else if (k === 'cls') n.className = v;
        else if (k === 'on') for (const [ev, fn] of Object.entries(v)) n.addEventListener(ev, fn);
        else n.setAttribute(k, v);
      }
    }
    for (const c of kids) if (c != null) n.append(c);
    return n;
  }
  const num = (v) => el('td', { cls: 'num', text: String(v) });
  const td = (v) => el('td', { text: v == null ? '' : String(v) });
  function fill(tbody, rows) { tbody.replaceChildren(...rows); }
  function showError(err) {
    const p = $('error');
    if (!err) { p.classList.add('hidden'); return; }
    p.textContent = String(err.message || err);
    p.classList.remove('hidden');
  }
  function bytesFmt(n) {
    const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + ' ' + u[i];
  }

  // ---- login ----
  function showLogin() {
    $('login').classList.remove('hidden');
    for (const v of document.querySelectorAll('.view')) v.classList.add('hidden');
  }
  $('login-form').addEventListener('submit', (e) => {
    e.preventDefault();
    token = $('login-token').value.trim();
    sessionStorage.setItem('sluice-token', token);
    start();
  });
  $('logout').addEventListener('click', () => {
    token = '';
    sessionStorage.removeItem('sluice-token');
    location.reload();
  });

  // ---- topics ----
  const topics = { offset: 0, limit: 50, prefix: '', prev: new Map(), prevAt: 0, armed: '' };
  async function refreshTopics() {
    const q = `/v1/topics?offset=${topics.offset}&limit=${topics.limit}&prefix=${enc(topics.prefix)}`;
    const list = await api('GET', q);
    const now = Date.now();
    const dt = (now - topics.prevAt) / 1000;
    const rows = list.topics.map((t) => {
      const before = topics.prev.get(t.name);
      const rate = before != null && dt > 0 ? Math.max(0, (t.end_offset - before) / dt).toFixed(1) : '';
      topics.prev.set(t.name, t.end_offset);
      const rights = ['produce', 'consume', 'admin'].filter((k) => t.rights[k]).join(', ');
      const name = el('button', { cls: 'link', text: t.name, type: 'button', on: { click: () => describeTopic(t.name) } });
      let del = null;
      if (t.rights.admin) {
        del = el('button', { type: 'button', cls: 'delete', text: topics.armed === t.name ? 'Confirm delete' : 'Delete', on: { click: () => deleteTopic(t.name) } });
      }
      return el('tr', { 'data-topic': t.name }, el('td', null, name), num(t.partitions), num(t.records), num(t.end_offset),
        td(bytesFmt(t.bytes)), num(rate), td(rights), el('td', null, del));
    });
    topics.prevAt = now;
    fill(document.querySelector('#topics-table tbody'), rows);
    const last = Math.min(list.offset + list.limit, list.total);
    $('topics-page').textContent = list.total ? `${list.offset + 1}–${last} of ${list.total}` : 'no topics';
    $('topics-prev').disabled = list.offset === 0;
    $('topics-next').disabled = last >= list.total;
  }
  async function deleteTopic(name) {
    if (topics.armed !== name) { topics.armed = name; return refreshTopics(); }
    topics.armed = '';
    await api('DELETE', '/v1/topics/' + enc(name));
    $('topic-detail').replaceChildren();
    return refreshTopics();
  }
  async function describeTopic(name) {
    const d = await api('GET', '/v1/topics/' + enc(name));
    const rows = d.partitions.map((p) => el('tr', null, num(p.partition), num(p.start_offset), num(p.end_offset), td(bytesFmt(p.bytes))));
    const table = el('table', { id: 'partitions-table' },
      el('thead', null, el('tr', null, td('Partition'), td('Start offset'), td('End offset'), td('Bytes'))), el('tbody', null, ...rows));
    $('topic-detail').replaceChildren(el('h3', { text: name + (d.config.memory ? ' (memory-only)' : '') }), table);
  }
  $('topics-prev').addEventListener('click', () => { topics.offset = Math.max(0, topics.offset - topics.limit); run(refreshTopics); });
  $('topics-next').addEventListener('click', () => { topics.offset += topics.limit; run(refreshTopics); });
  $('topic-prefix').addEventListener('input', (e) => { topics.prefix = e.target.value; topics.offset = 0; run(refreshTopics); });
  $('create-form').addEventListener('submit', (e) => {
    e.preventDefault();
    run(async () => {
      await api('POST', '/v1/topics', { name: $('create-name').value, partitions: Number($('create-partitions').value) || 1, memory: $('create-memory').checked });
      $('create-name').value = '';
      await refreshTopics();
    });
  });

  // ---- groups ----
  let group = '';
  async function refreshGroups() {
    const { groups } = await api('GET', '/v1/groups');
    const items = groups.map((g) => el('li', null, el('button', { cls: 'link', type: 'button', text: g, 'data-group': g, on: { click: () => { group = g; run(refreshGroups); } } })));
    $('groups-list').replaceChildren(...items);
    if (!group) return;
    const d = await api('GET', '/v1/groups/' + enc(group));
    const rows = d.offsets.map((o) => el('tr', null, td(o.topic), num(o.partition), num(o.committed), num(o.end), num(o.lag)));
    const members = d.members.map((m) => el('li', { text: `${m.member} on ${m.topic}: partitions ${m.partitions.join(', ')}` }));
    $('group-detail').replaceChildren(
      el('h3', { text: `${d.name} (generation ${d.generation})` }),
      el('p', null, 'Total lag: ', el('strong', { id: 'group-lag', text: String(d.lag) })),
      el('table', { id: 'group-table' }, el('thead', null, el('tr', null, td('Topic'), td('Partition'), td('Committed'), td('End'), td('Lag'))), el('tbody', null, ...rows)),
      members.length ? el('ul', null, ...members) : el('p', { cls: 'note', text: 'No members.' }));
  }

  // ---- queues ----
  async function refreshQueues() {
    const { queues } = await api('GET', '/v1/queues');
    fill(document.querySelector('#queues-table tbody'), queues.map((q) =>
      el('tr', null, td(q.group), td(q.topic), num(q.members), num(q.ready), num(q.pending), num(q.dead_lettered))));
  }

  // ---- message browser ----
  const b64bytes = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
  function bytesOf(s, encoding) {
    if (s == null) return null;
    return encoding === 'base64' ? b64bytes(s) : new TextEncoder().encode(s);
  }
  function show(bytes, as) {
    if (bytes == null) return el('span', { cls: 'note', text: 'null' });
    if (as === 'hex') {
      const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, '0'));
      const lines = [];
      for (let i = 0; i < hex.length; i += 16) lines.push(hex.slice(i, i + 16).join(' '));
      return el('pre', { text: lines.join('\n') });
    }
    const text = new TextDecoder('utf-8', { fatal: false }).decode(bytes);
    if (as === 'json') {
      try { return el('pre', { text: JSON.stringify(JSON.parse(text), null, 2) }); } catch { return el('pre', { cls: 'note', text: '(not JSON) ' + text }); }
    }
    return el('pre', { text });
  }
  let nextOffset = null;
  async function browse(fromNext) {
    const topic = $('browse-topic').value;
    const p = Number($('browse-partition').value) || 0;
    const mode = $('browse-mode').value;
    let q = `max=${Number($('browse-max').value) || 50}`;
    if (fromNext && nextOffset != null) q += `&offset=${nextOffset}`;
    else if (mode === 'offset') q += `&offset=${Number($('browse-at').value) || 0}`;
    else if (mode === 'time') q += `&time=${Number($('browse-at').value) || 0}`;
    else q += '&from=latest';
    const res = await api('GET', `/v1/topics/${enc(topic)}/partitions/${p}/records?${q}`);
    nextOffset = res.next_offset;
    const as = $('browse-as').value;
    const rows = res.records.map((r) => {
      const hs = (r.headers || []).map((h) => el('div', { cls: 'hdr', text: h.key + ': ' + (h.value == null ? 'null' : (r.encoding === 'base64' ? new TextDecoder().decode(b64bytes(h.value)) : h.value)) }));
      return el('tr', { 'data-offset': String(r.offset) }, num(r.offset), td(new Date(r.timestamp).toISOString()),
        el('td', null, show(bytesOf(r.key, r.encoding), 'text')), el('td', { cls: 'headers' }, ...hs), el('td', { cls: 'value' }, show(bytesOf(r.value, r.encoding), as)));
    });
    $('browse-out').replaceChildren(
      el('p', { cls: 'note', text: `${res.records.length} records; next offset ${res.next_offset}, end ${res.end_offset}` }),
      el('table', { id: 'browse-table' }, el('thead', null, el('tr', null, td('Offset'), td('Time'), td('Key'), td('Headers'), td('Value'))), el('tbody', null, ...rows)));
    $('browse-more').classList.toggle('hidden', res.next_offset >= res.end_offset);
  }
  $('browse-form').addEventListener('submit', (e) => { e.preventDefault(); run(() => browse(false)); });
  $('browse-more').addEventListener('click', () => run(() => browse(true)));

  // ---- produce ----
  async function checkProduce() {
    const topic = $('produce-topic').value;
    let allowed = true;
    if (topic) {
      try {
        const d = await api('GET', '/v1/topics/' + enc(topic));
        allowed = d.rights.produce;
      } catch (err) {
        allowed = err.status !== 403; // an unknown topic may be created by the produce
      }
    }
    $('produce-send').classList.toggle('hidden', !allowed);
    $('produce-denied').classList.toggle('hidden', allowed);
  }
  $('produce-topic').addEventListener('change', () => run(checkProduce));
  $('produce-form').addEventListener('submit', (e) => {
    e.preventDefault();
    run(async () => {
      const headers = $('produce-headers').value.split('\n').filter((l) => l.includes('=')).map((l) => {
        const i = l.indexOf('=');
        return { key: l.slice(0, i).trim(), value: l.slice(i + 1) };
      });
      const rec = { value: $('produce-value').value, headers };
      if ($('produce-key').value !== '') rec.key = $('produce-key').value;
      const body = { records: [rec], durability: $('produce-durability').value };
      if ($('produce-partition').value !== '') body.partition = Number($('produce-partition').value);
      $('produce-result').textContent = '';
      const res = await api('POST', '/v1/topics/' + enc($('produce-topic').value) + '/records', body);
      $('produce-result').textContent = `Stored in partition ${res.partition} at offset ${res.base_offset} (${res.durability}).`;
    });
  });

  // ---- metrics and connections ----
  const series = { produced: [], delivered: [], sync: [], http: [] };
  let lastStats = null;
  function push(a, v) { a.push(v); if (a.length > 120) a.shift(); }
  async function sampleStats() {
    const s = await api('GET', '/v1/stats');
    const c = s.counters;
    if (lastStats) {
      const dt = (s.time_ms - lastStats.time_ms) / 1000 || 1;
      const p = lastStats.counters;
      const d = (k) => (c[k] || 0) - (p[k] || 0);
      push(series.produced, d('produced_records_total') / dt);
      push(series.delivered, d('deliveries_total') / dt);
      const syncs = d('sync_duration_seconds_count');
      push(series.sync, syncs > 0 ? d('sync_duration_us_sum') / syncs / 1000 : 0);
      const hp = d('http_produce_requests_total');
      push(series.http, hp > 0 ? d('http_produce_us_sum') / hp / 1000 : 0);
    }
    lastStats = s;
    return s;
  }
  function chart(canvas, lines) {
    const g = canvas.getContext('2d');
    const w = canvas.width, h = canvas.height, pad = 30;
    g.clearRect(0, 0, w, h);
    const top = Math.max(1, ...lines.flatMap((l) => l.data));
    g.strokeStyle = '#d9dde3';
    g.fillStyle = '#5b6473';
    g.font = '11px sans-serif';
    for (let i = 0; i <= 4; i++) {
      const y = pad / 2 + (h - pad) * i / 4;
      g.beginPath(); g.moveTo(pad, y); g.lineTo(w, y); g.stroke();
      g.fillText((top * (4 - i) / 4).toPrecision(3), 0, y + 4);
    }
    for (const l of lines) {
      g.strokeStyle = l.color;
      g.beginPath();
      l.data.forEach((v, i) => {
        const x = pad + (w - pad) * i / 119;
        const y = pad / 2 + (h - pad) * (1 - v / top);
        if (i) g.lineTo(x, y); else g.moveTo(x, y);
      });
      g.stroke();
    }
  }
  async function refreshMetrics() {
    const s = await sampleStats();
    chart($('chart-throughput'), [{ data: series.produced, color: '#1f5fbf' }, { data: series.delivered, color: '#2e7d32' }]);
    chart($('chart-latency'), [{ data: series.sync, color: '#1f5fbf' }, { data: series.http, color: '#2e7d32' }]);
    fill(document.querySelector('#counters-table tbody'), Object.keys(s.counters).sort().map((k) => el('tr', null, td(k), num(s.counters[k]))));
  }
  async function refreshConnections() {
    const s = await sampleStats();
    const rows = Object.entries(s.connections || {}).map(([k, v]) => el('tr', null, td('native ' + k), num(v)));
    rows.push(el('tr', null, td('http waiting requests'), num(s.counters.http_waiting || 0)));
    rows.push(el('tr', null, td('http work-queue sessions'), num(s.counters.http_queue_sessions || 0)));
    fill(document.querySelector('#connections-table tbody'), rows);
  }

  // ---- routing ----
  const views = { topics: refreshTopics, groups: refreshGroups, queues: refreshQueues, browse: null, produce: checkProduce, metrics: refreshMetrics, connections: refreshConnections };
  async function run(fn) {
    try { await fn(); showError(null); } catch (err) { showError(err); }
  }
  function route() {
    view = (location.hash || '#topics').slice(1);
    if (!(view in views)) view = 'topics';
    for (const v of document.querySelectorAll('.view')) v.classList.toggle('hidden', v.id !== 'view-' + view);
    for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.view === view);
    clearInterval(timer);
    const fn = views[view];
    if (fn) {
      run(fn);
      if (view !== 'produce') timer = setInterval(() => run(fn), 1000);
    }
  }
  async function start() {
    let me;
    try {
      me = await api('GET', '/v1/whoami');
    } catch (err) {
      if (err.status === 401) { showLogin(); if (token) showError(err); return; }
      showError(err);
      return;
    }
    if (!me.authenticated) { showLogin(); return; }
    showError(null);
    $('login').classList.add('hidden');
    $('principal').textContent = me.auth_enabled ? 'Logged in as ' + me.principal : 'Authentication off';
    $('logout').classList.toggle('hidden', !me.auth_enabled);
    document.body.dataset.principal = me.principal;
    route();
  }
  window.addEventListener('hashchange', route);
  start();
})();
