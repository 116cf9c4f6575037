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

/// `weir demo`, README's first command: two releases told once each, in their final states,
/// with no colour codes in what is not a terminal.
#[test]
fn the_demo_tells_each_release_once_and_ends_in_its_final_states() {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("demo")
        .env_remove("WEIR_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        !stdout.contains('\u{1b}') && !stderr.contains('\u{1b}'),
        "colour codes"
    );
    // The log shows only what goes wrong: every event is told once, by the story.
    assert!(!stderr.contains("Initialization done"), "{stderr}");
    let (release1, release2) = stdout.split_once("== release 2").unwrap();
    for (release, text) in [(1, release1), (2, release2)] {
        let inits = text.matches("Initialization done!").count();
        assert_eq!(inits, 1, "release {release}:\n{text}");
    }
    // Each release's last status line is its final state, with the routing that is served.
    let last_status = |text: &str| {
        text.lines()
            .rfind(|l| l.starts_with('['))
            .unwrap()
            .to_owned()
    };
    let end1 = last_status(release1);
    assert!(
        end1.contains("Succeeded") && end1.contains("v2 100%"),
        "{end1}"
    );
    let end2 = last_status(release2);
    assert!(
        end2.contains("Failed") && end2.contains("  0% canary"),
        "{end2}"
    );
}

#[test]
fn an_empty_config_directory_is_warned_about() {
    let dir = std::env::temp_dir().join(format!("weir-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .arg("validate")
        .arg(&dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success());
    assert!(
        stderr.contains("warning: no YAML file was found"),
        "{stderr}"
    );
}

#[test]
fn a_missing_config_at_start_is_said_once_and_weir_does_not_start() {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "--config", "/nonexistent/weir.yaml"])
        .args(["--admin", "127.0.0.1:0", "--mesh-listen", "127.0.0.1:0"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stderr.matches("cannot read file").count(), 1, "{stderr}");
    assert!(!stderr.contains("keeps serving"), "{stderr}");
    assert!(stderr.contains("weir: not started: 1 errors"), "{stderr}");
}

#[test]
fn completions_are_printed_for_each_shell() {
    for (shell, mark) in [
        ("bash", "complete -F _weir"),
        ("zsh", "#compdef weir"),
        ("fish", "complete -c weir"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args(["completions", shell])
            .output()
            .unwrap();
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{shell}");
        assert!(script.contains(mark), "{shell}: {script}");
        for command in ["run", "validate", "demo", "canary"] {
            assert!(script.contains(command), "{shell} lacks {command}");
        }
    }
}
