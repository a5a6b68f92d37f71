//! `kubectl exec` into the load tester's pods (`GET .../pods/NAME/exec`), over the
//! WebSocket protocol kubectl 1.30+ speaks: `v5.channel.k8s.io` (or `v4`), each binary
//! message a channel byte (0 stdin, 1 stdout, 2 stderr, 3 the exit Status, 4 terminal
//! size; v5's 255 closes a stream) and its data. With `-t` the sim is the terminal too:
//! it echoes what is typed, edits the line (backspace, Ctrl-U), interrupts the running
//! command on Ctrl-C and ends on Ctrl-D. What runs is [`shell`]'s.

pub mod curl;
pub mod shell;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_util::sync::CancellationToken;

use super::httpd::{Body, full};
use super::loadtest::{self, LoadTester};
use super::status::ApiError;

/// The channel protocols served, preferred first.
pub const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
/// v5: the client closed the stream named by the next byte.
const CLOSE: u8 = 255;

/// `?command=...&command=...&stdin=true&stdout=true&stderr=true&tty=true&container=...`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Options {
    pub command: Vec<String>,
    pub container: Option<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl Options {
    /// Reads the query, where `command` repeats once per word.
    pub fn parse(query: &str) -> Self {
        let mut o = Options::default();
        let decode = |s: &str| {
            let s = s.replace('+', " ");
            let mut out = Vec::with_capacity(s.len());
            let mut bytes = s.bytes();
            while let Some(b) = bytes.next() {
                if b == b'%' {
                    let hex: Vec<u8> = bytes.by_ref().take(2).collect();
                    match std::str::from_utf8(&hex).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                        Some(v) => out.push(v),
                        None => out.extend_from_slice(&hex),
                    }
                } else {
                    out.push(b);
                }
            }
            String::from_utf8_lossy(&out).into_owned()
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let (v, on) = (decode(v), v == "true" || v == "1");
            match k {
                "command" => o.command.push(v),
                "container" => o.container = Some(v),
                "stdin" => o.stdin = on,
                "stdout" => o.stdout = on,
                "stderr" => o.stderr = on,
                "tty" => o.tty = on,
                _ => {}
            }
        }
        o
    }
}

/// Where a command's output goes: stdout, and stderr (stdout on a terminal, where line
/// ends are `\r\n`).
#[derive(Debug, Clone)]
pub struct Output {
    tx: mpsc::Sender<(u8, Bytes)>,
    tty: bool,
}

impl Output {
    pub async fn out(&self, text: &str) {
        self.send(STDOUT, text).await;
    }

    pub async fn err(&self, text: &str) {
        self.send(if self.tty { STDOUT } else { STDERR }, text).await;
    }

    async fn send(&self, channel: u8, text: &str) {
        let text = if self.tty { text.replace("\r\n", "\n").replace('\n', "\r\n") } else { text.to_owned() };
        let _ = self.tx.send((channel, Bytes::from(text))).await;
    }

    /// Bytes as typed, for the terminal's echo.
    async fn echo(&self, bytes: &[u8]) {
        let _ = self.tx.send((STDOUT, Bytes::copy_from_slice(bytes))).await;
    }
}

/// Ctrl-C on a terminal: while a command of the interactive shell runs, it cancels the
/// command's token (and is not input), as a tty sends SIGINT to the foreground process.
#[derive(Debug, Default)]
struct Interrupt {
    token: CancellationToken,
    running: bool,
}

/// What is typed or piped into the command: its bytes, their end, and (on a terminal)
/// Ctrl-C.
#[derive(Debug)]
pub struct Input {
    rx: mpsc::Receiver<Vec<u8>>,
    pending: VecDeque<u8>,
    interrupt: Arc<Mutex<Interrupt>>,
}

impl Input {
    /// A command starts in the foreground: the token Ctrl-C cancels until [`Input::done`].
    pub fn foreground(&self) -> CancellationToken {
        let mut interrupt = self.interrupt.lock().expect("interrupt lock");
        interrupt.running = true;
        interrupt.token.clone()
    }

    /// The foreground command ended: Ctrl-C is input again.
    pub fn done(&self) {
        self.interrupt.lock().expect("interrupt lock").running = false;
    }

    async fn byte(&mut self) -> Option<u8> {
        loop {
            if let Some(b) = self.pending.pop_front() {
                return Some(b);
            }
            self.pending.extend(self.rx.recv().await?);
        }
    }

