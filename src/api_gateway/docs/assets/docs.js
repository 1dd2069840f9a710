// Renders /docs/openapi.json without any library or network access beyond this gateway.
// Everything from the document is inserted as text, never as markup.
"use strict";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

function resolve(spec, item) {
  if (!item || !item.$ref) return item;
  let target = spec;
  for (const part of item.$ref.replace(/^#\//, "").split("/")) target = target[part];
  return Object.assign({ name: item.$ref.split("/").pop() }, target);
}

function table(headings, rows) {
  if (!rows.length) return null;
  return el("table", {},
    el("tr", {}, ...headings.map((h) => el("th", {}, h))),
    ...rows.map((row) => el("tr", {}, ...row.map((cell) => el("td", {}, String(cell))))));
}

function schemaText(schema) {
  if (!schema) return "";
  const facts = Object.entries(schema).filter(([key]) => key !== "type");
  return (schema.type || "any") + (facts.length ? " " + JSON.stringify(Object.fromEntries(facts)) : "");
}

function operationView(spec, path, method, op) {
  const security = op.security || spec.security || [];
  const isPublic = security.length === 0;
  const params = (op.parameters || []).map((p) => [p.name, p.in, p.required ? "yes" : "no", schemaText(p.schema)]);
  const responses = Object.entries(op.responses || {}).map(([status, raw]) => {
    const response = resolve(spec, raw);
    const headers = Object.keys(response.headers || {}).join(", ");
    const types = Object.keys(response.content || {}).join(", ");
    return [status, response.description || "", types, headers];
  });
  const body = op.requestBody
    ? el("p", {}, "Request body: ", Object.keys(op.requestBody.content || {}).join(", "), ". ", op.requestBody.description || "")
    : null;
  const facts = op["x-gateway"] ? el("pre", {}, JSON.stringify(op["x-gateway"], null, 2)) : null;
  return el("details", { "data-path": path.toLowerCase() },
    el("summary", {},
      el("span", { class: "method " + method }, method),
      el("span", { class: "path" }, path),
      " ", op.summary || "",
      el("span", { class: "auth " + (isPublic ? "public" : "bearer") }, isPublic ? "public" : "bearer token")),
    el("div", {},
      op.description ? el("pre", { class: "description" }, op.description) : null,
      params.length ? el("h4", {}, "Parameters") : null,
      table(["name", "in", "required", "schema"], params),
      body,
      el("h4", {}, "Responses"),
      table(["status", "description", "content", "headers"], responses),
      facts));
}

function render(spec) {
  document.getElementById("title").textContent = spec.info.title + " " + spec.info.version;
  document.getElementById("description").textContent = spec.info.description || "";
  const main = document.getElementById("paths");
  const groups = new Map();
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const tag = (op.tags && op.tags[0]) || "other";
      if (!groups.has(tag)) groups.set(tag, []);
      groups.get(tag).push(operationView(spec, path, method, op));
    }
  }
  for (const [tag, views] of groups) main.append(el("section", {}, el("h2", {}, tag), ...views));
  const problem = spec.components.schemas.Problem;
  main.append(el("section", {}, el("h2", {}, "Problem documents"),
    el("pre", {}, JSON.stringify(problem, null, 2))));
}

function filterPaths(text) {
  const needle = text.trim().toLowerCase();
  for (const node of document.querySelectorAll("details[data-path]")) {
    node.hidden = needle !== "" && !node.dataset.path.includes(needle);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("filter").addEventListener("input", (event) => filterPaths(event.target.value));
  fetch("/docs/openapi.json")
    .then((response) => response.json())
    .then(render)
    .catch((error) => {
      document.getElementById("description").textContent = "Could not load the document: " + error;
    });
});
