//! `turret mlc` processes for tests: enrolled with a `turret serve`'s
//! internal CA and connected to its component listener.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::BIN;

/// A `turret mlc` process; killed on drop.
pub struct MlcProcess(pub Child);

impl Drop for MlcProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `turret mlc` as `name` (enrolled into `creds`) against the
/// System Manager's component listener at `manager`.
pub fn start_mlc(manager: &str, creds: &Path, name: &str, dir: &Path) -> MlcProcess {
    let child = Command::new(BIN)
        .args(["mlc", "--manager", manager, "--sip-listen", "127.0.0.1:0"])
        .arg("--cert")
        .arg(creds.join(format!("{name}.pem")))
        .arg("--key")
        .arg(creds.join(format!("{name}.key")))
        .arg("--ca")
        .arg(creds.join("ca.pem"))
        .arg("--data-dir")
        .arg(dir.join(name))
        .env_remove("TURRET_CONFIG")
        .env("TURRET_LOG", "warn")
        .env("TURRET_SIP__KEEPALIVE_SECS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    MlcProcess(child)
}

/// The component listener's address, as `turret serve` printed it.
pub fn manager_url(server: &super::Server) -> String {
    let at = server
        .stdout()
        .iter()
        .find_map(|l| {
            l.trim()
                .strip_prefix("components:")
                .map(|r| r.split_whitespace().next().unwrap().to_string())
        })
        .expect("the component listener's address is printed");
    format!("https://{at}")
}

/// Enrols `name` with the System Manager whose data directory is `data`,
/// writing its credentials into `creds`.
pub fn enrol(data: &Path, creds: &Path, name: &str) {
    let (code, out, err) = super::turret(
        data,
        &["mlc", "enrol", name, "--out", creds.to_str().unwrap()],
        "",
    );
    assert_eq!(code, 0, "{out}{err}");
}