    /// The next line; `None` at the end of the input (Ctrl-D on an empty terminal line).
    /// On a terminal, what is typed is echoed and edited as a tty's line discipline does.
    pub async fn line(&mut self, out: &Output, tty: bool) -> Option<String> {
        let mut line: Vec<u8> = Vec::new();
        let text = |line: &[u8]| String::from_utf8_lossy(line).into_owned();
        loop {
            let Some(b) = self.byte().await else {
                return (!line.is_empty()).then(|| text(&line));
            };
            if !tty {
                match b {
                    b'\n' => return Some(text(&line)),
                    b => line.push(b),
                }
                continue;
            }
            match b {
                b'\r' | b'\n' => {
                    out.echo(b"\r\n").await;
                    return Some(text(&line));
                }
                0x7f | 0x08 => {
                    // A whole character goes, however many bytes it took.
                    while let Some(last) = line.pop() {
                        if last & 0xc0 != 0x80 {
                            out.echo(b"\x08 \x08").await;
                            break;
                        }
                    }
                }
                0x15 => {
                    for _ in 0..String::from_utf8_lossy(&line).chars().count() {
                        out.echo(b"\x08 \x08").await;
                    }
                    line.clear();
                }
                0x03 => {
                    out.echo(b"^C\r\n").await;
                    return Some(String::new());
                }
                0x04 if line.is_empty() => return None,
                // An escape sequence (arrow keys): no line history here.
                0x1b => {
                    if self.byte().await == Some(b'[') {
                        while let Some(c) = self.byte().await {
                            if (0x40..=0x7e).contains(&c) {
                                break;
                            }
                        }
                    }
                }
                b if b < 0x20 && b != b'\t' => {}
                b => {
                    line.push(b);
                    out.echo(&[b]).await;
                }
            }
        }
    }
}

/// Upgrades `GET .../pods/NAME/exec` to the channel protocol and runs the command in
/// the background; a pod that is not the load tester's, or a request without a
/// WebSocket upgrade, is refused as kube-apiserver would.
pub fn respond(
    req: Request<Incoming>,
    pod: &Value,
    tester: LoadTester,
    stop: CancellationToken,
) -> Result<Response<Body>, ApiError> {
    let name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_owned();
    let o = Options::parse(req.uri().query().unwrap_or_default());
    super::logs::container(pod, o.container.as_deref())?;
    if o.command.is_empty() {
        return Err(ApiError::BadRequest("you must specify at least 1 command".to_owned()));
    }
    if pod.pointer("/status/phase").and_then(Value::as_str) != Some("Running") {
        return Err(ApiError::BadRequest(format!("pod {name} is not running")));
    }
    if !loadtest::is_load_tester(pod) {
        return Err(ApiError::BadRequest(format!(
            "the simulated cluster runs commands only in the pods of the load tester ({}), not in pod {name}",
            loadtest::IMAGE
        )));
    }
    let headers = req.headers();
    let websocket =
        headers.get(header::UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let key = headers.get(header::SEC_WEBSOCKET_KEY).cloned();
    let offered: Vec<String> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .collect();
    let (true, Some(key)) = (websocket, key) else {
        return Err(ApiError::BadRequest("Upgrade request required".to_owned()));
    };
    let Some(protocol) = PROTOCOLS.into_iter().find(|p| offered.iter().any(|o| o == p)) else {
        return Err(ApiError::BadRequest(format!(
            "none of the offered subprotocols {offered:?} is supported: {}",
            PROTOCOLS.join(", ")
        )));
    };
    let accept = derive_accept_key(key.as_bytes());
    tokio::spawn(async move {
        let Ok(upgraded) = hyper::upgrade::on(req).await else { return };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        session(ws, o, tester, stop).await;
    });
    let mut response = Response::new(full(""));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, HeaderValue::from_str(&accept).expect("base64 is a header value"));
    h.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(protocol));
    Ok(response)
}

