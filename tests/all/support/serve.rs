//! `toolhost serve --http 127.0.0.1:0` as a real child process: its URL
//! (read from the line it prints), its stderr lines as they come, and a
//! kill when the test is done.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::state_env;

pub struct Serve {
    child: Child,
    /// The MCP endpoint, `http://127.0.0.1:PORT/mcp`.
    pub url: String,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Serve {
    /// `toolhost GLOBAL... serve --http 127.0.0.1:0` in `cwd` with `vars`
    /// (and none of the caller's `TOOLHOST_LOG*`).
    pub fn start(cwd: &Path, global: &[&str], vars: &[(&str, &str)]) -> Serve {
        Serve::start_with(cwd, global, &[], vars)
    }

    /// As [`Serve::start`], with more `serve` flags (`--token-env NAME`).
    pub fn start_with(cwd: &Path, global: &[&str], flags: &[&str], vars: &[(&str, &str)]) -> Serve {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_toolhost"));
        cmd.args(global)
            .args(["serve", "--http", "127.0.0.1:0"])
            .args(flags)
            .current_dir(cwd)
            .envs(state_env(cwd))
            .env_remove("TOOLHOST_LOG")
            .env_remove("TOOLHOST_LOG_FORMAT")
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start toolhost serve");
        let stderr = child.stderr.take().unwrap();
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let kept = lines.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(rest) = line.strip_prefix("toolhost: serving MCP at ") {
                    let url = rest.split_whitespace().next().unwrap_or_default();
                    let _ = tx.send(url.to_string());
                }
                kept.lock().unwrap().push(line);
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!("the server printed no URL: {:#?}", lines.lock().unwrap());
            }
        };
        Serve {
            child,
            url,
            stderr: lines,
        }
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn at(&self, path: &str) -> String {
        let base = self.url.strip_suffix("/mcp").unwrap_or(&self.url);
        format!("{base}{path}")
    }

    /// Its stderr lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    /// SIGKILLs the server and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The `/metrics` page.
    pub async fn metrics(&self) -> String {
        let response = reqwest::get(self.at("/metrics")).await.unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
