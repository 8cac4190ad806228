// The Onitu page: plain JavaScript, no build step. It reads the API with the token it was opened with
// (#token=..., kept in this browser's storage and never sent anywhere but in the Authorization header), and
// follows the hub live through /api/events (server-sent events read with fetch, since EventSource cannot send
// a header; Last-Event-ID resumes after a reconnection).
"use strict";

const state = { token: "", lastId: null, folders: {}, services: {}, drivers: {}, dir: "", folder: "", transfers: {},
                editing: { folder: null, service: null } };  // the names the forms change, null: they add
const $ = (id) => document.getElementById(id);

function takeToken() {
  const match = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (match) {
    localStorage.setItem("onitu-token", decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + location.search);  // not left in the address bar
  }
  return localStorage.getItem("onitu-token") || "";
}

async function api(method, path, body) {
  const init = { method, headers: { Authorization: "Bearer " + state.token } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const answer = await fetch(path, init);
  const data = answer.headers.get("content-type")?.includes("json") ? await answer.json() : await answer.text();
  if (!answer.ok) {
    throw new Error(explain(answer.status, data));
  }
  return data;
}

function explain(code, data) {
  if (code === 401) return "The token is missing or wrong: open the address `onitu open` prints.";
  const detail = data && data.detail;
  if (Array.isArray(detail)) return detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
  return detail || `HTTP ${code}`;
}

function showError(error) {
  const box = $("error");
  box.textContent = error ? String(error.message || error) : "";
  box.hidden = !error;
}

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    if (cell instanceof Node) td.append(cell); else td.textContent = cell === null || cell === undefined ? "" : cell;
    tr.append(td);
  }
  return tr;
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return i ? `${n.toFixed(1)} ${units[i]}` : `${n} B`;
}

// ---- the views --------------------------------------------------------------------------------------------------

async function refreshStatus() {
  const status = await api("GET", "/api/status");
  const folders = status.sync.folders || {};
  const body = $("folders").tBodies[0];
  body.replaceChildren();
  for (const [folder, info] of Object.entries(folders)) {
    for (const [service, r] of Object.entries(info.services || {})) {
      const label = el("span", r.state, "state " + r.state.split(":")[0].replace(/ /g, "-"));
      body.append(row([folder, service, label, r.files ? `${r.files} files, ${bytes(r.bytes)}` : "",
                       r.held || "", info.conflicts || ""]));
    }
  }
  $("no-folders").hidden = Object.keys(state.folders).length > 0;
  const procs = $("processes").tBodies[0];
  procs.replaceChildren();
  for (const p of status.processes) {
    procs.append(row([p.name, p.role, el("span", p.state, "state " + p.state), p.restarts, p.reason]));
  }
  const space = status.space;
  $("space").textContent = space.epoch ? `space: ${space.mode}, epoch ${space.epoch}, primary ${space.primary}` : "";
}

async function refreshConflicts() {
  const conflicts = await api("GET", "/api/conflicts");
  const body = $("conflicts").tBodies[0];
  body.replaceChildren();
  for (const c of conflicts) {
    const box = el("input");
    box.type = "checkbox";
    box.dataset.conflict = c.conflict;
    box.dataset.folder = c.folder;
    box.setAttribute("aria-label", "select " + c.conflict);
    body.append(row([box, c.folder, c.path, c.conflict, c.service]));
  }
  $("no-conflicts").hidden = conflicts.length > 0;
  $("resolve-form").hidden = conflicts.length === 0;
  $("conflicts-all").checked = false;
}

async function refreshHeld() {
  const held = await api("GET", "/api/held");
  const list = $("held");
  list.replaceChildren();
  for (const h of held) {
    const item = el("li");
    item.append(el("span", `${h.folder}: ${h.deleted} of ${h.total} entries deleted on ${h.service} `
                          + `(${h.paths.slice(0, 5).join(", ")}${h.count > 5 ? ", …" : ""}) `));
    for (const [verb, label] of [["approve", "Approve (delete everywhere)"], ["reject", "Reject (copy back)"]]) {
      const button = el("button", label);
      button.type = "button";
      button.dataset.verb = verb;
      button.addEventListener("click", () => release(verb, h.folder, h.service));
      item.append(button);
    }
    list.append(item);
  }
  $("no-held").hidden = held.length > 0;
}

