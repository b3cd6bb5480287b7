// dflab serve: the page. Plain JavaScript, no library, nothing fetched from elsewhere.
// Upload (XHR, for upload progress) to POST /api/jobs, poll GET /api/jobs/{id} for progress
// (videos: frames done / total), then show the result. Untrusted text goes in with textContent only.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
let model = { name: "", threshold: 0.5, card: "" };
let current = null; // { result, pictureUrl }
let busy = false;

function show(id, on) { $(id).hidden = !on; }

function fmt(p) { return p === null || p === undefined ? "–" : p.toFixed(3); }

function showError(text) {
  $("error").textContent = text;
  show("error", true);
}

async function loadModel() {
  try {
    const r = await fetch("/api/model");
    model = await r.json();
    $("model-name").textContent = model.name;
    $("model-threshold").textContent = "P(fake) ≥ " + model.threshold.toFixed(3) + " → fake";
    $("card-title").textContent = model.name;
    $("card-text").textContent = model.card || "This model has no model card.";
    if (model.limits) $("limit").textContent = Math.round(model.limits.max_upload_bytes / 1048576) + " MB";
  } catch (e) {
    $("model-name").textContent = "(server not reachable)";
  }
}

function setProgress(text, value, max) {
  $("progress-text").textContent = text;
  const bar = $("progress-bar");
  if (value === null) { bar.removeAttribute("value"); } else { bar.max = max; bar.value = value; }
}

function submit(file) {
  if (busy || !file) return;
  busy = true;
  show("error", false);
  show("result", false);
  show("progress", true);
  setProgress("Uploading " + file.name + "…", 0, 100);
  if (current && current.pictureUrl) URL.revokeObjectURL(current.pictureUrl);
  current = null;
  const form = new FormData();
  form.append("file", file, file.name);
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/api/jobs");
  xhr.responseType = "json";
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) setProgress("Uploading " + file.name + "… " + Math.round(100 * e.loaded / e.total) + " %", e.loaded, e.total);
  };
  xhr.onerror = () => fail("The upload failed: the server is not reachable.");
  xhr.onload = () => {
    const body = xhr.response || {};
    if (xhr.status !== 202) {
      let text = body.detail || ("The server answered " + xhr.status + ".");
      if (xhr.status === 503) text += " (the server is busy; try again in a moment)";
      fail(text);
      return;
    }
    poll(body.id, file);
  };
  xhr.send(form);
}

function fail(text) {
  busy = false;
  show("progress", false);
  showError(text);
}

async function poll(id, file) {
  let job;
  try {
    const r = await fetch("/api/jobs/" + encodeURIComponent(id), { cache: "no-store" });
    job = await r.json();
    if (!r.ok) { fail(job.detail || ("The server answered " + r.status + ".")); return; }
  } catch (e) {
    fail("Lost the server while waiting for the result.");
    return;
  }
  if (job.status === "queued") {
    setProgress("Waiting for the model" + (job.position ? " (" + job.position + " ahead)" : "") + "…", null);
  } else if (job.status === "running") {
    const p = job.progress;
    if (job.kind === "video" && p.total > 0) setProgress("Frames " + p.done + " / " + p.total, p.done, p.total);
    else if (job.kind === "video") setProgress("Reading the video…", null);
    else setProgress("Finding and scoring the faces…", null);
  } else if (job.status === "done") {
    busy = false;
    show("progress", false);
    render(job.result, file);
    return;
  } else {
    fail(job.error ? job.error.detail : "The file could not be scored.");
    return;
  }
  setTimeout(() => poll(id, file), 250);
}

function verdictSpan(verdict, text) {
  const span = document.createElement("span");
  span.className = verdict;
  span.textContent = text;
  return span;
}

function render(result, file) {
  current = { result: result, pictureUrl: null };
  const threshold = result.threshold;
  const summary = $("summary");
  summary.textContent = "";
  show("photo", false);
  show("video", false);
  show("frame-figure", false);
  if (result.kind === "video") renderVideo(result, threshold, summary);
  else renderPhoto(result, threshold, summary, file);
  show("result", true);
}

