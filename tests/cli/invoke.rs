//! Running the binary as an operator does: the command, the
//! configuration files it reads, and what a run said.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The binary under test.
pub fn facteur() -> Command {
    Command::new(env!("CARGO_BIN_EXE_facteur"))
}

/// Writes `text` to a config file in a fresh directory.
pub fn config_file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("facteur.toml");
    std::fs::write(&path, text).expect("write");
    (dir, path)
}

/// Writes `dir/facteur.toml`: one served domain, the SQLite store in
/// `dir` (where the spam models are kept too), then `more`.
pub fn store_config(dir: &Path, more: &str) -> PathBuf {
    let path = dir.join("facteur.toml");
    std::fs::write(
        &path,
        format!(
            "[component]\njid = \"mail.example.test\"\nsecret = \"s\"\n[mail]\ndomains = [\"example.test\"]\n\
             [store]\nurl = \"sqlite://{}/facteur.db\"\n{more}",
            dir.display()
        ),
    )
    .expect("write");
    path
}

/// Runs `facteur COMMAND --config PATH`.
pub fn with_config(command: &str, path: &Path) -> Output {
    facteur()
        .args([command, "--config"])
        .arg(path)
        .output()
        .expect("runs")
}

/// Runs `command`: its exit code, standard output and standard error.
pub fn run(command: &mut Command) -> (Option<i32>, String, String) {
    let out = command.output().expect("runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Fails the test, with what the run wrote to standard error, unless
/// the run succeeded.
pub fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
