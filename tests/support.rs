//! Helpers shared by the tests that run the `maskstore` binary.

use std::path::Path;
use std::process::{Command, Output};

/// Runs the binary in `dir` with only `vars` (plus PATH) in its environment.
pub fn maskstore(dir: &Path, args: &[&str], vars: &[(String, String)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_maskstore"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("the maskstore binary runs")
}

/// Process output as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Owned environment pairs.
pub fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `maskstore serve` as a process in `dir`, on a free port, with stdout in `dir/serve.out`
/// and stderr in `dir/serve.log`; killed on drop.
pub struct Serve {
    pub child: std::process::Child,
    /// `127.0.0.1:<port>`.
    pub addr: String,
    /// `http://<addr>`.
    pub base: String,
    /// `http://` + `APP_GATEWAY__ADMIN_LISTEN`, when given.
    pub admin: Option<String>,
    /// The folder it runs in.
    pub dir: std::path::PathBuf,
    /// `APP_GATEWAY__SIGNING_SECRET`, to sign URLs with.
    secret: String,
}

impl Serve {
    /// Starts it with only `vars` (plus PATH and the listen address) in its environment,
    /// a later pair overriding an earlier one, and waits until it listens.
    pub fn start(dir: &Path, vars: &[(&str, &str)]) -> Serve {
        use std::time::{Duration, Instant};
        let addr = format!("127.0.0.1:{}", free_port());
        let setting = |name: &str| {
            vars.iter()
                .rev()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        let file = |name: &str| std::fs::File::create(dir.join(name)).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_maskstore"))
            .arg("serve")
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("APP_GATEWAY__LISTEN", &addr)
            .envs(vars.iter().copied())
            .stdout(file("serve.out"))
            .stderr(file("serve.log"))
            .spawn()
            .expect("maskstore serve starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "serve did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Serve {
            child,
            base: format!("http://{addr}"),
            addr,
            admin: setting("APP_GATEWAY__ADMIN_LISTEN").map(|a| format!("http://{a}")),
            dir: dir.to_path_buf(),
            secret: setting("APP_GATEWAY__SIGNING_SECRET").unwrap_or_default(),
        }
    }

    /// A URL granting `method` on `key` for 5 minutes, signed with its secret.
    pub fn sign(&self, method: maskstore_backends::SignedMethod, key: &str) -> String {
        use maskstore_backends::signing::{GatewaySigner, SignOptions};
        let signer = GatewaySigner::new(
            &self.base,
            maskstore_core::Secret::new(self.secret.clone()),
            None,
        );
        signer.sign(
            method,
            &maskstore_core::ObjectKey::parse(key).unwrap(),
            chrono::Utc::now().timestamp() + 300,
            &SignOptions::default(),
        )
    }

    /// Where `/health` and `/metrics` are served.
    pub fn admin_base(&self) -> &str {
        self.admin.as_deref().unwrap_or(&self.base)
    }

    /// Its resident size in bytes.
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status");
        kib * 1024
    }

    /// Sends it SIGTERM.
    pub fn terminate(&self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
    }

    /// Stops it with SIGTERM and returns everything it wrote, stdout then stderr.
    pub fn stop(mut self) -> String {
        self.terminate();
        let _ = self.child.wait();
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!("{}{}", read("serve.out"), read("serve.log"))
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
