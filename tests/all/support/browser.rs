//! Headless Chromium driven over the DevTools protocol on a pipe
//! (`--remote-debugging-pipe`: the browser reads commands from fd 3 and
//! writes answers to fd 4, each a JSON message ended by a NUL byte).
//!
//! Why not `--dump-dom`: it dumps the DOM at load, racing the page's first
//! fetch. Here a test waits (bounded) for the page to say it is done, in
//! its own `data-state`, then reads the DOM with `Runtime.evaluate`.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

/// How long one protocol command may take.
const COMMAND_WAIT: Duration = Duration::from_secs(30);

/// The browser's binary: `$CHROMIUM`, else `chromium` or
/// `chromium-browser` on the `PATH`. `None` when there is none; under
/// `CI=true` that is a failure, never a skip.
pub fn chromium() -> Option<PathBuf> {
    let found = std::env::var_os("CHROMIUM").map(PathBuf::from).or_else(|| {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .flat_map(|d| [d.join("chromium"), d.join("chromium-browser")])
            .find(|p| p.is_file())
    });
    if found.is_none() && std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "chromium is not installed, and under CI=true the browser tests must run: `apt-get install chromium`"
        );
    }
    found
}

/// One headless browser with one page.
pub struct Browser {
    child: Child,
    commands: File,
    answers: Receiver<Value>,
    next_id: u64,
    session: String,
    _profile: tempfile::TempDir,
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(r, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just created and are owned only here.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

impl Browser {
    /// Starts `binary` headless with a window of `width` x `height` and a
    /// fresh profile, and opens a blank page.
    pub fn start(binary: &Path, width: u32, height: u32) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let (cmd_read, cmd_write) = pipe();
        let (ans_read, ans_write) = pipe();
        let (cmd_fd, ans_fd) = (cmd_read.as_raw_fd(), ans_write.as_raw_fd());
        let mut command = Command::new(binary);
        command
            .args([
                "--headless=new",
                "--remote-debugging-pipe",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-sync",
                "--hide-scrollbars",
                "--mute-audio",
                &format!("--window-size={width},{height}"),
                &format!("--user-data-dir={}", profile.path().display()),
                "about:blank",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls (dup2) between fork and exec;
        // dup2 clears close-on-exec on the copies, so fds 3 and 4 survive.
        unsafe {
            command.pre_exec(move || {
                if libc::dup2(cmd_fd, 3) < 0 || libc::dup2(ans_fd, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("start chromium");
        drop((cmd_read, ans_write));
        let (tx, answers) = channel();
        let reader = File::from(ans_read);
        std::thread::spawn(move || {
            let mut reader = BufReader::new(reader);
            loop {
                let mut message = Vec::new();
                match reader.read_until(0, &mut message) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                message.pop_if(|b| *b == 0);
                if let Ok(v) = serde_json::from_slice::<Value>(&message)
                    && tx.send(v).is_err()
                {
                    return;
                }
            }
        });
        let mut browser = Browser {
            child,
            commands: File::from(cmd_write),
            answers,
            next_id: 0,
            session: String::new(),
            _profile: profile,
        };
        let target = browser.command("Target.createTarget", json!({"url": "about:blank"}));
        let target = target["targetId"].as_str().unwrap().to_string();
        let attached = browser.command(
            "Target.attachToTarget",
            json!({"targetId": target, "flatten": true}),
        );
        browser.session = attached["sessionId"].as_str().unwrap().to_string();
        browser.page("Page.enable", json!({}));
        browser.page("Runtime.enable", json!({}));
        browser.viewport(width, height, false);
        browser
    }

    /// Sends one command (to the browser, or with `session` to the page)
    /// and waits, bounded, for its answer; panics on a protocol error.
    fn send(&mut self, method: &str, params: Value, session: Option<String>) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            message["sessionId"] = json!(s);
        }
        let mut bytes = message.to_string().into_bytes();
        bytes.push(0);
        self.commands.write_all(&bytes).expect("write to chromium");
        let deadline = Instant::now() + COMMAND_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.answers.recv_timeout(left) {
                Ok(v) if v["id"] == id => {
                    assert!(v["error"].is_null(), "{method}: {}", v["error"]);
                    return v["result"].clone();
                }
                // An event, or another command's late answer.
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    panic!("chromium did not answer {method} within {COMMAND_WAIT:?}")
                }
                Err(RecvTimeoutError::Disconnected) => panic!("chromium exited during {method}"),
            }
        }
    }

    fn command(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, None)
    }

    fn page(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.send(method, params, Some(session))
    }

    /// Sizes the page's viewport; `mobile` emulates a phone (touch, the
    /// page's own viewport meta).
    pub fn viewport(&mut self, width: u32, height: u32, mobile: bool) {
        self.page(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        );
    }

    /// Loads `url` in the page.
    pub fn goto(&mut self, url: &str) {
        let answer = self.page("Page.navigate", json!({"url": url}));
        assert!(
            answer["errorText"].is_null(),
            "navigating to {url}: {answer}"
        );
    }

    /// The value of JavaScript `expression` in the page (awaited if it is a
    /// promise), as JSON.
    pub fn eval(&mut self, expression: &str) -> Value {
        let answer = self.page(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        assert!(
            answer["exceptionDetails"].is_null(),
            "{expression}: {}",
            answer["exceptionDetails"]
        );
        answer["result"]["value"].clone()
    }

    /// Evaluates `expression` until it is true, at most `limit`; panics
    /// with `what` and the page's text otherwise.
    pub fn wait_for(&mut self, expression: &str, limit: Duration, what: &str) {
        let start = Instant::now();
        loop {
            // Mid-navigation the document may not be there yet: not true.
            let probe = format!(
                "(() => {{ try {{ return Boolean({expression}); }} catch (_) {{ return false; }} }})()"
            );
            if self.eval(&probe) == json!(true) {
                return;
            }
            if start.elapsed() > limit {
                let text = self.eval("document.body ? document.body.innerText : ''");
                let state = self.eval("JSON.stringify(document.body ? document.body.dataset : {})");
                panic!("{what}: not within {limit:?}; body data {state}, text:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Writes a PNG of the viewport to `path`.
    pub fn screenshot(&mut self, path: &Path) {
        let shot = self.page("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