async function refreshConfig() {
  [state.folders, state.services, state.drivers] = await Promise.all(
    [api("GET", "/api/folders"), api("GET", "/api/services"), api("GET", "/api/drivers")]);
  renderConfig();
  const names = Object.keys(state.folders);
  for (const select of [$("files-folder"), $("service-folder")]) {
    const chosen = select.value;
    select.replaceChildren(...names.map((n) => el("option", n)));
    if (names.includes(chosen)) select.value = chosen;
  }
  if (!state.folder || !names.includes(state.folder)) { state.folder = names[0] || ""; state.dir = ""; }
  const driver = $("service-driver");
  if (!driver.options.length) {
    driver.replaceChildren(...Object.keys(state.drivers).map((n) => el("option", n)));
    if ("local" in state.drivers) driver.value = "local";  // the one people start with
    driverOptions();
  }
}

async function refreshFiles() {
  const body = $("files").tBodies[0];
  $("files-dir").textContent = state.dir ? "/" + state.dir : "/";
  $("files-up").hidden = !state.dir;
  if (!state.folder) { body.replaceChildren(); return; }
  const [folder, dir] = [state.folder, state.dir];
  const entries = await api("GET", `/api/folders/${encodeURIComponent(folder)}/files?dir=` + encodeURIComponent(dir));
  if (folder !== state.folder || dir !== state.dir) return;  // another directory was opened meanwhile
  const rows = [];  // filled in one go once the answer is here: two refreshes under way never add up
  for (const f of entries) {
    let name = f.name;
    if (f.kind === "dir") {
      name = el("button", f.name + "/", "link");
      name.type = "button";
      name.addEventListener("click", () => { state.dir = f.path; refreshFiles().catch(showError); });
    }
    rows.push(row([name, f.kind === "dir" ? "" : bytes(f.size), (f.holders || []).join(", "),
                   el("code", f.sha256 ? f.sha256.slice(0, 12) : "")]));
  }
  body.replaceChildren(...rows);
}

function renderTransfers() {
  const list = $("transfers");
  list.replaceChildren();
  for (const [service, transfers] of Object.entries(state.transfers)) {
    for (const [path, t] of Object.entries(transfers)) {
      const bar = el("progress");
      bar.max = t.size || 1;
      bar.value = t.done;
      const item = el("li");
      item.append(el("span", `${service} ← ${path} `), bar, el("span", ` ${bytes(t.done)} of ${bytes(t.size)}`));
      list.append(item);
    }
  }
  $("no-transfers").hidden = list.children.length > 0;
}

// ---- commands ---------------------------------------------------------------------------------------------------

async function resolveSelected(event) {
  event.preventDefault();
  const boxes = [...$("conflicts").querySelectorAll("tbody input:checked")];
  if (!boxes.length) { showError(new Error("Select the conflicts to resolve.")); return; }
  try {
    await api("POST", "/api/conflicts/resolve", { paths: boxes.map((b) => b.dataset.conflict),
                                                  keep: $("keep").value });
    showError(null);
  } catch (error) { showError(error); }
  await refreshConflicts().catch(showError);
}

async function release(verb, folder, service) {
  try {
    await api("POST", `/api/held/${verb}`, { folder, service });
    showError(null);
  } catch (error) { showError(error); }
  await refreshHeld().catch(showError);
}

function formError(form, error) {
  const box = form.querySelector(".form-error");
  box.textContent = error ? error.message : "";
  box.hidden = !error;
}

async function addFolder(event) {
  event.preventDefault();
  const form = event.target;
  const name = state.editing.folder;
  const options = name ? { ...state.folders[name].options } : {};  // what the form does not show stays
  delete options.blacklist;
  const globs = $("folder-blacklist").value.split(",").map((s) => s.trim()).filter(Boolean);
  if (globs.length) options.blacklist = globs;
  try {
    if (name) await api("PUT", `/api/folders/${encodeURIComponent(name)}`, { options });
    else await api("POST", "/api/folders", { name: $("folder-name").value.trim(), options });
    formError(form, null);
    editFolder(null);
    await refreshConfig();
    await refreshStatus();
  } catch (error) { formError(form, error); }
}

function driverOptions() {
  const schema = state.drivers[$("service-driver").value] || { properties: {} };
  const required = new Set(schema.required || []);
  const box = $("service-options");
  box.replaceChildren(el("legend", "options"));
  for (const [name, prop] of Object.entries(schema.properties || {})) {
    const label = el("label", name + (required.has(name) ? " (required) " : " "));
    const input = el("input");
    input.name = name;
    input.dataset.option = name;
    input.dataset.type = prop.type || (prop.anyOf || []).map((t) => t.type).find((t) => t !== "null") || "string";
    if (input.dataset.type === "boolean") input.type = "checkbox";
    else if (prop.default !== undefined && prop.default !== null) input.placeholder = String(prop.default);
    if (/password|secret/i.test(name)) input.type = "password";
    input.id = "option-" + name;
    if (prop.description) input.title = prop.description;
    label.append(input);
    box.append(label);
  }
}

