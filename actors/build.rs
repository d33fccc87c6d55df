//! Names the commit the binary is built from, for `innoprov --version`: `$INNOPROV_COMMIT` when
//! set (a build from a source tarball), else `git rev-parse` of the checkout, else "unknown".

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")?;
    let out = Command::new("git").arg("-C").arg(dir).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=INNOPROV_COMMIT");
    let commit = match std::env::var("INNOPROV_COMMIT") {
        Ok(commit) if !commit.is_empty() => commit,
        _ => {
            // Built again when the checkout moves to another commit, not on every edit.
            if let Some(git_dir) = git(&["rev-parse", "--absolute-git-dir"]).map(PathBuf::from) {
                for watched in ["HEAD", "refs/heads", "packed-refs"] {
                    let path = git_dir.join(watched);
                    if path.exists() {
                        println!("cargo:rerun-if-changed={}", path.display());
                    }
                }
            }
            git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into())
        }
    };
    println!("cargo:rustc-env=INNOPROV_COMMIT={commit}");
}
