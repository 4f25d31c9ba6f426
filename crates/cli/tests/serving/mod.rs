//! Starting `omnitrail serve` on port 0 for end-to-end tests, and talking to it.
#![allow(dead_code)] // each test file uses its own part

use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::time::Duration;

pub struct Running {
    /// `None` once stopped or killed; a test that fails first kills it on drop.
    child: Option<Child>,
    pub url: String,
    /// The rest of standard output after the `listening on` line.
    stdout: BufReader<ChildStdout>,
    stderr_file: PathBuf,
    /// Lines printed before `listening on` (the demo's stats and keys).
    pub banner: Vec<String>,
}

/// Starts `omnitrail --data DATA ARGS… --listen 127.0.0.1:0` and waits for its
/// `listening on http://ADDR` line. Standard error goes to a file next to the data dir.
pub fn start(data: &Path, args: &[&str]) -> Running {
    let stderr_file = data.with_extension(format!("stderr-{}", std::process::id()));
    let stderr = std::fs::File::create(&stderr_file).expect("stderr file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_omnitrail"))
        .arg("--data")
        .arg(data)
        .args(args)
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("OMNITRAIL_DATA")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take();
    // From here on, dropping `running` (a failed assertion) kills and reaps the server.
    let mut running = Running {
        child: Some(child),
        url: String::new(),
        stdout: BufReader::new(stdout.expect("piped stdout")),
        stderr_file,
        banner: Vec::new(),
    };
    loop {
        let mut line = String::new();
        if running.stdout.read_line(&mut line).unwrap_or(0) == 0 {
            let status = running.child().wait().expect("wait");
            panic!(
                "omnitrail {args:?} exited ({status}) before listening: {}\n{}",
                running.banner.join(""),
                std::fs::read_to_string(&running.stderr_file).unwrap_or_default()
            );
        }
        if let Some(url) = line.trim().strip_prefix("listening on ") {
            running.url = url.to_string();
            return running;
        }
        running.banner.push(line);
    }
}

impl Running {
    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("running")
    }

    pub fn pid(&mut self) -> i32 {
        self.child().id() as i32
    }

    /// SIGTERM, then waits for the process; returns its status, the rest of its standard
    /// output and its standard error.
    pub fn stop(mut self) -> (ExitStatus, String, String) {
        let pid = self.pid();
        // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let status = self.child().wait().expect("wait");
        self.child = None;
        let mut out = String::new();
        let _ = self.stdout.read_to_string(&mut out);
        let err = std::fs::read_to_string(&self.stderr_file).unwrap_or_default();
        (status, out, err)
    }

    /// SIGKILL: the process dies at once, mid-request.
    pub fn kill(mut self) {
        let child = self.child();
        child.kill().expect("kill");
        child.wait().expect("wait");
        self.child = None;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.stderr_file);
    }
}

/// `omnitrail keys create --kind KIND`, which prints the key on its first line.
pub fn create_key(data: &Path, kind: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_omnitrail"))
        .arg("--data")
        .arg(data)
        .args(["keys", "create", "--kind", kind])
        .env_remove("OMNITRAIL_DATA")
        .output()
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "keys create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .next()
        .expect("a key")
        .to_string()
}

pub fn client() -> reqwest::blocking::Client {
    // The workspace's reqwest has TLS without a built-in crypto provider (the app's webhook
    // client installs ring); a client cannot be built before one is installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("http client")
}

/// Status and JSON body of a request with `Authorization: Bearer key`.
pub fn get(url: &str, key: &str) -> (u16, Value) {
    let r = client().get(url).bearer_auth(key).send().expect("request");
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

pub fn post(url: &str, key: &str, body: String) -> (u16, Value) {
    let r = client()
        .post(url)
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .expect("request");
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}
