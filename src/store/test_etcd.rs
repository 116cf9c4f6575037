//! A real etcd for tests: Debian's `etcd` binary on loopback ports of its own, with a scratch
//! data directory, stopped (and its directory removed) on drop. Shared by the crate's tests
//! and the integration tests (`tests/support` includes this file).
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

/// A running (or stopped) etcd.
pub struct EtcdServer {
    pub port: u16,
    peer: u16,
    dir: PathBuf,
    child: Option<Child>,
    args: Vec<String>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl EtcdServer {
    /// Starts etcd; panics, saying what to install, if the binary is missing.
    pub fn start() -> EtcdServer {
        EtcdServer::start_with(&[])
    }

    /// Starts etcd with more flags.
    pub fn start_with(args: &[&str]) -> EtcdServer {
        let dir =
            std::env::temp_dir().join(format!("weir-etcd-{}-{}", std::process::id(), free_port()));
        let mut e = EtcdServer {
            port: free_port(),
            peer: free_port(),
            dir,
            child: None,
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        e.restart();
        e
    }

    /// `127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `etcd://127.0.0.1:PORT/PREFIX`.
    pub fn url(&self, prefix: &str) -> String {
        format!("etcd://{}{prefix}", self.endpoint())
    }

    /// Stops etcd (as a crash would: SIGKILL), keeping its data.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts etcd again on the same ports and data, and waits until it answers.
    pub fn restart(&mut self) {
        self.stop();
        let client = format!("http://127.0.0.1:{}", self.port);
        let peer = format!("http://127.0.0.1:{}", self.peer);
        let log = std::fs::File::create(
            std::env::temp_dir().join(format!("weir-etcd-{}.log", self.port)),
        )
        .unwrap();
        let child = Command::new("etcd")
            .args(["--name", "t", "--data-dir"])
            .arg(&self.dir)
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("t={peer}")])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the tests need etcd: apt-get install etcd-server (scripts/test.sh does)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self
                .try_post("/v3/maintenance/status", "{}")
                .is_ok_and(|(s, _)| s == 200)
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("etcd did not come up on port {}", self.port);
    }

    fn try_post(&self, path: &str, body: &str) -> std::io::Result<(u16, String)> {
        let mut s = std::net::TcpStream::connect(self.endpoint())?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            s,
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.endpoint(),
            body.len()
        )?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        let status = out
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        // Chunked answers: the JSON is the line that starts with `{`.
        let json = body
            .lines()
            .find(|l| l.starts_with('{'))
            .unwrap_or_default()
            .to_owned();
        Ok((status, json))
    }

    /// A call to etcd's JSON gateway; the answer's JSON.
    pub fn post(&self, path: &str, body: &serde_json::Value) -> serde_json::Value {
        let (_, json) = self.try_post(path, &body.to_string()).unwrap();
        serde_json::from_str(&json).unwrap_or(serde_json::Value::Null)
    }

    /// The current revision.
    pub fn revision(&self) -> i64 {
        let v = self.post(
            "/v3/kv/range",
            &serde_json::json!({"key": B64.encode("\0")}),
        );
        v["header"]["revision"].as_str().unwrap().parse().unwrap()
    }

    /// Compacts the history up to the current revision.
    pub fn compact(&self) -> i64 {
        let rev = self.revision();
        self.post(
            "/v3/kv/compaction",
            &serde_json::json!({"revision": rev.to_string(), "physical": true}),
        );
        rev
    }

    /// Puts a value, as any etcd client could (bypassing weir).
    pub fn put(&self, key: &str, value: &str) {
        self.post(
            "/v3/kv/put",
            &serde_json::json!({"key": B64.encode(key), "value": B64.encode(value)}),
        );
    }

    /// A key's value.
    pub fn get(&self, key: &str) -> Option<String> {
        let v = self.post("/v3/kv/range", &serde_json::json!({"key": B64.encode(key)}));
        let value = v["kvs"][0]["value"].as_str()?;
        String::from_utf8(B64.decode(value).ok()?).ok()
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
