//! `curl` in the load tester's container: the options scripts use (`-sSfiIL`, `-H`,
//! `-X`, `-d`, `-o`, `-w`, `-m`) against a plain-HTTP URL; cluster host names go to the
//! gateway, as from a pod.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use tokio_util::sync::CancellationToken;

use super::Output;
use crate::loadtest::{self, LoadTester};

/// Runs `curl ARGS` as the container would: its output, its messages and exit codes.
pub async fn run(args: &[String], tester: &LoadTester, out: &Output, cancel: &CancellationToken) -> i32 {
    let request = match Curl::parse(args) {
        Ok(r) => r,
        Err(why) => {
            out.err(&format!("curl: {why}\ncurl: try 'curl --help' for more information\n")).await;
            return 2;
        }
    };
    let started = Instant::now();
    let answer = tokio::select! {
        a = tokio::time::timeout(request.max_time, request.send(tester)) => a,
        () = cancel.cancelled() => return 130,
    };
    let elapsed = started.elapsed();
    let (status, head, body) = match answer {
        Ok(Ok(answer)) => answer,
        Ok(Err(CurlError::Connect)) => {
            if !request.silent || request.show_error {
                let (host, port) = (&request.host, request.port);
                let ms = elapsed.as_millis();
                out.err(&format!(
                    "curl: (7) Failed to connect to {host} port {port} after {ms} ms: Couldn't connect to server\n"
                ))
                .await;
            }
            return 7;
        }
        Ok(Err(CurlError::Protocol(why))) => {
            if !request.silent || request.show_error {
                out.err(&format!("curl: (56) Recv failure: {why}\n")).await;
            }
            return 56;
        }
        Err(_) => {
            if !request.silent || request.show_error {
                let ms = elapsed.as_millis();
                out.err(&format!("curl: (28) Operation timed out after {ms} milliseconds\n")).await;
            }
            return 28;
        }
    };
    let mut shown = String::new();
    if request.include {
        shown += &head;
    }
    if request.output.is_none() {
        shown += &String::from_utf8_lossy(&body);
    }
    if let Some(format) = &request.write_out {
        shown += &format
            .replace("%{http_code}", &status.to_string())
            .replace("%{time_total}", &format!("{:.6}", elapsed.as_secs_f64()))
            .replace("\\n", "\n");
    }
    out.out(&shown).await;
    if request.fail && status >= 400 {
        if request.show_error || !request.silent {
            out.err(&format!("curl: (22) The requested URL returned error: {status}\n")).await;
        }
        return 22;
    }
    0
}

/// A `curl` command line: the options scripts use with a plain-HTTP URL.
#[derive(Debug, Clone, PartialEq)]
struct Curl {
    method: Option<String>,
    headers: Vec<(String, String)>,
    data: Option<String>,
    host: String,
    port: u16,
    path: String,
    silent: bool,
    show_error: bool,
    include: bool,
    fail: bool,
    output: Option<String>,
    write_out: Option<String>,
    max_time: Duration,
}

#[derive(Debug)]
enum CurlError {
    Connect,
    Protocol(String),
}

