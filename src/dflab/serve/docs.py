"""The API documentation page (``GET /docs``), written from the app's OpenAPI schema on the server:
plain HTML with the page's own stylesheet, nothing fetched from elsewhere (FastAPI's Swagger UI
and ReDoc pages load their scripts from a CDN, so they are switched off)."""

from __future__ import annotations

import json
from html import escape


def api_docs_html(schema: dict) -> str:
    """Every operation of ``schema``: method, path, description, query parameters, request body and
    answers, with a link to the schema itself (``/openapi.json``) for tools."""
    info = schema.get("info", {})
    parts = [f"<h1>{escape(info.get('title', 'API'))} <span class=\"sub\">API {escape(str(info.get('version', '')))}"
             "</span></h1>",
             f"<p>{escape(info.get('description', ''))}</p>",
             '<p>The machine-readable schema (OpenAPI): <a href="/openapi.json">/openapi.json</a>. '
             'Back to <a href="/">the page</a>.</p>']
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            parts.append(_operation(method, path, operation, schema))
    return ("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{escape(info.get('title', 'API'))}: API</title>\n<link rel=\"icon\" href=\"data:,\">\n"
            "<link rel=\"stylesheet\" href=\"/static/style.css\">\n</head>\n<body>\n<main class=\"docs\">\n"
            + "\n".join(parts) + "\n</main>\n</body>\n</html>\n")


def _operation(method: str, path: str, operation: dict, schema: dict) -> str:
    anchor = f"{method}-{path}".replace("/", "-").replace("{", "").replace("}", "")
    out = [f'<section class="operation" id="{escape(anchor)}">',
           f"<h2><code>{escape(method.upper())} {escape(path)}</code></h2>"]
    if operation.get("description") or operation.get("summary"):
        out.append(f"<p>{escape(operation.get('description') or operation.get('summary'))}</p>")
    parameters = operation.get("parameters") or []
    if parameters:
        out.append("<table><thead><tr><th>parameter</th><th>in</th><th>type</th><th>default</th>"
                   "<th>description</th></tr></thead><tbody>")
        for parameter in parameters:
            kind = _type(parameter.get("schema", {}), schema)
            default = json.dumps(parameter["schema"]["default"]) if "default" in parameter.get("schema", {}) else ""
            out.append(f"<tr><td><code>{escape(parameter['name'])}</code></td><td>{escape(parameter.get('in', ''))}"
                       f"</td><td>{escape(kind)}</td><td>{escape(default)}</td>"
                       f"<td>{escape(parameter.get('description', ''))}</td></tr>")
        out.append("</tbody></table>")
    for content_type, body in ((operation.get("requestBody") or {}).get("content") or {}).items():
        fields = body.get("schema", {}).get("properties", {})
        listed = "; ".join(f"<code>{escape(name)}</code>: {escape(field.get('description', _type(field, schema)))}"
                           for name, field in fields.items())
        out.append(f"<p>Body: <code>{escape(content_type)}</code>{' with ' + listed if listed else ''}</p>")
    answers = operation.get("responses") or {}
    if answers:
        out.append("<p>Answers:</p><ul>")
        for status, answer in answers.items():
            out.append(f"<li><code>{escape(str(status))}</code> {escape(answer.get('description', ''))}</li>")
        out.append("</ul>")
    out.append("</section>")
    return "\n".join(out)


def _type(field: dict, schema: dict) -> str:
    if "$ref" in field:
        target = schema
        for step in field["$ref"].lstrip("#/").split("/"):
            target = target.get(step, {})
        if "enum" in target:
            return " | ".join(str(v) for v in target["enum"])
        return field["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in field:
        return " | ".join(_type(option, schema) for option in field["anyOf"])
    bounds = [f"{name} {field[key]}" for key, name in (("minimum", "≥"), ("maximum", "≤")) if key in field]
    return field.get("type", "") + (f" ({', '.join(bounds)})" if bounds else "")
