//! A remote engine: `berth engine --tcp` with mutual TLS, certificates made here with openssl.
//! berth and the docker CLI with a client certificate from the CA get through; a certificate from
//! another CA and a client without TLS are refused; plain TCP needs --insecure-tcp and warns.
//! The VM is not booted (`--no-start`): this is about who may talk to the API.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use berth_tests::desktop::Kill;
use berth_tests::registry::free_port;
use berth_tests::{TestHome, berth_bin};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA `name`, and a certificate it signs for `cn` with `ext` (subjectAltName, usage).
fn pki(dir: &Path, ca: &str, leaf: &str, ext: &str) {
    if !dir.join(format!("{ca}.pem")).exists() {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &format!("{ca}-key.pem"),
                "-out",
                &format!("{ca}.pem"),
                "-days",
                "2",
                "-subj",
                &format!("/CN={ca}"),
            ],
        );
    }
    std::fs::write(dir.join(format!("{leaf}.ext")), ext).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{leaf}-key.pem"),
            "-out",
            &format!("{leaf}.csr"),
            "-subj",
            &format!("/CN={leaf}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{leaf}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}-key.pem"),
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &format!("{leaf}-cert.pem"),
            "-extfile",
            &format!("{leaf}.ext"),
        ],
    );
}

/// `berth engine --no-start` with `extra` arguments; returns it once it says it serves TCP,
/// and its stderr so far. Both pipes are drained to the end on threads of their own: an engine
/// whose stdout reader went away would die on its next line.
fn engine(home: &TestHome, extra: &[&str]) -> (Kill, String) {
    let mut child = Command::new(berth_bin())
        .args(["engine", "--no-start", "--socket"])
        .arg(home.path().join("docker.sock"))
        .args(extra)
        .env("BERTH_HOME", home.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let errors = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = errors.clone();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let mut e = sink.lock().unwrap();
            e.push_str(&line);
            e.push('\n');
        }
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while let Ok(line) =
        rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
    {
        if line.contains("serving tcp://") {
            // The warning goes out on stderr before this line; its reader may lag a little.
            let wait = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while extra.contains(&"--insecure-tcp")
                && !errors.lock().unwrap().contains("WARNING")
                && std::time::Instant::now() < wait
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let err = errors.lock().unwrap().clone();
            std::thread::spawn(move || for _ in rx {});
            return (Kill(child), err);
        }
    }
    let _ = child.kill();
    let status = child.wait().unwrap();
    panic!(
        "the engine exited or hung ({status}): {}",
        errors.lock().unwrap()
    );
}

fn berth(args: &[&str]) -> std::process::Output {
    Command::new(berth_bin())
        .args(args)
        .env_remove("DOCKER_HOST")
        .env_remove("DOCKER_TLS_VERIFY")
        .env_remove("DOCKER_CERT_PATH")
        .output()
        .unwrap()
}

#[test]
fn tcp_with_mutual_tls_lets_in_only_certified_clients() {
    let home = TestHome::new();
    let pki_dir = tempfile::tempdir().unwrap();
    let d = pki_dir.path();
    pki(
        d,
        "ca",
        "server",
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    );
    pki(d, "ca", "client", "extendedKeyUsage=clientAuth\n");
    pki(d, "rogue", "intruder", "extendedKeyUsage=clientAuth\n");
    let p = |f: &str| d.join(f).to_string_lossy().into_owned();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let (_engine, _) = engine(
        &home,
        &[
            "--tcp",
            &addr,
            "--tlscacert",
            &p("ca.pem"),
            "--tlscert",
            &p("server-cert.pem"),
            "--tlskey",
            &p("server-key.pem"),
        ],
    );
    let host = format!("tcp://{addr}");

    let ok = berth(&[
        "-H",
        &host,
        "--tlsverify",
        "--tlscacert",
        &p("ca.pem"),
        "--tlscert",
        &p("client-cert.pem"),
        "--tlskey",
        &p("client-key.pem"),
        "version",
    ]);
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success() && text.contains("Server: Berth"),
        "{text}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // The docker CLI, with the same certificates from DOCKER_CERT_PATH.
    for (from, to) in [
        ("ca.pem", "ca.pem"),
        ("client-cert.pem", "cert.pem"),
        ("client-key.pem", "key.pem"),
    ] {
        let certs = d.join("docker");
        std::fs::create_dir_all(&certs).unwrap();
        std::fs::copy(d.join(from), certs.join(to)).unwrap();
    }
    let out = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .env("DOCKER_HOST", &host)
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", d.join("docker"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker over mutual TLS: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A certificate from another CA, and no TLS at all: refused.
    let rogue = berth(&[
        "-H",
        &host,
        "--tlsverify",
        "--tlscacert",
        &p("ca.pem"),
        "--tlscert",
        &p("intruder-cert.pem"),
        "--tlskey",
        &p("intruder-key.pem"),
        "version",
    ]);
    assert!(!rogue.status.success(), "a rogue certificate got in");
    assert!(!String::from_utf8_lossy(&rogue.stdout).contains("Server: Berth"));
    let plain = berth(&["-H", &host, "version"]);
    assert!(!plain.status.success(), "a plain client got in");
    assert!(!String::from_utf8_lossy(&plain.stdout).contains("Server: Berth"));
}

#[test]
fn plain_tcp_needs_insecure_tcp_and_warns() {
    let home = TestHome::new();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let out = Command::new(berth_bin())
        .args(["engine", "--no-start", "--tcp", &addr, "--socket"])
        .arg(home.path().join("docker.sock"))
        .env("BERTH_HOME", home.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--insecure-tcp"), "{err}");

    let (_engine, warning) = engine(&home, &["--tcp", &addr, "--insecure-tcp"]);
    assert!(
        warning.contains("WARNING") && warning.contains("without TLS"),
        "{warning}"
    );
    let out = berth(&["-H", &format!("tcp://{addr}"), "version"]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Server: Berth"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