impl Curl {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut c = Curl {
            method: None,
            headers: Vec::new(),
            data: None,
            host: String::new(),
            port: 80,
            path: String::new(),
            silent: false,
            show_error: false,
            include: false,
            fail: false,
            output: None,
            write_out: None,
            max_time: Duration::from_secs(300),
        };
        let mut url = None;
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = |name: &str| it.next().cloned().ok_or_else(|| format!("option {name}: requires parameter"));
            match arg.as_str() {
                "-H" | "--header" => {
                    let h = value(arg)?;
                    let (k, v) = h.split_once(':').ok_or_else(|| format!("option {arg}: bad header {h:?}"))?;
                    c.headers.push((k.trim().to_owned(), v.trim().to_owned()));
                }
                "-X" | "--request" => c.method = Some(value(arg)?),
                "-d" | "--data" | "--data-raw" | "--data-binary" => c.data = Some(value(arg)?),
                "-o" | "--output" => c.output = Some(value(arg)?).filter(|o| o != "-"),
                "-w" | "--write-out" => c.write_out = Some(value(arg)?),
                "-m" | "--max-time" => {
                    let v = value(arg)?;
                    let secs: f64 =
                        v.parse().map_err(|_| format!("option {arg}: expected a proper numerical parameter"))?;
                    c.max_time = Duration::from_secs_f64(secs.max(0.001));
                }
                "-I" | "--head" => c.method = Some("HEAD".to_owned()),
                "-L" | "--location" | "-k" | "--insecure" | "-v" | "--verbose" => {}
                a if a.starts_with("--") => return Err(format!("option {a}: is unknown")),
                a if a.starts_with('-') && a.len() > 1 => {
                    for flag in a[1..].chars() {
                        match flag {
                            's' => c.silent = true,
                            'S' => c.show_error = true,
                            'i' => c.include = true,
                            'f' => c.fail = true,
                            'L' | 'k' | 'v' => {}
                            _ => return Err(format!("option {a}: is unknown")),
                        }
                    }
                }
                a => url = Some(a.to_owned()),
            }
        }
        let url = url.ok_or("no URL specified")?;
        let full = if url.contains("://") { url.clone() } else { format!("http://{url}") };
        let uri: http::Uri = full.parse().map_err(|e| format!("(3) URL using bad/illegal format: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!(
                "(1) Protocol \"{}\" not supported in the simulated container",
                uri.scheme_str().unwrap_or("")
            ));
        }
        c.host = uri.host().unwrap_or_default().to_owned();
        c.port = uri.port_u16().unwrap_or(80);
        c.path = uri.path_and_query().map_or("/".to_owned(), |p| p.to_string());
        Ok(c)
    }

    /// The status, the head as curl `-i` shows it, and the body.
    async fn send(&self, tester: &LoadTester) -> Result<(u16, String, Bytes), CurlError> {
        let addr = loadtest::address(tester, &self.host, self.port);
        let tcp = TcpStream::connect(addr).await.map_err(|_| CurlError::Connect)?;
        let protocol = |e: hyper::Error| CurlError::Protocol(e.to_string());
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(protocol)?;
        tokio::spawn(connection);
        let method = self.method.clone().unwrap_or(if self.data.is_some() { "POST" } else { "GET" }.to_owned());
        let authority = if self.port == 80 { self.host.clone() } else { format!("{}:{}", self.host, self.port) };
        let mut req = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).map_err(|e| CurlError::Protocol(e.to_string()))?)
            .uri(&self.path);
        // A header given replaces curl's own of that name (`-H "Host: ..."` above all).
        for (name, value) in [("Host", authority.as_str()), ("User-Agent", "curl/8.5.0"), ("Accept", "*/*")] {
            if !self.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name)) {
                req = req.header(name, value);
            }
        }
        for (k, v) in &self.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        if self.data.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        let req = req
            .body(Full::new(Bytes::from(self.data.clone().unwrap_or_default())))
            .map_err(|e| CurlError::Protocol(e.to_string()))?;
        let response = sender.send_request(req).await.map_err(protocol)?;
        let status = response.status();
        let mut head = format!("HTTP/1.1 {status}\r\n");
        for (k, v) in response.headers() {
            head += &format!("{k}: {}\r\n", String::from_utf8_lossy(v.as_bytes()));
        }
        head += "\r\n";
        let body = response.into_body().collect().await.map_err(protocol)?.to_bytes();
        Ok((status.as_u16(), head, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curl_reads_the_options_scripts_use() {
        let args: Vec<String> = [
            "-sS",
            "-H",
            "host: app.example.com",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "http://gw.apisix:9080/delay/1?x=1",
        ]
        .map(str::to_owned)
        .to_vec();
        let c = Curl::parse(&args).unwrap();
        assert_eq!((c.silent, c.show_error), (true, true));
        assert_eq!(c.headers, [("host".to_owned(), "app.example.com".to_owned())]);
        assert_eq!((c.host.as_str(), c.port, c.path.as_str()), ("gw.apisix", 9080, "/delay/1?x=1"));
        assert_eq!(c.output.as_deref(), Some("/dev/null"));
        for (bad, why) in [
            (vec!["--frobnicate", "x"], "option --frobnicate: is unknown"),
            (vec!["-H"], "option -H: requires parameter"),
            (vec!["-s"], "no URL specified"),
            (vec!["https://x/"], "Protocol \"https\" not supported"),
        ] {
            let args: Vec<String> = bad.iter().map(|s| (*s).to_owned()).collect();
            assert!(Curl::parse(&args).unwrap_err().contains(why), "{bad:?}");
        }
    }
}