function renderPhoto(result, threshold, summary, file) {
  const row = result.results[0];
  // Scored as a whole image (models that do not find faces themselves): one score, no boxes.
  const photo = result.photos[0] || { status: "whole", faces: [], heatmap: result.heatmap, width: 0, height: 0 };
  const faces = photo.faces || [];
  if (photo.status === "whole") {
    summary.append(result.file + ": ");
    summary.append(verdictSpan(row.verdict, row.verdict));
    summary.append(" · P(fake) " + fmt(row.p_fake));
    $("details").textContent = "Model " + result.detector + ", threshold " + threshold.toFixed(3) +
      " (P(fake) at or above it: fake) · the whole picture scored as one face crop · " + result.elapsed_s + " s";
  } else if (photo.status === "no_face") {
    summary.textContent = result.file + ": no face found";
    $("details").textContent = photo.reason || "";
  } else {
    const fakes = faces.filter((f) => f.verdict === "fake").length;
    const worst = faces.reduce((a, f) => (f.p_fake !== null && (a === null || f.p_fake > a.p_fake) ? f : a), null);
    summary.append(result.file + ": " + faces.length + (faces.length === 1 ? " face, " : " faces, "));
    summary.append(verdictSpan(fakes ? "fake" : "real", fakes ? fakes + " scored fake" : "all scored real"));
    if (worst) summary.append(" · highest P(fake) " + fmt(worst.p_fake));
    $("details").textContent = "Model " + result.detector + ", threshold " + threshold.toFixed(3) +
      " (P(fake) at or above it: fake) · " + photo.width + "×" + photo.height + " px · " + result.elapsed_s + " s";
  }
  const figure = $("figure");
  figure.className = "figure";
  // Small pictures (face crops) are shown larger; large ones fit the page.
  figure.style.width = photo.width ? Math.min(Math.max(photo.width, 420), 960) + "px" : "";
  const picture = $("picture"), heat = $("heatmap");
  heat.removeAttribute("src");
  if (photo.heatmap) heat.src = photo.heatmap;
  current.pictureUrl = URL.createObjectURL(file);
  picture.onerror = () => { figure.classList.add("no-picture"); }; // e.g. TIFF: the heatmap picture only
  picture.src = current.pictureUrl;
  $("heatmap-toggle").disabled = !photo.heatmap;
  $("heatmap-toggle-label").hidden = !photo.heatmap;
  applyToggle();
  const boxes = $("boxes");
  boxes.textContent = "";
  const tbody = $("faces").querySelector("tbody");
  tbody.textContent = "";
  for (const face of faces) {
    const [x0, y0, x1, y1] = face.box;
    const box = document.createElement("div");
    box.className = "box " + face.verdict + (y0 < 0.08 * photo.height ? " low" : "");
    box.style.left = (100 * x0 / photo.width) + "%";
    box.style.top = (100 * y0 / photo.height) + "%";
    box.style.width = (100 * (x1 - x0) / photo.width) + "%";
    box.style.height = (100 * (y1 - y0) / photo.height) + "%";
    const label = document.createElement("span");
    label.textContent = "face " + face.face + ": " + fmt(face.p_fake) + " " + face.verdict;
    box.append(label);
    boxes.append(box);
    const row = document.createElement("tr");
    for (const [text, cls] of [[String(face.face), ""], [fmt(face.p_fake) + " (threshold " + threshold.toFixed(3) + ")", ""],
                               [face.verdict, face.verdict], [face.box.map((v) => Math.round(v)).join(" "), ""]]) {
      const td = document.createElement("td");
      td.textContent = text;
      if (cls) td.className = cls;
      row.append(td);
    }
    tbody.append(row);
  }
  show("faces", faces.length > 0);
  show("photo", true);
}

function renderVideo(result, threshold, summary) {
  const video = result.videos[0];
  const row = result.results[0];
  if (video.status !== "ok") {
    summary.textContent = result.file + ": " + (video.status === "no_face" ? "no face found" : "not scored");
    $("details").textContent = video.reason || "";
  } else {
    summary.append(result.file + ": ");
    summary.append(verdictSpan(row.verdict, row.verdict));
    summary.append(" · P(fake) " + fmt(video.p_fake));
    if (video.persons && video.persons.length > 1) {
      summary.append(" · the most fake of " + video.persons.length + " people (person " + video.person + ")");
    }
    $("details").textContent = "Model " + result.detector + ", threshold " + threshold.toFixed(3) + " · aggregation " +
      video.aggregation + " over " + video.frames_with_face + " of " + video.frames + " sampled frames with a face" +
      (video.reason ? " (" + video.reason + ")" : "") + " · " + result.elapsed_s + " s";
  }
  $("heatmap-toggle-label").hidden = true;
  drawChart(video, threshold);
  show("video", true);
  if (video.heatmaps && video.heatmaps.length) chooseFrame(video, bestFrame(video));
}

function bestFrame(video) {
  let best = 0;
  video.frame_scores.forEach((f, i) => { if (f.p_fake !== null && f.p_fake > (video.frame_scores[best].p_fake || 0)) best = i; });
  return best;
}

