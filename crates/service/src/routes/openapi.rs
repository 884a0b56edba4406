//! The OpenAPI 3.1 document, built from the same endpoint table as the router.

use serde_json::{json, Value};

use super::ENDPOINTS;

/// The OpenAPI 3.1 document of [`ENDPOINTS`].
pub fn openapi() -> Value {
    let error = json!({ "description": "error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } });
    let mut paths = serde_json::Map::new();
    for e in ENDPOINTS {
        let mut responses = serde_json::Map::new();
        responses.insert("200".into(), json!({ "description": "success" }));
        let mut codes = vec!["400", "413", "503"];
        if e.role.is_some() {
            codes.extend(["401", "403"]);
        }
        if e.path.contains('{') {
            codes.push("404");
        }
        if !e.images.is_empty() {
            codes.extend(["415", "422"]);
        }
        if e.method == "post" {
            // A body too slow, in a transfer coding not served.
            codes.extend(["408", "501"]);
        }
        if e.method == "post" && e.path.starts_with("/v1/subjects") {
            codes.push("409");
        }
        for c in codes {
            responses.insert(c.into(), error.clone());
        }
        let mut op = json!({ "summary": e.summary, "responses": responses });
        op["security"] = if e.role.is_some() { json!([{ "apiKey": [] }]) } else { json!([]) };
        if let Some(role) = e.role {
            op["x-maskid-role"] = json!(role.name());
        }
        let parameters: Vec<Value> = e
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|p| {
                let ty = if p == "id" { "integer" } else { "string" };
                json!({ "name": p, "in": "path", "required": true, "schema": { "type": ty } })
            })
            .collect();
        if !parameters.is_empty() {
            op["parameters"] = json!(parameters);
        }
        if !e.images.is_empty() {
            let mut props = serde_json::Map::new();
            let mut b64 = serde_json::Map::new();
            for f in e.images {
                props.insert((*f).into(), json!({ "type": "string", "format": "binary" }));
                b64.insert(format!("{f}_base64"), json!({ "type": "string", "contentEncoding": "base64" }));
            }
            props.insert("metadata".into(), json!({ "type": "string", "description": "JSON object" }));
            b64.insert("metadata".into(), json!({ "type": "object" }));
            op["requestBody"] = json!({ "required": true, "content": {
                "multipart/form-data": { "schema": { "type": "object", "properties": props, "required": e.images } },
                "application/json": { "schema": { "type": "object", "properties": b64 } },
            }});
        } else if e.method == "post" {
            op["requestBody"] = json!({ "required": true, "content": { "application/json": { "schema": {
                "type": "object", "required": ["name"],
                "properties": { "name": { "type": "string" }, "metadata": { "type": "object" } } } } } });
        }
        paths.entry(e.path.to_string()).or_insert_with(|| json!({}))[e.method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": { "title": "maskid", "version": env!("CARGO_PKG_VERSION"),
                  "description": "Masked-face recognition: enrol, identify and verify people." },
        "paths": paths,
        "components": {
            "securitySchemes": { "apiKey": { "type": "http", "scheme": "bearer",
                "description": "A key from `maskid keys create`; also accepted as X-API-Key." } },
            "schemas": { "Error": { "type": "object", "required": ["error"], "properties": { "error": {
                "type": "object", "required": ["code", "message"],
                "properties": { "code": { "type": "string" }, "message": { "type": "string" } } } } } }
        }
    })
}
