//! Build facts the binary reports: the git commit it was built from (`--version`), and a
//! rebuild when the builtin rules change (`include_dir!` embeds `rules/`, but cargo only
//! notices edits to files it was told about).

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=rules");
    println!("cargo:rustc-env=TRAILWARDEN_COMMIT={}", commit());
}

/// The commit: `TRAILWARDEN_BUILD_COMMIT` when set (an image build without `.git`), else
/// `git rev-parse`, else "unknown commit" (a source archive).
fn commit() -> String {
    println!("cargo:rerun-if-env-changed=TRAILWARDEN_BUILD_COMMIT");
    if let Ok(commit) = std::env::var("TRAILWARDEN_BUILD_COMMIT")
        && !commit.trim().is_empty()
    {
        return commit.trim().to_owned();
    }
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    let Some(commit) = git(&["rev-parse", "--short=12", "HEAD"]) else {
        return "unknown commit".to_owned();
    };
    // Rebuild when HEAD moves: HEAD itself (a checkout) and the branch it points to (a commit).
    for path in ["HEAD", "refs"]
        .iter()
        .filter_map(|p| git(&["rev-parse", "--git-path", p]))
    {
        println!("cargo:rerun-if-changed={path}");
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"])
        && let Some(path) = git(&["rev-parse", "--git-path", &branch])
    {
        println!("cargo:rerun-if-changed={path}");
    }
    commit
}
