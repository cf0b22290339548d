// Plain JavaScript over the minimal API. Every value is inserted with textContent, never as HTML.
'use strict';

const $ = (selector) => document.querySelector(selector);
let currentId = null;

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  if (className) node.className = className;
  return node;
}

async function api(method, url, body) {
  const response = await fetch(url, {
    method,
    headers: body ? { 'Content-Type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const errors = data && data.errors ? Object.entries(data.errors).map(([k, v]) => `${k}: ${v.join(' ')}`).join('; ') : '';
    throw new Error(errors || (data && (data.detail || data.title)) || `${response.status} ${response.statusText}`);
  }
  return data;
}

async function loadAbout() {
  const about = await api('GET', '/api/about');
  $('#about').textContent =
    `Database: ${about.database} · Master key: ${about.masterKeyProvider} (${about.masterKeyId}) · Mode: ${about.mode}`;
  if (about.notice) {
    $('#notice').textContent = about.notice;
    $('#notice').hidden = false;
  }
}

let searchedSsn = '';

async function loadList() {
  const patients = searchedSsn
    ? await api('GET', `/api/patients/search?ssn=${encodeURIComponent(searchedSsn)}`)
    : await api('GET', '/api/patients');
  const body = $('#patients tbody');
  body.replaceChildren();
  for (const p of patients) {
    const row = el('tr');
    row.append(el('td', p.name), el('td', p.dateOfBirth), el('td', p.diagnosis ?? '—'), el('td', String(p.visits)));
    if (p.id === currentId) row.classList.add('selected');
    row.addEventListener('click', () => openPatient(p.id));
    body.append(row);
  }
}

function fillForm(p) {
  const form = $('#patient-form');
  form.name.value = p ? p.name : '';
  form.ssn.value = p ? p.ssn : '';
  form.dateOfBirth.value = p ? p.dateOfBirth : '';
  form.diagnosis.value = p ? (p.diagnosis ?? '') : '';
  form.notes.value = p ? (p.notes ?? '') : '';
  $('#form-status').textContent = '';
}

function newPatient() {
  currentId = null;
  $('#record-pane').hidden = false;
  $('#record-title').textContent = 'New patient';
  $('#delete-patient').hidden = true;
  $('#visits-block').hidden = true;
  $('#side-by-side').replaceChildren();
  $('#stored-sql').textContent = '';
  fillForm(null);
  loadList();
}

async function openPatient(id) {
  currentId = id;
  const view = await api('GET', `/api/patients/${id}/side-by-side`);
  const p = view.application;
  $('#record-pane').hidden = false;
  $('#record-title').textContent = p.name;
  $('#delete-patient').hidden = false;
  $('#visits-block').hidden = false;
  fillForm(p);
  renderVisits(p.visits);
  renderSideBySide(view);
  await loadList();
}

function renderVisits(visits) {
  const body = $('#visits tbody');
  body.replaceChildren();
  for (const v of visits) {
    const row = el('tr');
    const actions = el('td');
    const edit = el('button', 'Edit', 'secondary');
    edit.addEventListener('click', () => editVisit(v));
    const remove = el('button', 'Delete', 'danger');
    remove.addEventListener('click', () => deleteVisit(v.id));
    actions.append(edit, ' ', remove);
    row.append(el('td', v.at.replace('T', ' ').replace('Z', '').slice(0, 16)), el('td', v.clinician), el('td', v.notes), actions);
    body.append(row);
  }
  resetVisitForm();
}

function resetVisitForm() {
  const form = $('#visit-form');
  form.reset();
  form.visitId.value = '';
  form.at.value = new Date().toISOString().slice(0, 16);
  $('#save-visit').textContent = 'Add visit';
}

function editVisit(v) {
  const form = $('#visit-form');
  form.visitId.value = v.id;
  form.at.value = v.at.slice(0, 16);
  form.clinician.value = v.clinician;
  form.notes.value = v.notes;
  $('#save-visit').textContent = 'Save visit';
}

function tagFor(kind) {
  if (kind === 'ciphertext') return el('span', 'ciphertext', 'tag enc');
  if (kind === 'wrapped-key') return el('span', 'wrapped data key', 'tag key');
  return el('span', 'plain', 'tag plain');
}

function storedTable(row) {
  const table = el('table');
  for (const c of row.columns) {
    const tr = el('tr');
    const name = el('td', null, 'name');
    name.append(el('div', c.name), tagFor(c.kind));
    const shown = c.value === null ? 'NULL' : (c.length !== null ? `0x${c.value}` : c.value);
    const value = el('td', shown, 'value');
    if (c.length !== null) value.title = `${c.length} bytes, ${c.storeType}`;
    tr.append(name, value);
    table.append(tr);
  }
  if (row.wrappedKey) {
    const k = row.wrappedKey;
    const tr = el('tr');
    tr.append(el('td', 'key blob says', 'name'),
      el('td', `format v${k.version}; ${k.mode}; provider "${k.provider}", master key "${k.masterKeyId}"; entity "${k.entity}"; record id ${k.recordId}`, 'value'));
    table.append(tr);
  }
  return table;
}

function seenTable(pairs) {
  const table = el('table');
  for (const [label, value] of pairs) {
    const tr = el('tr');
    tr.append(el('td', label, 'name'), el('td', value ?? 'null', 'value'));
    table.append(tr);
  }
  return table;
}

function block(title, seen, stored) {
  const wrap = el('div', null, 'compare row-block');
  const left = el('div');
  left.append(el('h4', `${title}: the application sees`), seen);
  const right = el('div');
  right.append(el('h4', `${title}: the database stores`), stored);
  wrap.append(left, right);
  return wrap;
}

function renderSideBySide(view) {
  const p = view.application;
  const db = view.database;
  $('#stored-sql').textContent = db.sql.join('; ');
  const container = $('#side-by-side');
  container.replaceChildren();
  container.append(block('Patient', seenTable([
    ['Id', String(p.id)], ['Name', p.name], ['Ssn', p.ssn], ['DateOfBirth', p.dateOfBirth],
    ['Diagnosis', p.diagnosis], ['Notes', p.notes],
  ]), storedTable(db.patient)));
  p.visits.forEach((v, i) => {
    const stored = db.visits.find((row) => row.columns.some((c) => c.name === 'Id' && c.value === String(v.id))) ?? db.visits[i];
    container.append(block(`Visit ${v.id}`, seenTable([
      ['Id', String(v.id)], ['At', v.at], ['Clinician', v.clinician], ['Notes', v.notes],
    ]), storedTable(stored)));
  });
}

$('#new-patient').addEventListener('click', newPatient);

$('#search-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  searchedSsn = event.target.ssn.value.trim();
  await loadList();
});

$('#clear-search').addEventListener('click', async () => {
  searchedSsn = '';
  $('#search-form').ssn.value = '';
  await loadList();
});

$('#patient-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const form = event.target;
  const input = {
    name: form.name.value, ssn: form.ssn.value, dateOfBirth: form.dateOfBirth.value || null,
    diagnosis: form.diagnosis.value, notes: form.notes.value,
  };
  try {
    const saved = currentId === null
      ? await api('POST', '/api/patients', input)
      : await api('PUT', `/api/patients/${currentId}`, input);
    await openPatient(saved.id);
    $('#form-status').textContent = 'Saved.';
  } catch (error) {
    $('#form-status').textContent = error.message;
  }
});

$('#delete-patient').addEventListener('click', async () => {
  if (currentId === null || !confirm('Delete this patient and their visits?')) return;
  await api('DELETE', `/api/patients/${currentId}`);
  currentId = null;
  $('#record-pane').hidden = true;
  await loadList();
});

$('#visit-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const form = event.target;
  const input = { at: form.at.value ? `${form.at.value}:00Z` : null, clinician: form.clinician.value, notes: form.notes.value };
  try {
    if (form.visitId.value) {
      await api('PUT', `/api/patients/${currentId}/visits/${form.visitId.value}`, input);
    } else {
      await api('POST', `/api/patients/${currentId}/visits`, input);
    }
    await openPatient(currentId);
  } catch (error) {
    alert(error.message);
  }
});

async function deleteVisit(visitId) {
  if (!confirm('Delete this visit?')) return;
  await api('DELETE', `/api/patients/${currentId}/visits/${visitId}`);
  await openPatient(currentId);
}

loadAbout().catch((error) => { $('#about').textContent = error.message; });
loadList().then(() => {
  const first = $('#patients tbody tr');
  if (first) first.click();
}).catch((error) => { $('#about').textContent = error.message; });
