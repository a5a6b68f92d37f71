//! The load tester's container, as far as `kubectl exec` reaches it: a shell (`sh`,
//! `bash`, `ash`; `-c SCRIPT`, or commands read from stdin with a prompt on a terminal)
//! that knows `hey` (the load tester's own), `curl`, `watch`, `echo`, `exit`, `true` and
//! `false`.
//! Anything else is not in the image: `sh: NAME: not found` (127) in a shell, and a
//! failed exec when run directly. Cluster host names go to the gateway, as from a pod.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Input, Output};
use crate::loadtest::{self, LoadTester};

/// The prompt of the image's busybox `ash` for its user in its home directory.
pub const PROMPT: &str = "~ $ ";

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    /// Run directly (not in a shell), the binary is not in the image.
    NotFound(String),
}

pub struct Shell<'a> {
    pub tester: &'a LoadTester,
    pub out: Output,
    pub tty: bool,
}

/// One command of a script and what joins it to the next.
#[derive(Debug, Clone, PartialEq)]
enum Joined {
    Then,
    And,
    Or,
}

/// Splits a shell line into commands (by `;`, `&&`, `||`), each into words (quotes and
/// backslashes as POSIX sh reads them; `#` starts a comment). Pipes and redirections
/// are refused.
fn parse(line: &str) -> Result<Vec<(Vec<String>, Joined)>, String> {
    let mut commands = Vec::new();
    let (mut words, mut word, mut in_word) = (Vec::new(), String::new(), false);
    let mut chars = line.chars().peekable();
    let end = |words: &mut Vec<String>, joined: Joined, commands: &mut Vec<(Vec<String>, Joined)>| {
        if !words.is_empty() {
            commands.push((std::mem::take(words), joined));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("syntax error: unterminated quoted string".to_owned()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') if matches!(chars.peek(), Some('"' | '\\' | '$' | '`')) => word.extend(chars.next()),
                        Some(c) => word.push(c),
                        None => return Err("syntax error: unterminated quoted string".to_owned()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.extend(chars.next());
            }
            '#' if !in_word => break,
            ';' | '&' | '|' | '<' | '>' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
                let joined = match (c, chars.peek()) {
                    (';' | '\n', _) => Joined::Then,
                    ('&', Some('&')) => Joined::And,
                    ('|', Some('|')) => Joined::Or,
                    ('|', _) => return Err("pipes are not supported in the simulated container".to_owned()),
                    _ => return Err(format!("{c:?} is not supported in the simulated container")),
                };
                if joined != Joined::Then {
                    chars.next();
                }
                end(&mut words, joined, &mut commands);
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    end(&mut words, Joined::Then, &mut commands);
    Ok(commands)
}

/// The words of one command line, as sh splits them (for `hey`'s own parser): an
/// error for an unterminated quote or more than one command.
pub fn words(line: &str) -> Result<Vec<String>, String> {
    let mut commands = parse(line)?;
    match commands.len() {
        0 => Ok(Vec::new()),
        1 if commands[0].1 == Joined::Then => Ok(commands.remove(0).0),
        _ => Err("one command only: no ;, && or ||".to_owned()),
    }
}

fn program(argv: &[String]) -> &str {
    argv.first().map(|p| p.rsplit('/').next().unwrap_or(p)).unwrap_or_default()
}

impl Shell<'_> {
    /// Runs `argv` as the container's entry of `kubectl exec`.
    pub async fn exec(&mut self, argv: &[String], input: &mut Input, cancel: &CancellationToken) -> Exit {
        match program(argv) {
            "sh" | "bash" | "ash" => Exit::Code(self.shell(&argv[1..], input, cancel).await),
            _ => match self.builtin(argv, input, cancel).await {
                Some(code) => Exit::Code(code),
                None => Exit::NotFound(argv.first().cloned().unwrap_or_default()),
            },
        }
    }

    async fn shell(&mut self, args: &[String], input: &mut Input, cancel: &CancellationToken) -> i32 {
        match args {
            [c, script, ..] if c == "-c" => self.script(script, input, cancel).await.unwrap_or_else(|code| code),
            [c] if c == "-c" => {
                self.out.err("sh: -c requires an argument\n").await;
                2
            }
            _ => self.interactive(input, cancel).await,
        }
    }

    /// Commands read from stdin until `exit` or its end; on a terminal with a prompt and
    /// Ctrl-C interrupting the command that runs.
    async fn interactive(&mut self, input: &mut Input, cancel: &CancellationToken) -> i32 {
        let mut last = 0;
        loop {
            if self.tty {
                self.out.out(PROMPT).await;
            }
            let Some(line) = input.line(&self.out, self.tty).await else {
                if self.tty {
                    self.out.out("exit\n").await;
                }
                return last;
            };
            // A command runs until it ends, Ctrl-C (a child of `cancel`) or the session ends.
            let interrupt = input.foreground();
            let ran = self.script(&line, input, &interrupt).await;
            input.done();
            match ran {
                _ if cancel.is_cancelled() => return 130,
                Ok(code) => last = code,
                Err(code) => return code,
            }
        }
    }

    /// A line of commands; `Err` when it said `exit`.
    async fn script(&mut self, line: &str, input: &mut Input, cancel: &CancellationToken) -> Result<i32, i32> {
        let commands = match parse(line) {
            Ok(c) => c,
            Err(why) => {
                self.out.err(&format!("sh: {why}\n")).await;
                return Ok(2);
            }
        };
        let (mut last, mut joined) = (0, Joined::Then);
        for (argv, next) in commands {
            let skip = match joined {
                Joined::Then => false,
                Joined::And => last != 0,
                Joined::Or => last == 0,
            };
            joined = next;
            if skip {
                continue;
            }
            if program(&argv) == "exit" {
                return Err(match argv.get(1).map(|n| n.parse::<i32>()) {
                    Some(Ok(n)) => n & 0xff,
                    Some(Err(_)) => {
                        self.out.err(&format!("sh: exit: Illegal number: {}\n", argv[1])).await;
                        2
                    }
                    None => last,
                });
            }
            last = match program(&argv) {
                "sh" | "bash" | "ash" => Box::pin(self.shell(&argv[1..], input, cancel)).await,
                _ => match self.builtin(&argv, input, cancel).await {
                    Some(code) => code,
                    None => {
                        self.out.err(&format!("sh: {}: not found\n", argv[0])).await;
                        127
                    }
                },
            };
            if cancel.is_cancelled() {
                break;
            }
        }
        Ok(last)
    }

    /// The image's programs; `None` for one it does not have.
    async fn builtin(&mut self, argv: &[String], input: &mut Input, cancel: &CancellationToken) -> Option<i32> {
        Some(match program(argv) {
            "true" => 0,
            "false" => 1,
            "echo" => {
                let (newline, words) = match argv.get(1).map(String::as_str) {
                    Some("-n") => (false, &argv[2..]),
                    _ => (true, &argv[1..]),
                };
                let text = words.join(" ") + if newline { "\n" } else { "" };
                self.out.out(&text).await;
                0
            }
            "hey" => self.hey(argv, cancel).await,
            "watch" => Box::pin(self.watch(&argv[1..], input, cancel)).await,
            "curl" => self.curl(&argv[1..], cancel).await,
            _ => return None,
        })
    }

    /// busybox `watch [-n SECONDS] [-t] COMMAND...`: the command again every interval,
    /// under a header (and on a cleared screen on a terminal), until Ctrl-C.
    async fn watch(&mut self, args: &[String], input: &mut Input, cancel: &CancellationToken) -> i32 {
        let (mut every, mut header, mut rest) = (Duration::from_secs(2), true, args);
        loop {
            match rest {
                [n, secs, tail @ ..] if n == "-n" => {
                    match secs.parse::<f64>().ok().filter(|s| s.is_finite() && *s > 0.0) {
                        Some(s) => every = Duration::from_secs_f64(s.max(0.1)),
                        None => {
                            self.out.err(&format!("watch: invalid number '{secs}'\n")).await;
                            return 1;
                        }
                    }
                    rest = tail;
                }
                [t, tail @ ..] if t == "-t" => {
                    header = false;
                    rest = tail;
                }
                _ => break,
            }
        }
        if rest.is_empty() {
            self.out.err("Usage: watch [-n SEC] [-t] PROG ARGS\n").await;
            return 1;
        }
        let command = rest.join(" ");
        while !cancel.is_cancelled() {
            if self.tty {
                self.out.out("\x1b[H\x1b[J").await;
            }
            if header {
                let now = k8s_openapi::jiff::Timestamp::now().strftime("%a %b %e %H:%M:%S %Y");
                self.out.out(&format!("Every {:.1}s: {command}    {now}\n\n", every.as_secs_f64())).await;
            }
            let _ = Box::pin(self.script(&command, input, cancel)).await;
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = cancel.cancelled() => {}
            }
        }
        0
    }

    async fn hey(&mut self, argv: &[String], cancel: &CancellationToken) -> i32 {
        // hey's own parser reads the command line: quote each word back.
        let line = argv.iter().map(|w| format!("'{}'", w.replace('\'', r"'\''"))).collect::<Vec<_>>().join(" ");
        match loadtest::hey(self.tester, &line, cancel).await {
            Ok((report, took)) => {
                self.out.out(&report.summary(took)).await;
                0
            }
            Err(e) => {
                self.out.err(&format!("{e}\n")).await;
                1
            }
        }
    }

    async fn curl(&mut self, args: &[String], cancel: &CancellationToken) -> i32 {
        super::curl::run(args, self.tester, &self.out, cancel).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<(Vec<&str>, Joined)> {
        let parsed = parse(line).unwrap();
        let leaked: &'static [(Vec<String>, Joined)] = Box::leak(parsed.into_boxed_slice());
        leaked.iter().map(|(w, j)| (w.iter().map(String::as_str).collect(), j.clone())).collect()
    }

    #[test]
    fn lines_split_as_sh_reads_them() {
        assert_eq!(
            words(r#"hey -z 1m -host app.example.com "http://apisix-gateway.apisix/status/500"; echo 'done it'"#),
            [
                (
                    vec!["hey", "-z", "1m", "-host", "app.example.com", "http://apisix-gateway.apisix/status/500"],
                    Joined::Then
                ),
                (vec!["echo", "done it"], Joined::Then),
            ]
        );
        assert_eq!(
            words(r#"curl -H \"host: a\" x && true || false # comment"#),
            [
                (vec!["curl", "-H", "\"host:", "a\"", "x"], Joined::And),
                (vec!["true"], Joined::Or),
                (vec!["false"], Joined::Then)
            ]
        );
        assert!(parse("curl x | grep y").unwrap_err().contains("pipes"));
        assert!(parse("echo 'open").unwrap_err().contains("unterminated"));
        assert!(parse("").unwrap().is_empty());
    }
}
