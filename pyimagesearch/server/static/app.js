// The pokedex page: pick, drop or photograph an image, POST it to predict, draw the answer.
// No libraries and no requests beyond this server (the page's CSP forbids them anyway).
"use strict";

const TOKEN_KEY = "pokedex-token";
const settings = document.body.dataset;
const fileInput = document.getElementById("file");
const drop = document.getElementById("drop");
const tokenForm = document.getElementById("token-form");
const tokenInput = document.getElementById("token");
const result = document.getElementById("result");
const preview = document.getElementById("preview");
const statusLine = document.getElementById("status");
const labelLine = document.getElementById("label");
const bars = document.getElementById("bars");
let pending = null;  // the image waiting for a token
let previewUrl = null;

document.getElementById("pick").addEventListener("click", () => fileInput.click());
fileInput.addEventListener("change", () => {
  if (fileInput.files.length) classify(fileInput.files[0]);
  fileInput.value = "";  // choosing the same photo again classifies it again
});

for (const type of ["dragenter", "dragover"]) {
  drop.addEventListener(type, (event) => { event.preventDefault(); drop.classList.add("over"); });
}
for (const type of ["dragleave", "drop"]) {
  drop.addEventListener(type, () => drop.classList.remove("over"));
}
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  const file = event.dataTransfer.files[0];
  if (file) classify(file);
});

tokenForm.addEventListener("submit", (event) => {
  event.preventDefault();
  localStorage.setItem(TOKEN_KEY, tokenInput.value.trim());
  tokenForm.hidden = true;
  if (pending) classify(pending);
});

function show(file) {
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = URL.createObjectURL(file);
  preview.src = previewUrl;
  preview.alt = file.name ? `the image you chose: ${file.name}` : "the image you chose";
  result.hidden = false;
}

function say(text, kind) {
  statusLine.textContent = text;
  statusLine.className = `status ${kind || ""}`;
}

async function classify(file) {
  show(file);
  labelLine.textContent = "";
  labelLine.className = "label";
  bars.replaceChildren();
  if (file.size > Number(settings.maxUploadBytes)) {
    say(`This image is ${(file.size / 1e6).toFixed(1)} MB; the limit is ` +
        `${(Number(settings.maxUploadBytes) / 1e6).toFixed(1)} MB.`, "error");
    return;
  }
  say("Looking…", "busy");
  const headers = { "Content-Type": file.type || "application/octet-stream" };
  const token = localStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  let response, answer;
  try {
    response = await fetch(`predict?top_k=${settings.topK}`, { method: "POST", body: file, headers });
    answer = await response.json();
  } catch (error) {
    say(`The server did not answer (${error.message}).`, "error");
    return;
  }
  if (response.status === 401) {  // ask once; a wrong stored token is asked for again
    localStorage.removeItem(TOKEN_KEY);
    pending = file;
    say("Enter the token above to see the answer.", "busy");
    tokenForm.hidden = false;
    tokenInput.focus();
    return;
  }
  pending = null;
  if (!response.ok) {
    say(answer.error || `The server answered ${response.status}.`, "error");
    return;
  }
  draw(answer);
}

function draw(answer) {
  const unknown = answer.label === "unknown";
  const percent = (p) => `${(p * 100).toFixed(1)}%`;
  say(unknown ? `Not sure: the best guess, ${answer.labels[0]}, is only ${percent(answer.probability)}.`
              : "", unknown ? "unsure" : "");
  labelLine.textContent = unknown ? "unknown" : answer.label;
  labelLine.className = unknown ? "label unknown" : "label";
  labelLine.dataset.label = answer.label;
  bars.className = unknown ? "bars unsure" : "bars";
  bars.replaceChildren(...answer.labels.map((name, i) => {
    const item = document.createElement("li");
    const text = document.createElement("span");
    text.className = "name";
    text.textContent = name;
    const meter = document.createElement("span");
    meter.className = "meter";
    meter.setAttribute("role", "meter");
    meter.setAttribute("aria-valuemin", "0");
    meter.setAttribute("aria-valuemax", "100");
    meter.setAttribute("aria-valuenow", (answer.probabilities[i] * 100).toFixed(1));
    meter.setAttribute("aria-label", name);
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.width = percent(answer.probabilities[i]);
    meter.append(fill);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = percent(answer.probabilities[i]);
    item.append(text, meter, value);
    return item;
  }));
}
