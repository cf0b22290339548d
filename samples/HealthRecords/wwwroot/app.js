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
    // Problem details: the validation errors by field, or the title; the correlation id is what an administrator
    // looks up in the server log (the details of a failure are there, not here).
    const errors = data && data.errors ? Object.entries(data.errors).map(([k, v]) => `${k}: ${v.join(' ')}`).join('; ') : '';
    const message = errors || (data && data.title) || `${response.status} ${response.statusText}`;
    const correlation = data && data.correlationId ? ` (correlation id ${data.correlationId})` : '';
    throw new Error(message + correlation);
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
let page = 1;
const pageSize = 25;

async function loadList() {
  let patients;
  $('#list-note').textContent = '';
  if (searchedSsn) {
    // POST: the SSN travels in the body, never in a URL (and so in no request log or browser history).
    const result = await api('POST', '/api/patients/search', { ssn: searchedSsn });
    patients = result.items;
    $('#pager').hidden = true;
    if (result.unreadable > 0) {
      $('#list-note').textContent = `${result.unreadable} matching record(s) cannot be decrypted, so their SSN could not be checked; not shown.`;
    }
  } else {
    const result = await api('GET', `/api/patients?page=${page}&pageSize=${pageSize}`);
    patients = result.items;
    const pages = Math.max(1, Math.ceil(result.total / result.pageSize));
    $('#pager').hidden = false;
    $('#page-info').textContent = `Page ${result.page} of ${pages} · ${result.total} patients`;
    $('#previous-page').disabled = result.page <= 1;
    $('#next-page').disabled = result.page >= pages;
  }
  const body = $('#patients tbody');
  body.replaceChildren();
  for (const p of patients) {
    const row = el('tr');
    if (p.problem) {
      // Only the plain columns are known; the rest is marked, with the id to quote.
      const marked = el('td', `record ${p.id} ${p.problem}`, 'problem');
      marked.colSpan = 2;
      row.append(el('td', p.name), marked, el('td', String(p.visits)));
      row.classList.add('unreadable');
    } else {
      row.append(el('td', p.name), el('td', p.dateOfBirth), el('td', p.diagnosis ?? '—'), el('td', String(p.visits)));
    }
    if (p.id === currentId) row.classList.add('selected');
    row.addEventListener('click', () => openPatient(p.id).catch(showError));
    body.append(row);
  }
}

function showError(error) {
  $('#list-note').textContent = error.message;
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
  $('#record-problem').hidden = true;
  $('#patient-form').hidden = false;
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
  $('#delete-patient').hidden = false;
  $('#record-problem').hidden = p !== null;
  $('#patient-form').hidden = p === null;
  $('#visits-block').hidden = p === null;
  if (p === null) {
    // The record failed authentication: nothing decrypted to show, but the stored row is worth seeing, and deleting
    // works without decrypting.
    const name = view.database.patient.columns.find((c) => c.name === 'Name');
    $('#record-title').textContent = name ? name.value : `Patient ${id}`;
    $('#record-problem').textContent = `Record ${id} ${view.problem}: it was altered, damaged or written under another master key. `
      + 'It is not shown, and it can be deleted. The server log names the property and key.';
  } else {
    $('#record-title').textContent = p.name;
    fillForm(p);
    renderVisits(p.visits);
  }
  renderSideBySide(view);
  await loadList();
}

function renderVisits(visits) {
  const body = $('#visits tbody');
  body.replaceChildren();
  for (const v of visits) {
    const row = el('tr');
    const actions = el('td');
    const remove = el('button', 'Delete', 'danger');
    remove.addEventListener('click', () => deleteVisit(v.id));
    if (!v.problem) {
      const edit = el('button', 'Edit', 'secondary');
      edit.addEventListener('click', () => editVisit(v));
      actions.append(edit, ' ');
    }
    actions.append(remove);
    const notes = v.problem ? el('td', `visit ${v.id} ${v.problem}`, 'problem') : el('td', v.notes);
    row.append(el('td', v.at.replace('T', ' ').replace('Z', '').slice(0, 16)), el('td', v.clinician), notes, actions);
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
  if (kind === 'blind-index') return el('span', 'blind index (keyed HMAC)', 'tag idx');
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
  const seen = p === null
    ? seenTable([['Id', String(currentId)], ['(all encrypted values)', view.problem]])
    : seenTable([
      ['Id', String(p.id)], ['Name', p.name], ['Ssn', p.ssn], ['DateOfBirth', p.dateOfBirth],
      ['Diagnosis', p.diagnosis], ['Notes', p.notes],
    ]);
  container.append(block('Patient', seen, storedTable(db.patient)));
  const visits = p === null ? [] : p.visits;
  visits.forEach((v, i) => {
    const stored = db.visits.find((row) => row.columns.some((c) => c.name === 'Id' && c.value === String(v.id))) ?? db.visits[i];
    container.append(block(`Visit ${v.id}`, seenTable([
      ['Id', String(v.id)], ['At', v.at], ['Clinician', v.clinician], ['Notes', v.problem ?? v.notes],
    ]), storedTable(stored)));
  });
}

$('#new-patient').addEventListener('click', newPatient);

$('#search-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  searchedSsn = event.target.ssn.value.trim();
  await loadList().catch(showError);
});

$('#clear-search').addEventListener('click', async () => {
  searchedSsn = '';
  $('#search-form').ssn.value = '';
  await loadList().catch(showError);
});

$('#previous-page').addEventListener('click', () => { page -= 1; loadList().catch(showError); });
$('#next-page').addEventListener('click', () => { page += 1; loadList().catch(showError); });

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
  try {
    await api('DELETE', `/api/patients/${currentId}`);
  } catch (error) {
    showError(error);
    return;
  }
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
  try {
    await api('DELETE', `/api/patients/${currentId}/visits/${visitId}`);
    await openPatient(currentId);
  } catch (error) {
    alert(error.message);
  }
}

loadAbout().catch((error) => { $('#about').textContent = error.message; });
loadList().then(() => {
  const first = $('#patients tbody tr');
  if (first) first.click();
}).catch(showError);
