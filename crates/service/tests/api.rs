//! The service in this process on a loopback port, with the teacher and the sample photos:
//! health, keys and roles, enrolment and identification over HTTP, and the start-up check of
//! the gallery's embedding space. (The CLI's tests drive the `maskid serve` binary; this one
//! needs nothing but the crate.)

use std::io::{Read, Write};
use std::net::SocketAddr;

use maskid_assets::{Assets, SAMPLE_PHOTOS};
use maskid_gallery::{Gallery, ModelRef, NewFace, Role};
use maskid_pipeline::{Decision, ModelsConfig, Recognizer};
use maskid_service::{auth, Limits, Options, Service};

fn sample(name: &str) -> Vec<u8> {
    let photo = SAMPLE_PHOTOS.iter().find(|p| p.name == name).expect("a sample photo");
    std::fs::read(Assets::from_env().get(photo).expect("the sample photos (maskid models fetch)")).unwrap()
}

fn decoded(name: &str) -> image::RgbImage {
    image::load_from_memory(&sample(name)).unwrap().to_rgb8()
}

fn teacher() -> Recognizer {
    Recognizer::load(&Assets::from_env(), ModelsConfig::default(), "teacher".parse().unwrap()).unwrap()
}

/// One request on its own connection: (status, body).
fn request(addr: SocketAddr, method: &str, path: &str, key: Option<&str>, body: &[u8]) -> (u16, serde_json::Value) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Type: image/jpeg\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let text = String::from_utf8_lossy(&answer);
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
}

/// Whether `value` has the shape `schema` (of the OpenAPI document `doc`) gives: every key it
/// requires, no key it does not name, and the types of the values, all the way down.
fn conforms(doc: &serde_json::Value, schema: &serde_json::Value, value: &serde_json::Value) -> Result<(), String> {
    use serde_json::Value;
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap();
        return conforms(doc, &doc["components"]["schemas"][name], value);
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return Ok(()),
    };
    let fits = |t: &str| match t {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => false,
    };
    if !types.iter().any(|t| fits(t)) {
        return Err(format!("{value} is not {types:?}"));
    }
    if let (Some(object), Some(properties)) = (value.as_object(), schema["properties"].as_object()) {
        for key in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            object.get(key).ok_or(format!("'{key}' missing"))?;
        }
        for (key, item) in object {
            let inner = properties.get(key).ok_or(format!("'{key}' is not in the schema"))?;
            conforms(doc, inner, item).map_err(|e| format!("{key}: {e}"))?;
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        array.iter().try_for_each(|item| conforms(doc, items, item))?;
    }
    Ok(())
}

