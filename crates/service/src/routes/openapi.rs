//! The OpenAPI 3.1 document, built from the same endpoint table as the router.

use serde_json::{json, Value};

use super::{Answer, ENDPOINTS};

/// The OpenAPI 3.1 document of [`ENDPOINTS`].
pub fn openapi() -> Value {
    let error = json!({ "description": "error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } });
    let mut paths = serde_json::Map::new();
    for e in ENDPOINTS {
        let mut responses = serde_json::Map::new();
        let (status, success) = match e.answer {
            Answer::Json(status, schema) => (
                status,
                json!({ "description": "success", "content": {
                "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } }),
            ),
            Answer::Text => (
                200,
                json!({ "description": "Prometheus text format",
                "content": { "text/plain": { "schema": { "type": "string" } } } }),
            ),
            Answer::Empty => (204, json!({ "description": "done" })),
        };
        responses.insert(status.to_string(), success);
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
            .chain(e.query.iter().map(|name| query_parameter(name)))
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
    let mut schemas = answer_schemas();
    schemas.insert(
        "Error".into(),
        json!({ "type": "object", "required": ["error"], "properties": { "error": {
        "type": "object", "required": ["code", "message"],
        "properties": { "code": { "type": "string" }, "message": { "type": "string" } } } } }),
    );
    json!({
        "openapi": "3.1.0",
        "info": { "title": "maskid", "version": env!("CARGO_PKG_VERSION"),
                  "description": "Masked-face recognition: enrol, identify and verify people." },
        "paths": paths,
        "components": {
            "securitySchemes": { "apiKey": { "type": "http", "scheme": "bearer",
                "description": "A key from `maskid keys create`; also accepted as X-API-Key." } },
            "schemas": schemas,
        }
    })
}

/// A query parameter some endpoint takes, with its type and meaning.
fn query_parameter(name: &str) -> Value {
    let (schema, description) = match name {
        "limit" => (json!({ "type": "integer", "minimum": 1, "maximum": 1000 }), "subjects a page holds (100)"),
        "after" => (json!({ "type": "string" }), "the page starts after this name (a page's `next`)"),
        "top" => (json!({ "type": "integer", "minimum": 1, "maximum": 100 }), "people listed per face (3)"),
        "threshold" => (
            json!({ "type": "number", "exclusiveMinimum": 0, "maximum": 1 }),
            "cosine similarity needed for a match (verify: the service's; identify: instead of fpir)",
        ),
        "fpir" => (
            json!({ "type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1 }),
            "share of people not enrolled to be taken for someone; the threshold is the one that keeps it for the gallery's size (the service's, 0.001 unless set)",
        ),
        "allow_poor" => (
            json!({ "type": "boolean" }),
            "enrol a face that would make a poor reference all the same (false)",
        ),
        "face" => (
            json!({ "type": "string", "enum": ["largest", "center", "require-one", "all"] }),
            "which face of the photo (all: identify only)",
        ),
        _ => unreachable!("BUG: query parameter {name} has no description"),
    };
    json!({ "name": name, "in": "query", "required": false, "schema": schema, "description": description })
}

/// The schemas of the JSON answers, as the handlers' answer types serialise.
fn answer_schemas() -> serde_json::Map<String, Value> {
    let string = json!({ "type": "string" });
    let number = json!({ "type": "number" });
    let integer = json!({ "type": "integer" });
    let object = |required: &[&str], properties: Value| json!({ "type": "object", "required": required, "properties": properties });
    let refer = |name: &str| json!({ "$ref": format!("#/components/schemas/{name}") });
    let list = |item: Value| json!({ "type": "array", "items": item });
    let model = object(&["id", "sha256", "space"], json!({ "id": string, "sha256": string, "space": string }));
    let bbox =
        object(&["x", "y", "width", "height"], json!({ "x": number, "y": number, "width": number, "height": number }));
    let mask = object(
        &["state", "none", "worn", "below_nose"],
        json!({
        "state": { "type": "string", "enum": ["none", "worn", "below-nose"],
            "description": format!("masked when worn + below_nose >= {}; then worn or below-nose by the likelier", maskid_core::MASKED_AT) },
        "none": number, "worn": number, "below_nose": number }),
    );
    let face = object(
        &["box", "score", "landmarks", "mask"],
        json!({ "box": bbox, "score": number, "landmarks": list(list(number.clone())), "mask": refer("Mask") }),
    );
    let candidate = object(
        &["name", "similarity", "matched"],
        json!({
        "name": string, "similarity": number, "matched": { "type": "boolean" } }),
    );
    let face_answer = object(
        &["match", "candidates", "face", "threshold"],
        json!({
        "match": { "type": ["string", "null"], "description": "the best candidate's name when it passes the threshold" },
        "candidates": list(refer("Candidate")), "face": refer("Face"),
        "threshold": { "type": "number", "description": "this face's threshold: by FPIR, that of its condition (clean or masked)" } }),
    );
    let subject = object(
        &["id", "name", "metadata", "created", "faces"],
        json!({
        "id": integer, "name": string, "metadata": { "type": "object" }, "created": string, "faces": integer }),
    );
    let face_info = object(
        &["id", "model_id", "source_sha256", "score", "mask", "created"],
        json!({
        "id": integer, "model_id": string, "source_sha256": string, "score": number,
        "mask": { "type": ["string", "null"], "enum": ["none", "worn", "below-nose", null],
            "description": "the face's mask state at enrolment (null: enrolled before maskid told)" },
        "created": string }),
    );
    let mut schemas = serde_json::Map::new();
    for (name, schema) in [
        ("Model", model),
        ("Mask", mask),
        ("Face", face),
        ("Candidate", candidate),
        ("FaceAnswer", face_answer),
        (
            "Identify",
            object(
                &["match", "candidates", "face", "threshold", "faces", "fpir", "gallery_faces", "model"],
                json!({
            "match": { "type": ["string", "null"] }, "candidates": list(refer("Candidate")), "face": refer("Face"),
            "faces": list(refer("FaceAnswer")), "threshold": number,
            "fpir": { "type": ["number", "null"], "description": "the share of strangers the threshold lets through for this gallery (null: the model has no calibration)" },
            "gallery_faces": integer, "model": refer("Model") }),
            ),
        ),
        (
            "Verify",
            object(
                &["same_person", "similarity", "threshold", "model", "masks"],
                json!({
            "same_person": { "type": "boolean" }, "similarity": number, "threshold": number, "model": refer("Model"),
            "masks": { "type": "array", "items": refer("Mask"), "minItems": 2, "maxItems": 2 } }),
            ),
        ),
        ("Subject", subject),
        (
            "SubjectPage",
            object(
                &["subjects", "next"],
                json!({
            "subjects": list(refer("Subject")), "next": { "type": ["string", "null"] } }),
            ),
        ),
        ("FaceInfo", face_info),
        (
            "SubjectFaces",
            object(&["subject", "faces"], json!({ "subject": refer("Subject"), "faces": list(refer("FaceInfo")) })),
        ),
        (
            "Enrolment",
            object(
                &["face_id", "subject", "subject_created", "detection_score", "quality", "mask", "notes"],
                json!({
            "face_id": integer, "subject": string, "subject_created": { "type": "boolean" }, "detection_score": number,
            "quality": object(&["yaw_deg", "pitch_deg", "eye_distance_px", "sharpness"],
                json!({ "yaw_deg": number, "pitch_deg": number, "eye_distance_px": number, "sharpness": number })),
            "mask": refer("Mask"), "notes": list(string.clone()) }),
            ),
        ),
        (
            "Keys",
            object(
                &["keys"],
                json!({ "keys": list(object(&["name", "role", "created"], json!({
            "name": string, "role": { "type": "string", "enum": ["read", "write", "admin"] }, "created": string }))) }),
            ),
        ),
        ("Health", object(&["status"], json!({ "status": string }))),
        (
            "Ready",
            object(
                &["status", "model", "faces", "search"],
                json!({
            "status": string, "model": refer("Model"), "faces": integer, "search": { "type": "string", "enum": ["exact", "sketch"] } }),
            ),
        ),
        ("OpenApi", json!({ "type": "object", "description": "this document" })),
    ] {
        schemas.insert(name.into(), schema);
    }
    schemas
}
