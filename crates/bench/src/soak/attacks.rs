//! The soak's hostile clients that need more than one plain request. Each returns the
//! status it was answered with (0: none, the connection was cut) and the body; a client
//! that keeps attacking connections comes from another loopback address than the probes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::{connect, parse_answer, read_answer, Target};

/// The status [`never_reads`] gives when the server never closed the connection.
pub const NEVER_CLOSED: u16 = 999;

/// A connection to the target from the loopback address `source`, with a small receive
/// buffer (a client that does not read fills it at once).
fn connect_from(source: &str, target: &Target) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    let from: SocketAddr = format!("{source}:0").parse().expect("a loopback address");
    socket.bind(&from.into())?;
    socket.set_recv_buffer_size(4096)?;
    let to: SocketAddr = target.addr.parse().map_err(std::io::Error::other)?;
    socket.connect(&to.into())?;
    Ok(socket.into())
}

/// `HEAD /v1/keys` without a key: 401.
pub fn head_without_key(target: &Target) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = connect(target)?;
    stream.write_all(
        format!("HEAD /v1/keys HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", target.addr).as_bytes(),
    )?;
    read_answer(&mut stream)
}

/// Pipelines `GET /healthz` without reading until the server stops taking them, then waits
/// for the server to close the connection: 0 when it did within 30 s, [`NEVER_CLOSED`] if not.
pub fn never_reads(target: &Target) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = connect_from("127.0.0.2", target)?;
    stream.set_write_timeout(Some(Duration::from_millis(500)))?;
    let requests = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", target.addr).repeat(64);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        match stream.write_all(requests.as_bytes()) {
            Ok(()) => {}
            // Blocked: the server's answers fill every buffer; wait for it to give up.
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                std::thread::sleep(Duration::from_millis(500))
            }
            Err(_) => return Ok((0, Vec::new())),
        }
    }
    Ok((NEVER_CLOSED, Vec::new()))
}

/// 150 idle sockets from one address, held 2 s: those over the address's cap are answered
/// 503 at once (returned, with the answer's body), the rest cut by the header timeout or
/// closed here (0).
pub fn idle_crowd(target: &Target) -> std::io::Result<(u16, Vec<u8>)> {
    let mut crowd = Vec::new();
    for _ in 0..150 {
        crowd.push(connect_from("127.0.0.2", target)?);
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut refused = None;
    for socket in &mut crowd {
        socket.set_nonblocking(true)?;
        let mut answer = vec![0u8; 512];
        if let Ok(n @ 1..) = socket.read(&mut answer) {
            let (status, body) = parse_answer(&answer[..n]);
            if status == 503 {
                refused = Some(body);
            }
        }
    }
    std::thread::sleep(Duration::from_millis(1700));
    Ok(refused.map_or((0, Vec::new()), |body| (503, body)))
}

/// Eight pipelined requests with a key that does not exist, from another address: 401 when
/// all eight are refused as such, else the first other status.
pub fn bad_keys(target: &Target) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = connect_from("127.0.0.3", target)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let one = |close: &str| {
        format!("GET /v1/subjects HTTP/1.1\r\nHost: {}\r\nX-API-Key: mk_not_a_key\r\n{close}\r\n", target.addr)
    };
    let requests = one("").repeat(7) + &one("Connection: close\r\n");
    stream.write_all(requests.as_bytes())?;
    let mut answers = Vec::new();
    stream.read_to_end(&mut answers)?;
    let text = String::from_utf8_lossy(&answers);
    let statuses: Vec<u16> =
        text.match_indices("HTTP/1.1 ").filter_map(|(at, _)| text.get(at + 9..at + 12)?.parse().ok()).collect();
    match statuses.iter().find(|&&s| s != 401) {
        None if statuses.len() == 8 => Ok((401, Vec::new())),
        other => Ok((other.copied().unwrap_or(0), Vec::new())),
    }
}

/// A 20 KB body at 5 bytes a second: refused as too slow (408) within seconds.
pub fn trickle_body(target: &Target) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = connect(target)?;
    stream.write_all(super::head(target, "POST", "/v1/identify", "image/jpeg", 20_000).as_bytes())?;
    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    let start = Instant::now();
    let mut answer = Vec::new();
    while start.elapsed() < Duration::from_secs(30) {
        if stream.write_all(&[0xff]).is_err() {
            break;
        }
        let mut buf = [0u8; 4096];
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(_) if !answer.is_empty() => break,
            Err(_) => {}
        }
    }
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let _ = stream.read_to_end(&mut answer);
    Ok(parse_answer(&answer))
}

/// 1,000 bytes of an announced 1,250,549, then gone (0; the server records 499).
pub fn hang_up_mid_body(target: &Target) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = connect(target)?;
    stream.write_all(super::head(target, "POST", "/v1/identify", "image/jpeg", 1_250_549).as_bytes())?;
    stream.write_all(&[0u8; 1000])?;
    std::thread::sleep(Duration::from_millis(100));
    Ok((0, Vec::new()))
}

/// A body in a transfer coding the service does not decode: 501.
pub fn gzip_chunked(target: &Target) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = connect(target)?;
    let request = format!(
        "POST /v1/subjects HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        target.addr, target.key
    );
    stream.write_all(request.as_bytes())?;
    read_answer(&mut stream)
}
