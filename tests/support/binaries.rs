//! Programs the tests drive: found, or a failure that says what is missing.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

/// `/usr/bin/<name>` (where the Debian packages put them) or `<name>` on PATH; panics
/// naming the program when it is neither, instead of failing somewhere further on.
pub fn require_binary(name: &str) -> PathBuf {
    let usr_bin = PathBuf::from("/usr/bin").join(name);
    if usr_bin.is_file() {
        return usr_bin;
    }
    let on_path = std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file()));
    on_path.unwrap_or_else(|| {
        panic!("{name} not found at {} or on PATH: install it (.ci/run installs or checks for it)", usr_bin.display())
    })
}

/// A child process stopped with SIGTERM (SIGKILL if it lingers) when dropped.
#[allow(dead_code)] // Not every test file that finds programs also starts one.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        for _ in 0..150 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
