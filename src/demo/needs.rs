//! What the demo needs of the machine besides itself: a Prometheus binary (Debian's
//! package `prometheus`, at `/usr/bin/prometheus`). When there is none, the error says
//! the command that installs it on this machine, so the README's first command works on
//! a fresh one.

use std::io::ErrorKind;
use std::path::Path;

use sim::prometheus::{BINARY, PrometheusError};

/// The Debian (and Ubuntu) package that puts Prometheus at [`BINARY`].
pub const PACKAGE: &str = "prometheus";
/// Where Prometheus is for a machine without apt.
pub const DOWNLOAD: &str = "https://prometheus.io/download/";
const APT_GET: &str = "/usr/bin/apt-get";

/// How this machine installs a package: with apt or not, as root or through sudo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Machine {
    pub apt: bool,
    pub root: bool,
}

impl Machine {
    pub fn this() -> Self {
        use std::os::unix::fs::MetadataExt as _;
        // /proc/self belongs to the process's user.
        let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        Machine { apt: Path::new(APT_GET).is_file(), root }
    }

    /// The command that installs [`PACKAGE`] here (the package lists first: a fresh
    /// machine or container may have none), if apt can.
    pub fn install_command(self) -> Option<String> {
        let sudo = if self.root { "" } else { "sudo " };
        self.apt.then(|| format!("{sudo}apt-get update && {sudo}apt-get install -y {PACKAGE}"))
    }
}

/// What to tell the user when Prometheus could not start: what is missing and the
/// command that installs it, when it is missing (`None`: another failure, said as is).
/// `given` is the `--prometheus-bin` the demo was given.
pub fn missing(error: &PrometheusError, given: Option<&Path>, machine: Machine) -> Option<String> {
    let what = match (error, given) {
        (PrometheusError::Missing, _) => format!("there is none at {BINARY} or on PATH"),
        (PrometheusError::Io { source, .. }, Some(path)) if source.kind() == ErrorKind::NotFound => {
            format!("--prometheus-bin names {}, which does not exist", path.display())
        }
        _ => return None,
    };
    Some(match machine.install_command() {
        Some(command) => format!(
            "the demo needs Prometheus, and {what}. Install it with\n    {command}\nand run the demo again, \
             or name a Prometheus binary with --prometheus-bin PATH"
        ),
        None => format!(
            "the demo needs Prometheus, and {what}. Download it from {DOWNLOAD} and name its `prometheus` \
             binary with --prometheus-bin PATH"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: Machine = Machine { apt: true, root: false };

    #[test]
    fn a_missing_prometheus_is_told_with_the_command_that_installs_it_here() {
        let none = missing(&PrometheusError::Missing, None, USER).unwrap();
        assert_eq!(
            none,
            "the demo needs Prometheus, and there is none at /usr/bin/prometheus or on PATH. Install it with\n    \
             sudo apt-get update && sudo apt-get install -y prometheus\nand run the demo again, or name a \
             Prometheus binary with --prometheus-bin PATH"
        );
        let root = missing(&PrometheusError::Missing, None, Machine { apt: true, root: true }).unwrap();
        assert!(root.contains("\n    apt-get update && apt-get install -y prometheus\n"), "{root}");
        let no_apt = missing(&PrometheusError::Missing, None, Machine { apt: false, root: false }).unwrap();
        assert!(no_apt.contains("Download it from https://prometheus.io/download/"), "{no_apt}");
        assert!(!no_apt.contains("apt-get"), "{no_apt}");

        let gone = PrometheusError::Io {
            context: "starting /nonexistent".into(),
            source: std::io::Error::from(ErrorKind::NotFound),
        };
        let said = missing(&gone, Some(Path::new("/nonexistent")), USER).unwrap();
        assert!(
            said.starts_with("the demo needs Prometheus, and --prometheus-bin names /nonexistent, which"),
            "{said}"
        );
        // A Prometheus that is there and fails is not missing: installing would not help.
        let exited = PrometheusError::Exited { status: "exit status: 1".into(), log: "bad flag".into() };
        assert_eq!(missing(&exited, None, USER), None);
        let denied = PrometheusError::Io {
            context: "starting /opt/prometheus".into(),
            source: std::io::Error::from(ErrorKind::PermissionDenied),
        };
        assert_eq!(missing(&denied, Some(Path::new("/opt/prometheus")), USER), None);
    }
}