#[test]
fn enrols_and_identifies_over_http_with_keys_and_roles() {
    let dir = tempfile::tempdir().unwrap();
    let gallery = Gallery::open(dir.path().join("people.db")).unwrap();
    let (writer, reader) = ("mk_writer_secret", "mk_reader_secret");
    gallery.add_key("ingest", Role::Write, &auth::secret_sha256(writer)).unwrap();
    gallery.add_key("door", Role::Read, &auth::secret_sha256(reader)).unwrap();
    let recognizer = teacher();
    let options = Options {
        threshold: recognizer.threshold(None).unwrap(),
        identify: Decision::default(),
        keep_crops: false,
        access_log: false,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let service =
        runtime.block_on(Service::bind(recognizer, gallery, options, "127.0.0.1:0", Limits::default())).unwrap();
    let addr = service.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(service.run(async {
        let _ = stopped.await;
    }));

    assert_eq!(request(addr, "GET", "/healthz", None, b"").0, 200);
    let alice = sample("person_a_1.jpg");
    assert_eq!(request(addr, "POST", "/v1/subjects/alice/faces", None, &alice).0, 401, "no key");
    assert_eq!(request(addr, "POST", "/v1/subjects/alice/faces", Some(reader), &alice).0, 403, "a read key");
    let (status, enrolled) = request(addr, "POST", "/v1/subjects/alice/faces", Some(writer), &alice);
    assert_eq!(status, 201, "{enrolled}");
    let (status, again) = request(addr, "POST", "/v1/subjects/alice/faces", Some(writer), &alice);
    assert_eq!(status, 409, "the same photo twice: {again}");
    assert_eq!(enrolled["notes"], serde_json::json!([]), "a sharp photo facing the camera: {enrolled}");
    // Bob's photo blurred (still a face the detector finds) is a poor reference: refused,
    // unless allowed, and then enrolled with the reason noted.
    let blurred = image::imageops::blur(&decoded("person_b_1.jpg"), 8.0);
    let mut jpeg = std::io::Cursor::new(Vec::new());
    blurred.write_to(&mut jpeg, image::ImageFormat::Jpeg).unwrap();
    let (status, poor) = request(addr, "POST", "/v1/subjects/bob/faces?face=largest", Some(writer), jpeg.get_ref());
    assert_eq!((status, &poor["error"]["code"]), (422, &"poor_reference".into()), "{poor}");
    let (status, allowed) =
        request(addr, "POST", "/v1/subjects/bob/faces?face=largest&allow_poor=true", Some(writer), jpeg.get_ref());
    assert_eq!(status, 201, "{allowed}");
    assert!(allowed["notes"][0].as_str().unwrap().starts_with("sharpness "), "{allowed}");
    assert_eq!(request(addr, "DELETE", "/v1/subjects/bob", Some(writer), b"").0, 204);
    let (status, found) = request(addr, "POST", "/v1/identify?top=2", Some(reader), &sample("person_a_2.jpg"));
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["candidates"][0]["name"], "alice", "{found}");
    assert_eq!(found["candidates"][0]["matched"], true, "{found}");
    // Decided at the default target FPIR for this one-face gallery; a looser target, a lower
    // threshold; a threshold and a target together, or a target out of range, refused.
    assert_eq!((found["fpir"].as_f64(), found["gallery_faces"].as_u64()), (Some(1e-3), Some(1)), "{found}");
    let (_, loose) = request(addr, "POST", "/v1/identify?fpir=0.1", Some(reader), &sample("person_a_2.jpg"));
    assert!(loose["threshold"].as_f64().unwrap() < found["threshold"].as_f64().unwrap(), "{loose}");
    for query in ["fpir=0.1&threshold=0.5", "fpir=0", "fpir=1.5"] {
        let (status, refused) = request(addr, "POST", &format!("/v1/identify?{query}"), Some(reader), &alice);
        assert_eq!(status, 400, "{query}: {refused}");
    }
    let (status, stranger) = request(addr, "POST", "/v1/identify", Some(reader), &sample("impostor_1.jpg"));
    assert_eq!((status, &stranger["candidates"][0]["matched"]), (200, &serde_json::Value::Bool(false)), "{stranger}");
    // A group photo: alice's second photo beside the stranger; every face answered.
    let (a, b) = (decoded("person_a_2.jpg"), decoded("impostor_1.jpg"));
    let mut group = image::RgbImage::from_pixel(a.width() + b.width(), a.height().max(b.height()), image::Rgb([90; 3]));
    image::imageops::replace(&mut group, &a, 0, 0);
    image::imageops::replace(&mut group, &b, i64::from(a.width()), 0);
    let mut jpeg = std::io::Cursor::new(Vec::new());
    group.write_to(&mut jpeg, image::ImageFormat::Jpeg).unwrap();
    let (status, all) = request(addr, "POST", "/v1/identify?face=all&top=1", Some(reader), jpeg.get_ref());
    assert_eq!(status, 200, "{all}");
    let mut faces: Vec<&serde_json::Value> = all["faces"].as_array().unwrap().iter().collect();
    faces.sort_by(|x, y| x["face"]["box"]["x"].as_f64().unwrap().total_cmp(&y["face"]["box"]["x"].as_f64().unwrap()));
    assert_eq!(faces.len(), 2, "{all}");
    assert_eq!((&faces[0]["match"], &faces[1]["match"]), (&"alice".into(), &serde_json::Value::Null), "{all}");
    assert_eq!(faces[0]["face"]["landmarks"].as_array().map(Vec::len), Some(5), "{all}");
    // The OpenAPI document describes these very answers, and the query parameters.
    let (status, doc) = request(addr, "GET", "/openapi.json", Some(reader), b"");
    assert_eq!(status, 200);
    let identify = &doc["paths"]["/v1/identify"]["post"];
    let params: Vec<&str> =
        identify["parameters"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(params, ["top", "fpir", "threshold", "face"]);
    let schema = |path: &str, method: &str, status: &str| {
        doc["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"].clone()
    };
    conforms(&doc, &schema("/v1/identify", "post", "200"), &found).unwrap_or_else(|e| panic!("{e}: {found}"));
    conforms(&doc, &schema("/v1/identify", "post", "200"), &all).unwrap_or_else(|e| panic!("{e}: {all}"));
    conforms(&doc, &schema("/v1/subjects/{name}/faces", "post", "201"), &enrolled).unwrap_or_else(|e| panic!("{e}"));
    let (_, ready) = request(addr, "GET", "/readyz", None, b"");
    conforms(&doc, &schema("/readyz", "get", "200"), &ready).unwrap_or_else(|e| panic!("{e}: {ready}"));
    let (status, bad) = request(addr, "POST", "/v1/identify", Some(reader), b"not a photo");
    assert_eq!(status, 400, "{bad}");

    let _ = stop.send(());
    runtime.block_on(server).unwrap();
}

#[test]
fn a_gallery_of_another_embedding_space_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let gallery = Gallery::open(dir.path().join("other.db")).unwrap();
    let other = ModelRef::new("other.onnx", "0".repeat(64), Some("another-space".into()));
    let face = NewFace {
        embedding: maskid_core::Embedding::normalized(vec![1.0; 128]),
        model: other,
        source_sha256: "p".into(),
        score: 0.9,
        crop: None,
        mask: None,
    };
    gallery.enroll("x", &serde_json::json!({}), &face).unwrap();
    let recognizer = teacher();
    let options = Options { threshold: 0.5, identify: Decision::default(), keep_crops: false, access_log: false };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let refused = runtime.block_on(Service::bind(recognizer, gallery, options, "127.0.0.1:0", Limits::default()));
    let err = refused.err().expect("refused").to_string();
    assert!(err.contains("another-space") && err.contains("sface-2021dec"), "{err}");
}