function optionValues() {
  const options = {};
  for (const input of $("service-options").querySelectorAll("input")) {
    const type = input.dataset.type;
    if (type === "boolean") { if (input.checked) options[input.dataset.option] = true; continue; }
    if (input.value === "") continue;
    options[input.dataset.option] = (type === "number" || type === "integer") ? Number(input.value) : input.value;
  }
  return options;
}

async function addService(event) {
  event.preventDefault();
  const form = event.target;
  const folder = $("service-folder").value;
  const name = state.editing.service;
  const kept = name ? { ...state.services[name].folders } : {};  // the folders the form does not show stay
  const body = { driver: $("service-driver").value, options: optionValues(),
                 folders: folder ? { ...kept, [folder]: $("service-path").value.trim() } : kept };
  try {
    if (name) await api("PUT", `/api/services/${encodeURIComponent(name)}`, body);
    else await api("POST", "/api/services", { name: $("service-name").value.trim(), ...body });
    formError(form, null);
    editService(null);
    await refreshConfig();
    await refreshStatus();
  } catch (error) { formError(form, error); }
}

// ---- change and remove ------------------------------------------------------------------------------------------

function renderConfig() {
  const body = $("config").tBodies[0];
  body.replaceChildren();
  const entries = [
    ...Object.entries(state.folders).map(([n, f]) => [n, "folder", Object.keys(f.services).join(", ")]),
    ...Object.entries(state.services).map(([n, s]) => [n, `service (${s.driver})`, Object.keys(s.folders).join(", ")]),
  ];
  for (const [name, kind, holds] of entries) {
    const which = kind === "folder" ? "folder" : "service";
    const buttons = el("span");
    for (const [verb, act] of [["change", which === "folder" ? editFolder : editService], ["remove", remove]]) {
      const button = el("button", verb);
      button.type = "button";
      button.dataset.verb = verb;
      button.dataset[which] = name;
      button.addEventListener("click", () => act(name, which));
      buttons.append(button);
    }
    body.append(row([name, kind, holds, buttons]));
  }
  $("no-config").hidden = entries.length > 0;
  $("config").hidden = entries.length === 0;
}

function formFor(which, name) {  // the folder or service form, emptied, to add (name null) or change `name`
  state.editing[which] = name;
  const form = $(`${which}-form`);
  form.reset();
  formError(form, null);
  $(`${which}-name`).disabled = Boolean(name);
  $(`${which}-title`).textContent = name ? `Change ${which} ${name}` : `Add a ${which}`;
  $(`${which}-add`).textContent = `${name ? "Save" : "Add"} ${which}`;
  $(`${which}-cancel`).hidden = !name;
  return form;
}

function editFolder(name) {
  const form = formFor("folder", name);
  if (name) {
    $("folder-name").value = name;
    $("folder-blacklist").value = (state.folders[name].options.blacklist || []).join(", ");
    form.scrollIntoView({ block: "nearest" });
  }
}

function editService(name) {
  const form = formFor("service", name);
  if (!name) { driverOptions(); return; }
  const service = state.services[name];
  $("service-name").value = name;
  $("service-driver").value = service.driver;
  driverOptions();
  for (const [option, value] of Object.entries(service.options)) {
    const input = $("option-" + option);
    if (!input) continue;
    if (input.type === "checkbox") input.checked = Boolean(value); else input.value = String(value);
  }
  const [folder, settings] = Object.entries(service.folders)[0] || ["", {}];
  $("service-folder").value = folder;
  $("service-path").value = settings.path || "";
  form.scrollIntoView({ block: "nearest" });
}

async function remove(name, which) {
  const what = which === "folder" ? `folder ${name}: no service will sync it any more`
                                  : `service ${name}: its plug stops`;
  if (!confirm(`Remove ${what}? No file is deleted anywhere.`)) return;
  try {
    await api("DELETE", `/api/${which}s/${encodeURIComponent(name)}`);
    showError(null);
    if (state.editing[which] === name) (which === "folder" ? editFolder : editService)(null);
  } catch (error) { showError(error); }
  await refreshConfig().catch(showError);
  await refreshStatus().catch(showError);
}

// ---- live events ------------------------------------------------------------------------------------------------

const pending = new Set();
let timer = null;

function soon(...views) {  // many events in a burst: each view is read once when they pause
  views.forEach((v) => pending.add(v));
  clearTimeout(timer);
  timer = setTimeout(() => {
    const views = [...pending];
    pending.clear();
    for (const view of views) view().catch(showError);
  }, 150);
}

