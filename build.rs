//! Records the git commit the binary is built from, for
//! `switchboard_build_info{commit}`: `git rev-parse --short HEAD`, or
//! `unknown` when there is no git or no checkout (a source tarball, a
//! Docker context without `.git`). Reruns only when HEAD moves, so ordinary
//! rebuilds stay cheap.

use std::process::Command;

fn main() {
    let commit = git(&["rev-parse", "--short", "HEAD"])
        .filter(|c| c.chars().all(|ch| ch.is_ascii_hexdigit()))
        .unwrap_or_else(|| "unknown".to_owned());
    // Not `SWITCHBOARD_*`: cargo passes this variable to test runs too, and
    // the broker reads every `SWITCHBOARD_*` variable as configuration.
    println!("cargo:rustc-env=BUILD_GIT_COMMIT={commit}");
    watch_head();
}

/// Reruns the build script when HEAD changes branch or its branch moves (a
/// commit, a checkout), not on every source edit. Paths come from git, so a
/// worktree (where `.git` is a file) is watched too.
fn watch_head() {
    let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]) else {
        // No checkout: rerun only if this script changes.
        println!("cargo:rerun-if-changed=build.rs");
        return;
    };
    println!("cargo:rerun-if-changed={head}");
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        for watched in [branch.as_str(), "packed-refs"] {
            if let Some(path) = git(&["rev-parse", "--git-path", watched]) {
                if std::path::Path::new(&path).exists() {
                    println!("cargo:rerun-if-changed={path}");
                }
            }
        }
    }
}

/// The trimmed output of a successful, non-empty `git` command.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}
