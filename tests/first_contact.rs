//! A newcomer's first commands, as README gives them: the examples validate as one config, and
//! `weir demo --backends` gives them backends to route to.
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

#[test]
fn the_examples_validate_together_as_readme_says() {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["validate", "examples/"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.starts_with("ok: "), "{text}");
}

#[tokio::test]
async fn demo_backends_answer_on_every_loopback_endpoint_until_sigterm() {
    let (a, b) = (free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("weir-stubs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("services.yaml");
    std::fs::write(
        &file,
        format!(
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: shop}}
spec:
  hosts: [shop]
  resolution: STATIC
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  endpoints:
  - {{address: 127.0.0.1, ports: {{http: {a}}}, labels: {{version: v1}}}}
  - {{address: 127.0.0.1, ports: {{http: {b}}}, labels: {{version: v2}}}}
"
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["demo", "--backends"])
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for (port, version) in [(a, "v1"), (b, "v2")] {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(stream) = tokio::net::TcpStream::connect(addr).await {
                drop(stream);
                break;
            }
            assert!(Instant::now() < deadline, "no stub on {addr}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (status, headers, body) = get(addr, "shop", "/", &[]).await;
        assert_eq!(status, 200);
        assert_eq!(headers["x-version"], version);
        assert_eq!(body, format!("{version}: hello\n"));
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the stubs did not stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success());
}
