//! A TCP forwarder that fails on demand, between `serve` and a server it depends on
//! (Prometheus): passing, down (connections refused at once and open ones cut), or slow
//! (every answer's bytes held back), switched at any time by the test.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PASS: u64 = 0;
const DOWN: u64 = u64::MAX;

pub struct Flaky {
    pub addr: SocketAddr,
    /// [`PASS`], [`DOWN`], or the delay of each answer in milliseconds.
    mode: Arc<AtomicU64>,
}

impl Flaky {
    /// Forwards a port of its own to `upstream` (`http://host:port`), on a thread.
    pub fn start(upstream: &str) -> Self {
        let upstream: SocketAddr =
            upstream.trim_start_matches("http://").trim_end_matches('/').parse().expect("http://ip:port");
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let mode = Arc::new(AtomicU64::new(PASS));
        let shared = mode.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = TcpListener::from_std(std_listener).unwrap();
                while let Ok((down, _)) = listener.accept().await {
                    if shared.load(Ordering::Relaxed) == DOWN {
                        continue;
                    }
                    tokio::spawn(forward(down, upstream, shared.clone()));
                }
            });
        });
        Self { addr, mode }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn pass(&self) {
        self.mode.store(PASS, Ordering::Relaxed);
    }

    pub fn down(&self) {
        self.mode.store(DOWN, Ordering::Relaxed);
    }

    /// Every answer arrives `delay` late.
    pub fn slow(&self, delay: Duration) {
        self.mode.store(u64::try_from(delay.as_millis()).unwrap().max(1), Ordering::Relaxed);
    }
}

async fn forward(down: TcpStream, upstream: SocketAddr, mode: Arc<AtomicU64>) {
    let Ok(up) = TcpStream::connect(upstream).await else { return };
    let (mut down_read, mut down_write) = down.into_split();
    let (mut up_read, mut up_write) = up.into_split();
    let requests = {
        let mode = mode.clone();
        async move {
            let mut buf = vec![0; 16 * 1024];
            loop {
                let n = down_read.read(&mut buf).await.unwrap_or(0);
                if n == 0 || mode.load(Ordering::Relaxed) == DOWN || up_write.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    };
    let answers = async move {
        let mut buf = vec![0; 16 * 1024];
        loop {
            let n = up_read.read(&mut buf).await.unwrap_or(0);
            match mode.load(Ordering::Relaxed) {
                _ if n == 0 => return,
                DOWN => return,
                PASS => {}
                delay => tokio::time::sleep(Duration::from_millis(delay)).await,
            }
            if down_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    // Either side ending closes both.
    tokio::select! {
        () = requests => {}
        () = answers => {}
    }
}
