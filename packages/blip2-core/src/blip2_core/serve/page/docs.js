// The API's reference, rendered from the service's own /openapi.json: no CDN, no framework, so it works offline.
"use strict";

const $ = (id) => document.getElementById(id);

// An element with text children and attributes; text only ever goes in as text, never as markup.
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

// "#/components/schemas/X" -> the schema it names
function resolve(spec, schema) {
  let seen = 0;
  while (schema && schema.$ref && seen++ < 10) {
    schema = schema.$ref.replace(/^#\//, "").split("/").reduce((node, key) => (node ? node[key] : undefined), spec);
  }
  return schema || {};
}

function typeOf(spec, schema) {
  schema = resolve(spec, schema);
  const options = schema.anyOf || schema.oneOf;
  if (options) return options.map((option) => typeOf(spec, option)).join(" | ");
  if (schema.type === "array") return `array of ${typeOf(spec, schema.items || {})}`;
  if (schema.format === "binary") return "file";
  return schema.type || (schema.properties ? "object" : "any");
}

function limitsOf(schema) {
  const limits = [];
  const names = [
    ["minimum", ">="], ["exclusiveMinimum", ">"], ["maximum", "<="], ["exclusiveMaximum", "<"],
    ["minLength", "length >="], ["maxLength", "length <="],
  ];
  for (const [key, sign] of names) if (schema[key] !== undefined) limits.push(`${sign} ${schema[key]}`);
  if (schema.enum) limits.push(`one of ${schema.enum.join(", ")}`);
  return limits.join(", ");
}

function fieldsTable(spec, schema) {
  schema = resolve(spec, schema);
  const required = new Set(schema.required || []);
  const rows = Object.entries(schema.properties || {}).map(([name, property]) => {
    const resolved = resolve(spec, property);
    const fallback = (resolved.anyOf || []).map((option) => limitsOf(resolve(spec, option))).filter(Boolean);
    const limits = limitsOf(resolved) || fallback.join(", ");
    const initial = resolved.default === undefined ? "" : JSON.stringify(resolved.default);
    return el(
      "tr", {},
      el("td", {}, el("code", {}, name), required.has(name) ? " (required)" : ""),
      el("td", {}, typeOf(spec, resolved)),
      el("td", {}, initial),
      el("td", {}, limits),
      el("td", {}, resolved.description || resolved.title || ""),
    );
  });
  if (!rows.length) return el("p", { class: "muted" }, "no fields");
  const head = el("tr", {}, ...["field", "type", "default", "limits", "what"].map((name) => el("th", {}, name)));
  return el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows));
}

function endpoint(spec, path, method, operation, number) {
  const id = `op-${number}`;
  const section = el(
    "section", { id, class: "endpoint" },
    el("h2", {}, el("span", { class: `method ${method}` }, method.toUpperCase()), " ", el("code", {}, path)),
    operation.summary ? el("p", {}, operation.summary) : null,
    operation.description ? el("p", { class: "muted" }, operation.description) : null,
  );
  const parameters = operation.parameters || [];
  if (parameters.length) {
    section.appendChild(el("h3", {}, "parameters"));
    const schema = { properties: {}, required: [] };
    for (const parameter of parameters) {
      schema.properties[parameter.name] = { ...resolve(spec, parameter.schema), description: `in ${parameter.in}` };
      if (parameter.required) schema.required.push(parameter.name);
    }
    section.appendChild(fieldsTable(spec, schema));
  }
  const content = (operation.requestBody && resolve(spec, operation.requestBody).content) || {};
  for (const [kind, body] of Object.entries(content)) {
    section.appendChild(el("h3", {}, "body: ", el("code", {}, kind)));
    section.appendChild(fieldsTable(spec, body.schema || {}));
  }
  const responses = Object.entries(operation.responses || {});
  if (responses.length) {
    section.appendChild(el("h3", {}, "responses"));
    section.appendChild(
      el("ul", {}, ...responses.map(([code, reply]) => el("li", {}, el("code", {}, code), " ", reply.description || ""))),
    );
  }
  $("index").appendChild(el("li", {}, el("a", { href: `#${id}` }, `${method.toUpperCase()} ${path}`)));
  return section;
}

async function render() {
  try {
    const response = await fetch("/openapi.json");
    if (!response.ok) throw new Error(`/openapi.json: HTTP ${response.status}`);
    const spec = await response.json();
    document.title = `${spec.info.title} API`;
    $("description").textContent = spec.info.description || "";
    let number = 0;
    for (const [path, operations] of Object.entries(spec.paths || {})) {
      for (const [method, operation] of Object.entries(operations)) {
        $("endpoints").appendChild(endpoint(spec, path, method, operation, number++));
      }
    }
  } catch (error) {
    $("error").textContent = `cannot show the API: ${error.message}`;
    $("error").hidden = false;
  }
}

render();
