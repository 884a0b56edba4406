//! A running `maskid serve` for the service tests, and plain HTTP/1.1 over `TcpStream`
//! (a client library would hide what these tests look at: partial requests, raw headers).

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::Value;

use super::{maskid, stdout_json};

/// A running `maskid serve` and its address.
pub struct Server {
    pub child: Child,
    pub addr: String,
}

impl Server {
    /// `maskid serve` over a gallery file or a `postgres://` URL.
    pub fn start(gallery: impl AsRef<OsStr>, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_maskid"))
            .args(["serve", "--quiet", "--bind", "127.0.0.1:0", "--gallery"])
            .arg(gallery.as_ref())
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start maskid serve");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().expect("the server prints its address").unwrap();
            if let Some(rest) = line.split("http://").nth(1) {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server { child, addr }
    }

    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Vec<u8>) {
        raw_request(&self.addr, method, path, headers, body)
    }

    pub fn json(&self, method: &str, path: &str, key: &str, content_type: &str, body: &[u8]) -> (u16, Value) {
        let auth = format!("Bearer {key}");
        let (status, body) =
            self.request(method, path, &[("Authorization", &auth), ("Content-Type", content_type)], body);
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request on its own connection; (status, body).
pub fn raw_request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).unwrap();
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    parse_response(&response)
}

pub fn parse_response(response: &[u8]) -> (u16, Vec<u8>) {
    let text = String::from_utf8_lossy(response);
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").map_or(response.len(), |p| p + 4);
    let (head, body) = response.split_at(split);
    let chunked = String::from_utf8_lossy(head).to_ascii_lowercase().contains("transfer-encoding: chunked");
    (status, if chunked { dechunk(body) } else { body.to_vec() })
}

pub fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = body.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&body[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&body[end + 2..end + 2 + size]);
        body = &body[end + 4 + size..];
    }
    out
}

pub fn multipart(fields: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "maskidboundary7d3f";
    let mut body = Vec::new();
    for (name, data) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}.jpg\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A new API key's secret, for a gallery file or a `postgres://` URL.
pub fn key(gallery: impl AsRef<OsStr>, role: &str) -> String {
    let gallery = gallery.as_ref().to_str().unwrap();
    stdout_json(&maskid(&["keys", "create", "--gallery", gallery, "--role", role, "--json"]))["secret"]
        .as_str()
        .unwrap()
        .to_string()
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl Server {
    /// The server's peak resident memory so far, MiB (`VmHWM`).
    pub fn peak_rss_mib(&self) -> u64 {
        proc_status_kib(self.child.id(), "VmHWM:") >> 10
    }

    /// `n` POSTs of `body` to `path` with `key` as `content_type`, each on its own connection,
    /// the i-th sent after i x `stagger`; their statuses and bodies, in order.
    pub fn post_at_once(
        &self,
        n: u64,
        stagger: Duration,
        path: &str,
        key: &str,
        content_type: &str,
        body: &[u8],
    ) -> Vec<(u16, Vec<u8>)> {
        let senders: Vec<_> = (0..n)
            .map(|i| {
                let (addr, path, auth) = (self.addr.clone(), path.to_string(), format!("Bearer {key}"));
                let (content_type, body) = (content_type.to_string(), body.to_vec());
                std::thread::spawn(move || {
                    std::thread::sleep(stagger * i as u32);
                    let headers = [("Authorization", auth.as_str()), ("Content-Type", content_type.as_str())];
                    raw_request(&addr, "POST", &path, &headers, &body)
                })
            })
            .collect();
        senders.into_iter().map(|s| s.join().unwrap()).collect()
    }

    /// One line of `/metrics` by its prefix (series name and labels); its value.
    pub fn metric(&self, key: &str, series: &str) -> Option<f64> {
        let (_, text) = self.request("GET", "/metrics", &[("X-API-Key", key)], b"");
        let text = String::from_utf8_lossy(&text).into_owned();
        text.lines().find(|l| l.starts_with(series)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }
}

/// A field of `/proc/PID/status` in KiB (or count, for `Threads:`).
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("{field} in {status}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Enrolments stream into a `serve` over `gallery` (a file or a `postgres://` URL), which is
/// killed with SIGKILL after 15 acknowledgements; a new `serve` must hold every face
/// acknowledged, rebuilt from the table.
pub fn acknowledged_faces_survive_kill_9(lfw: &std::path::Path, gallery: &str) {
    let lfw = lfw.to_path_buf();
    let (read, write) = (key(gallery, "read"), key(gallery, "write"));
    let people: Vec<String> = std::fs::read_to_string(lfw.join("peopleDevTest.txt"))
        .unwrap()
        .lines()
        .skip(1)
        .take(60)
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    let server = Server::start(gallery, &[]);
    let addr = server.addr.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let enrolling = std::thread::spawn(move || {
        for name in people {
            let photo =
                std::fs::read(lfw.join("images_deepfunneled").join(&name).join(format!("{name}_0001.jpg"))).unwrap();
            let auth = format!("Bearer {write}");
            let headers = [("Authorization", auth.as_str()), ("Content-Type", "image/jpeg")];
            let (status, body) = raw_request(&addr, "POST", &format!("/v1/subjects/{name}/faces"), &headers, &photo);
            if status == 0 {
                break; // the server is gone
            }
            if status == 201 {
                let v: Value = serde_json::from_slice(&body).unwrap();
                tx.send((name, v["face_id"].as_i64().unwrap())).unwrap();
            }
        }
    });
    // Kill once some enrolments were acknowledged, while others are on their way.
    let mut acknowledged = Vec::new();
    while acknowledged.len() < 15 {
        acknowledged.push(rx.recv_timeout(Duration::from_secs(60)).expect("enrolments go on"));
    }
    let mut server = server;
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    enrolling.join().unwrap();
    acknowledged.extend(rx.try_iter());

    let check = maskid(&["gallery", "check", "--gallery", gallery, "--json"]);
    let check = stdout_json(&check);
    assert_eq!(check["integrity"], "ok", "{check}");
    // Restarted with the sketched index: rows and sketches rebuilt from the table.
    let server = Server::start(gallery, &["--index", "sketch"]);
    let (_, ready) = server.json("GET", "/readyz", &read, "application/json", b"");
    assert_eq!(ready["faces"], check["faces"], "the index rebuilt from the table: {ready} {check}");
    assert_eq!(ready["search"], "sketch", "{ready}");
    for (name, face) in &acknowledged {
        let (status, subject) = server.json("GET", &format!("/v1/subjects/{name}"), &read, "application/json", b"");
        assert_eq!(status, 200, "{name} was acknowledged: {subject}");
        let ids: Vec<i64> = subject["faces"].as_array().unwrap().iter().map(|f| f["id"].as_i64().unwrap()).collect();
        assert!(ids.contains(face), "{name}: face {face} acknowledged, found {ids:?}");
    }
}
