//! Helpers shared by the tests that run the `maskstore` binary: one launcher
//! ([`command`], and [`maskstore`] to run it to the end), one success check
//! ([`succeeded`]) and one running `maskstore serve` ([`Serve`]).

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The binary under test, for the one test that must start it through a shell
/// (`sh -c 'umask …; exec …'`); everything else goes through [`command`].
pub const MASKSTORE: &str = env!("CARGO_BIN_EXE_maskstore");

/// `maskstore ARGS` in `dir` with only `vars` (plus PATH) in its environment and stdin
/// closed, ready to run, spawn or redirect: how every test starts the binary.
pub fn command(dir: &Path, args: &[&str], vars: &[(String, String)]) -> Command {
    let mut command = Command::new(MASKSTORE);
    command
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null());
    command
}

/// Runs the binary in `dir` with only `vars` (plus PATH) in its environment, to the end.
pub fn maskstore(dir: &Path, args: &[&str], vars: &[(String, String)]) -> Output {
    command(dir, args, vars)
        .output()
        .expect("the maskstore binary runs")
}

/// Asserts that a command exited with 0, else fails showing its stdout and stderr;
/// returns its stdout.
#[track_caller]
pub fn succeeded(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
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

/// `maskstore serve` as a process in `dir`, on a free port unless told, with stdout in `dir/serve.out`
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
    /// Starts it with only `vars` (plus PATH) in its environment, a later pair overriding
    /// an earlier one, on `APP_GATEWAY__LISTEN` when `vars` name it and a free port
    /// otherwise, and waits until it listens.
    pub fn start<K: AsRef<str>, V: AsRef<str>>(dir: &Path, vars: &[(K, V)]) -> Serve {
        use std::time::{Duration, Instant};
        let setting = |name: &str| {
            vars.iter()
                .rev()
                .find(|(k, _)| k.as_ref() == name)
                .map(|(_, v)| v.as_ref().to_string())
        };
        let addr =
            setting("APP_GATEWAY__LISTEN").unwrap_or_else(|| format!("127.0.0.1:{}", free_port()));
        let mut env = vec![("APP_GATEWAY__LISTEN".to_string(), addr.clone())];
        env.extend(
            vars.iter()
                .map(|(k, v)| (k.as_ref().to_string(), v.as_ref().to_string())),
        );
        let file = |name: &str| std::fs::File::create(dir.join(name)).unwrap();
        let child = command(dir, &["serve"], &env)
            .stdout(file("serve.out"))
            .stderr(file("serve.log"))
            .spawn()
            .expect("maskstore serve starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "serve did not listen on {addr}");
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

/// Flips one byte in the middle of the file at `path`, keeping its size and attributes
/// (the stored checksum): the bit rot a verified read must catch.
pub fn flip_one_byte(path: &std::path::Path) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let at = file.metadata().unwrap().len() / 2;
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, at).unwrap();
    byte[0] ^= 0x01;
    file.write_all_at(&byte, at).unwrap();
}
