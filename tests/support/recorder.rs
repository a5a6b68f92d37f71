//! A local HTTP endpoint that records what it is sent: a stand-in for Slack's incoming
//! webhooks and the like. Each request (head and body, as text) is handed over before
//! the answer goes out, so a caller that got its answer finds the request recorded.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

pub struct Recorder {
    pub addr: SocketAddr,
    pub requests: mpsc::UnboundedReceiver<String>,
}

impl Recorder {
    /// The next request recorded; a test fails rather than hangs when none comes.
    pub async fn next(&mut self) -> String {
        let wait = tokio::time::timeout(std::time::Duration::from_secs(5), self.requests.recv());
        wait.await.expect("nothing was posted within 5s").expect("the recorder stopped")
    }
}

/// Answers every request with `status` (`200 OK`) and `body`, one per connection.
pub async fn start(status: &'static str, body: &'static str) -> Recorder {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, requests) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = tx.send(read_request(&mut stream).await);
            let answer =
                format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
            let _ = stream.write_all(answer.as_bytes()).await;
        }
    });
    Recorder { addr, requests }
}

async fn read_request(stream: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize =
                head.lines().find_map(|l| l.strip_prefix("content-length:")).map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= end + 4 + length {
                break;
            }
        }
    }
    String::from_utf8(buf).unwrap()
}

/// The request line and the JSON body of a recorded request.
pub fn split(request: &str) -> (&str, serde_json::Value) {
    let (head, body) = request.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap(), serde_json::from_str(body).unwrap())
}