/// One exec: stdin from the client into [`Input`], [`Output`] out to it, and the exit
/// Status on the error channel at the end.
async fn session<S>(ws: WebSocketStream<S>, o: Options, tester: LoadTester, stop: CancellationToken)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = ws.split();
    let cancel = stop.child_token();
    let (out_tx, mut out_rx) = mpsc::channel::<(u8, Bytes)>(64);
    let (in_tx, in_rx) = mpsc::channel::<Vec<u8>>(64);
    let interrupt = Arc::new(Mutex::new(Interrupt { token: cancel.child_token(), running: false }));
    let output = Output { tx: out_tx, tty: o.tty };

    // The client's messages: stdin, its close (v5), the terminal's size; its going away
    // ends the command.
    let reader = {
        let (cancel, interrupt, tty, echo) = (cancel.clone(), interrupt.clone(), o.tty, output.clone());
        tokio::spawn(async move {
            let mut stdin = Some(in_tx);
            while let Some(message) = stream.next().await {
                let data = match message {
                    Ok(Message::Binary(data)) => data,
                    Ok(Message::Close(_)) | Err(_) => break,
                    Ok(_) => continue,
                };
                match data.first() {
                    Some(&STDIN) => {
                        let mut bytes = data[1..].to_vec();
                        let interrupted = tty && bytes.contains(&0x03) && {
                            let mut i = interrupt.lock().expect("interrupt lock");
                            if i.running {
                                i.token.cancel();
                                i.token = cancel.child_token();
                            }
                            i.running
                        };
                        if interrupted {
                            echo.echo(b"^C\r\n").await;
                            bytes.retain(|b| *b != 0x03);
                        }
                        if let Some(tx) = stdin.as_ref().filter(|_| !bytes.is_empty()) {
                            let _ = tx.send(bytes).await;
                        }
                    }
                    Some(&CLOSE) if data.get(1) == Some(&STDIN) => stdin = None,
                    Some(&RESIZE) | Some(_) | None => {}
                }
            }
            cancel.cancel();
        })
    };
    let writer = tokio::spawn(async move {
        while let Some((channel, data)) = out_rx.recv().await {
            let mut frame = Vec::with_capacity(data.len() + 1);
            frame.push(channel);
            frame.extend_from_slice(&data);
            if sink.send(Message::Binary(frame.into())).await.is_err() {
                return sink;
            }
        }
        sink
    });

    let mut input = Input { rx: in_rx, pending: VecDeque::new(), interrupt };
    if !o.stdin {
        input.rx.close();
    }
    let exit = {
        let mut shell = shell::Shell { tester: &tester, out: output.clone(), tty: o.tty };
        shell.exec(&o.command, &mut input, &cancel).await
    };
    let status = match exit {
        shell::Exit::Code(0) => json!({"metadata": {}, "status": "Success"}),
        shell::Exit::Code(code) => json!({
            "metadata": {}, "status": "Failure",
            "message": format!("command terminated with non-zero exit code: error executing command {:?}, exit code {code}", o.command),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        shell::Exit::NotFound(program) => json!({
            "metadata": {}, "status": "Failure",
            "message": format!(
                "error executing command in container: failed to exec in container: failed to start exec: OCI runtime exec \
                 failed: exec failed: unable to start container process: exec: \"{program}\": executable file not found in $PATH: unknown"
            ),
            "reason": "InternalError",
            "code": 500,
        }),
    };
    let _ = output.tx.send((ERROR, Bytes::from(status.to_string()))).await;
    drop(output);
    drop(input);
    // The reader holds an output too (the terminal's echo): it goes first, so the
    // writer sees the last output and ends.
    reader.abort();
    let _ = reader.await;
    if let Ok(mut sink) = writer.await {
        // A normal closure ends every stream with EOF; a close without a code is an error to client-go.
        let close = CloseFrame { code: CloseCode::Normal, reason: "".into() };
        let _ = sink.send(Message::Close(Some(close))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_names_each_word_of_the_command() {
        let o = Options::parse(
            "command=sh&command=-c&command=echo%20hi%3B+exit+3&stdin=true&stdout=true&tty=false&container=loadtester",
        );
        assert_eq!(o.command, ["sh", "-c", "echo hi; exit 3"]);
        assert_eq!((o.stdin, o.stdout, o.stderr, o.tty), (true, true, false, false));
        assert_eq!(o.container.as_deref(), Some("loadtester"));
    }

    async fn typed(bytes: &[u8], tty: bool) -> (Vec<Option<String>>, String) {
        let (tx, rx) = mpsc::channel(8);
        let (out_tx, mut out_rx) = mpsc::channel(64);
        tx.send(bytes.to_vec()).await.unwrap();
        drop(tx);
        let mut input = Input { rx, pending: VecDeque::new(), interrupt: Arc::default() };
        let out = Output { tx: out_tx, tty };
        let mut lines = Vec::new();
        loop {
            let line = input.line(&out, tty).await;
            let end = line.is_none();
            lines.push(line);
            if end {
                break;
            }
        }
        drop(out);
        let mut echoed = Vec::new();
        while let Some((_, b)) = out_rx.recv().await {
            echoed.extend_from_slice(&b);
        }
        (lines, String::from_utf8_lossy(&echoed).into_owned())
    }

    #[tokio::test]
    async fn a_terminal_echoes_and_edits_what_is_typed() {
        let (lines, echoed) = typed(b"curk\x7fl x\r\x1b[Aecho \x15hey\x03exit\r\x04", true).await;
        assert_eq!(lines, [Some("curl x".to_owned()), Some(String::new()), Some("exit".to_owned()), None]);
        assert_eq!(echoed, "curk\x08 \x08l x\r\necho \x08 \x08\x08 \x08\x08 \x08\x08 \x08\x08 \x08hey^C\r\nexit\r\n");
        let (lines, echoed) = typed("é\x7f".as_bytes(), true).await;
        assert_eq!((lines, echoed.as_str()), (vec![None], "é\x08 \x08"), "a whole character erased");
    }

    #[tokio::test]
    async fn piped_input_is_read_by_lines_without_echo() {
        let (lines, echoed) = typed(b"echo one\necho two", false).await;
        assert_eq!(lines, [Some("echo one".to_owned()), Some("echo two".to_owned()), None]);
        assert_eq!(echoed, "");
    }
}