function chooseFrame(video, i) {
  const url = (video.heatmaps || [])[i];
  const f = video.frame_scores[i];
  document.querySelectorAll("#chart .pt").forEach((pt) => pt.classList.toggle("chosen", Number(pt.dataset.i) === i));
  if (!url) { show("frame-figure", false); return; }
  $("frame-heatmap").src = url;
  $("frame-heatmap").className = f.p_fake !== null && f.p_fake >= current.result.threshold ? "fake" : "real";
  $("frame-caption").textContent = "Frame " + f.frame_index + " at " + f.timestamp.toFixed(2) + " s: P(fake) " + fmt(f.p_fake) +
    " (" + (f.p_fake >= current.result.threshold ? "fake" : "real") + ") · the heatmap over its face";
  show("frame-figure", true);
}

function el(name, attrs, text) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function drawChart(video, threshold) {
  const svg = $("chart");
  svg.textContent = "";
  const W = 640, H = 260, L = 44, R = 28, T = 22, B = 34;
  const scores = video.frame_scores || [];
  const tMax = Math.max(0.001, ...scores.map((f) => f.timestamp));
  const x = (t) => L + (W - L - R) * (t / tMax);
  const y = (p) => T + (H - T - B) * (1 - p);
  for (const p of [0, 0.25, 0.5, 0.75, 1]) {
    svg.append(el("line", { x1: L, x2: W - R, y1: y(p), y2: y(p), class: "grid" }));
    svg.append(el("text", { x: L - 6, y: y(p) + 4, "text-anchor": "end" }, p.toFixed(2)));
  }
  svg.append(el("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" }));
  svg.append(el("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" }));
  for (let k = 0; k <= 4; k++) {
    const t = tMax * k / 4;
    svg.append(el("text", { x: x(t), y: H - B + 16, "text-anchor": "middle" }, t.toFixed(1) + " s"));
  }
  svg.append(el("text", { x: L + 6, y: 12, "text-anchor": "start" }, "P(fake)"));
  svg.append(el("line", { x1: L, x2: W - R, y1: y(threshold), y2: y(threshold), class: "threshold" }));
  // One curve per person (faces followed over the frames); the video takes its most-fake person's verdict.
  const persons = video.persons && video.persons.length ? video.persons : [{ person: 0 }];
  persons.forEach((person, k) => {
    const pts = scores.filter((f) => f.p_fake !== null && (f.person === undefined || f.person === person.person));
    if (pts.length) {
      svg.append(el("polyline", { class: "line person-" + (k % 4), "data-person": person.person,
                                  points: pts.map((f) => x(f.timestamp) + "," + y(f.p_fake)).join(" ") }));
    }
    if (persons.length > 1) {
      const label = "person " + person.person + ": " + fmt(person.p_fake) + (person.person === video.person ? " (verdict)" : "");
      svg.append(el("text", { x: W - R, y: 12 + 14 * k, "text-anchor": "end", class: "legend person-" + (k % 4) }, label));
    }
  });
  scores.forEach((f, i) => {
    if (f.p_fake === null) return;
    const dot = el("circle", { cx: x(f.timestamp), cy: y(f.p_fake), r: 5, class: "pt " + (f.p_fake >= threshold ? "fake" : "real"),
                               "data-i": i, tabindex: 0 });
    const who = persons.length > 1 && f.person !== undefined ? "person " + f.person + ", " : "";
    dot.append(el("title", {}, who + "frame " + f.frame_index + " (" + f.timestamp.toFixed(2) + " s): P(fake) " + fmt(f.p_fake)));
    dot.addEventListener("click", () => chooseFrame(video, i));
    svg.append(dot);
  });
}

function applyToggle() {
  $("figure").classList.toggle("hide-heatmap", !$("heatmap-toggle").checked);
}

function download() {
  if (!current) return;
  const blob = new Blob([JSON.stringify(current.result, null, 2)], { type: "application/json" });
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = (current.result.file || "result").replace(/\.[^.]*$/, "") + ".dflab.json";
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

function init() {
  loadModel();
  const drop = $("drop");
  $("file").addEventListener("change", (e) => { submit(e.target.files[0]); e.target.value = ""; });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) submit(e.dataTransfer.files[0]);
  });
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("file").click(); } });
  $("heatmap-toggle").addEventListener("change", applyToggle);
  $("download").addEventListener("click", download);
  $("card-button").addEventListener("click", () => $("card-dialog").showModal());
}

document.addEventListener("DOMContentLoaded", init);
