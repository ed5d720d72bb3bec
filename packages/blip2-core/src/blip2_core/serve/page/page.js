// The page talks to the same API as any client: /v1/caption and /v1/vqa with a multipart upload.
"use strict";

const $ = (id) => document.getElementById(id);
let image = null; // the chosen File

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function choose(file) {
  if (!file) return;
  if (!file.type.startsWith("image/")) {
    showError(`${file.name} is not an image`);
    return;
  }
  image = file;
  showError("");
  $("caption").textContent = "";
  $("answer").textContent = "";
  const preview = $("preview");
  preview.src = URL.createObjectURL(file);
  preview.alt = file.name;
  preview.hidden = false;
  $("drop-hint").hidden = true;
  $("caption-button").disabled = false;
  $("ask-button").disabled = false;
}

const imageButtons = () => [$("caption-button"), $("ask-button")];

async function post(path, fields, output) {
  const body = new FormData();
  body.append("image", image, image.name);
  for (const [name, value] of Object.entries(fields)) body.append(name, value);
  showError("");
  output.textContent = "";
  $("status").textContent = "working…";
  for (const button of imageButtons()) button.disabled = true;
  try {
    const response = await fetch(path, { method: "POST", body });
    const reply = await response.json().catch(() => ({ detail: `HTTP ${response.status}` }));
    if (!response.ok) {
      const retry = response.headers.get("Retry-After");
      throw new Error(reply.detail + (retry ? ` (try again in ${retry} s)` : ""));
    }
    $("status").textContent = `done in ${reply.seconds} s`;
    return reply;
  } catch (error) {
    $("status").textContent = "";
    showError(error.message);
    return null;
  } finally {
    for (const button of imageButtons()) button.disabled = image === null;
  }
}

$("file").addEventListener("change", (event) => choose(event.target.files[0]));
const drop = $("drop");
drop.addEventListener("click", (event) => { if (event.target.tagName !== "LABEL") $("file").click(); });
drop.addEventListener("keydown", (event) => { if (event.key === "Enter" || event.key === " ") $("file").click(); });
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  choose(event.dataTransfer.files[0]);
});

$("caption-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const prompt = $("prompt").value.trim();
  const reply = await post("/v1/caption", prompt ? { prompt } : {}, $("caption"));
  if (reply) $("caption").textContent = reply.caption;
});

$("vqa-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!question) {
    showError("type a question first");
    return;
  }
  const reply = await post("/v1/vqa", { question }, $("answer"));
  if (reply) $("answer").textContent = reply.answer;
});

$("search-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = $("search").value.trim();
  const list = $("results");
  if (!text) {
    showError("type what to search for first");
    return;
  }
  showError("");
  list.replaceChildren();
  $("status").textContent = "searching…";
  try {
    const response = await fetch("/v1/search", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ text, top_k: 12 }),
    });
    const reply = await response.json();
    if (!response.ok) throw new Error(reply.detail);
    for (const hit of reply.results) {
      const item = document.createElement("li");
      const picture = document.createElement("img");
      picture.src = hit.url;
      picture.alt = hit.image;
      const caption = document.createElement("span");
      caption.textContent = `${hit.image} · ${hit.score.toFixed(3)}`;
      item.append(picture, caption);
      list.append(item);
    }
    $("status").textContent = `${reply.results.length} of ${reply.images} images`;
  } catch (error) {
    $("status").textContent = "";
    showError(error.message);
  }
});

fetch("/v1/model")
  .then((response) => response.json())
  .then((info) => {
    $("model").textContent = `model: ${info.name} · ${info.dtype} · ${info.image_size}px`;
    if (info.gallery) {
      $("gallery").hidden = false;
      $("gallery-size").textContent = `(${info.gallery.images} images in ${info.gallery.folder})`;
    }
  })
  .catch(() => { $("model").textContent = "model info unavailable"; });