function logEvent(name, data) {
  const text = {
    "file.changed": () => `${data.folder}/${data.path} changed (on ${data.holders.join(", ")})`,
    "file.deleted": () => `${data.folder}/${data.path} deleted`,
    "transfer.started": () => `copying ${data.files} file(s) (${bytes(data.bytes)}) to ${data.service}`,
    "transfer.done": () => `copied ${data.files} file(s) to ${data.service}`,
    "conflict": () => `conflict: ${data.folder}/${data.path}, the other version kept as ${data.conflict}`,
    "conflict.resolved": () => `resolved: ${data.folder}/${data.conflict}`,
    "deletions.held": () => `${data.folder}: ${data.deleted} deletions on ${data.service} held for approval`,
    "deletions.released": () => `${data.folder}: deletions on ${data.service} released`,
    "replica.unavailable": () => `${data.service} is unavailable: ${data.reason}`,
    "replica.available": () => `${data.service} is available`,
    "process.restarted": () => `${data.name} restarted (${data.restarts})${data.reason ? ": " + data.reason : ""}`,
    "failover": () => `failover: ${data.primary} is the primary (epoch ${data.epoch})`,
    "resync": () => "reconnected after missing events: everything was read again",
  }[name];
  if (!text) return;
  const list = $("events");
  const item = el("li", `${new Date().toLocaleTimeString()} ${text()}`, "event " + name.replace(".", "-"));
  item.dataset.event = name;
  list.prepend(item);
  while (list.children.length > 100) list.lastChild.remove();
}

function handle(name, data) {
  logEvent(name, data);
  if (name === "transfer.progress") {
    state.transfers[data.service] = data.transfers;
    renderTransfers();
  } else if (name === "transfer.done") {
    delete state.transfers[data.service];
    renderTransfers();
  }
  if (name.startsWith("file.") && data.folder === state.folder) soon(refreshFiles);
  if (name.startsWith("conflict")) soon(refreshConflicts, refreshStatus);
  if (name.startsWith("deletions")) soon(refreshHeld, refreshStatus);
  if (name.startsWith("replica") || name.startsWith("transfer.") && name !== "transfer.progress"
      || name === "process.restarted" || name === "failover") soon(refreshStatus);
  if (name === "resync") soon(refreshStatus, refreshConflicts, refreshHeld, refreshFiles);
}

async function follow() {
  for (;;) {
    try {
      const headers = { Authorization: "Bearer " + state.token };
      if (state.lastId) headers["Last-Event-ID"] = state.lastId;
      const answer = await fetch("/api/events", { headers });
      if (!answer.ok) throw new Error(explain(answer.status, await answer.json().catch(() => null)));
      live(true);
      await readStream(answer.body.getReader());
    } catch (error) {
      if (error.message.includes("token")) { showError(error); live(false); return; }
    }
    live(false);
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

async function readStream(reader) {
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message", data = "", id = null;
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
        else if (line.startsWith("id:")) id = line.slice(3).trim();
      }
      if (id) state.lastId = id;
      if (data) handle(name, JSON.parse(data));
    }
  }
}

function live(on) {
  const badge = $("live");
  badge.textContent = on ? "live" : "reconnecting…";
  badge.className = "badge " + (on ? "on" : "off");
}

// ---- start ------------------------------------------------------------------------------------------------------

async function start() {
  state.token = takeToken();
  if (!state.token) {
    showError(new Error("No token: open the address `onitu start` or `onitu open` prints (it ends in #token=…)."));
    return;
  }
  $("resolve-form").addEventListener("submit", resolveSelected);
  $("conflicts-all").addEventListener("change", (e) => {
    for (const box of $("conflicts").querySelectorAll("tbody input")) box.checked = e.target.checked;
  });
  $("folder-form").addEventListener("submit", addFolder);
  $("service-form").addEventListener("submit", addService);
  $("service-driver").addEventListener("change", driverOptions);
  $("folder-cancel").addEventListener("click", () => editFolder(null));
  $("service-cancel").addEventListener("click", () => editService(null));
  $("files-folder").addEventListener("change", (e) => {
    state.folder = e.target.value; state.dir = ""; refreshFiles().catch(showError);
  });
  $("files-up").addEventListener("click", () => {
    state.dir = state.dir.includes("/") ? state.dir.slice(0, state.dir.lastIndexOf("/")) : "";
    refreshFiles().catch(showError);
  });
  try {
    await refreshConfig();
    await Promise.all([refreshStatus(), refreshConflicts(), refreshHeld(), refreshFiles()]);
    document.body.dataset.ready = "yes";
  } catch (error) { showError(error); }
  follow();
  setInterval(() => refreshStatus().catch(showError), 5000);  // uptimes, and what no event tells
}

document.addEventListener("DOMContentLoaded", start);
