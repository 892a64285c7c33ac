//! Running the built `emporium` binary and reading what it prints.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Proc {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn_without(args, env, &[])
    }

    /// As [`Proc::spawn`], with these variables of the test's environment removed.
    pub fn spawn_without(args: &[&str], env: &[(&str, &str)], removed: &[&str]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_emporium"));
        for name in removed {
            cmd.env_remove(name);
        }
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("the emporium binary starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().expect("stdout is piped");
        let err = child.stderr.take().expect("stderr is piped");
        for stream in [
            Box::new(out) as Box<dyn std::io::Read + Send>,
            Box::new(err),
        ] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().expect("lines lock").push(line);
                }
            });
        }
        Self { child, lines }
    }

    pub fn output(&self) -> Vec<String> {
        self.lines.lock().expect("lines lock").clone()
    }

    /// Asserts a line printed so far holds `text`.
    pub fn assert_printed(&self, text: &str) {
        let output = self.output();
        assert!(output.iter().any(|l| l.contains(text)), "{output:?}");
    }

    /// Asserts the process exits with a failure within thirty seconds, having
    /// printed `text`.
    pub fn assert_fails_saying(&mut self, text: &str) {
        assert!(self.wait_failure(Duration::from_secs(30)));
        self.assert_printed(text);
    }

    /// Waits until a printed line matches; panics with everything printed if none does in time.
    pub fn wait_for(&mut self, matches: impl Fn(&str) -> bool, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.output().into_iter().find(|l| matches(l)) {
                return line;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "emporium exited ({status}) early:\n{}",
                    self.output().join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "timed out; output:\n{}",
                self.output().join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The URL a `serve` process logs in its "<Service> listening." line, once it has.
    pub fn listening_url(&mut self, service: &str) -> String {
        let marker = format!("{service} listening.");
        let line = self.wait_for(|l| l.contains(&marker), Duration::from_secs(60));
        let event: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
        event["url"]
            .as_str()
            .expect("the line names its url")
            .to_owned()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to exit by itself; its exit code (`None` when
    /// it is still running at `timeout`, or was killed by a signal). The
    /// readers get a moment to take its last lines.
    pub fn wait_code(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Waits for the process to exit by itself; true when it exited successfully.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let code = self.wait_code(timeout);
        if code.is_some_and(|c| c != 0) {
            eprintln!("{}", self.output().join("\n"));
        }
        code == Some(0)
    }

    /// Waits for the process to exit by itself; true when it exited with a failure.
    pub fn wait_failure(&mut self, timeout: Duration) -> bool {
        self.wait_code(timeout).is_some_and(|c| c != 0)
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        self.wait_exit(timeout)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
