//! Man pages and shell completions come from the clap definitions: what
//! the Debian package installs (scripts/deb.sh runs these commands).

use std::process::Command;

fn rampart(args: &[&str]) -> std::process::Output {
    let o = Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "rampart {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

const SUBCOMMANDS: &[&str] = &[
    "check",
    "compile",
    "simulate",
    "test-policy",
    "apply",
    "confirm",
    "rollback",
    "status",
    "agent",
    "push",
    "wg",
    "lab",
    "verify",
    "allowlist",
    "completions",
];

#[test]
fn man_pages_for_the_command_and_each_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man");
    rampart(&["gen-man", out.to_str().unwrap()]);
    for sub in SUBCOMMANDS {
        let page = out.join(format!("rampart-{sub}.1"));
        assert!(page.exists(), "{} missing", page.display());
    }
    for nested in ["wg-enroll", "lab-up", "lab-verify"] {
        assert!(out.join(format!("rampart-{nested}.1")).exists(), "{nested}");
    }
    // The packaging helper has no page.
    assert!(!out.join("rampart-gen-man.1").exists());
    let main = std::fs::read_to_string(out.join("rampart.1")).unwrap();
    assert!(
        main.starts_with(".ie") || main.contains(".TH rampart 1"),
        "{main}"
    );
    // roff writes a hyphen as \-.
    let check = std::fs::read_to_string(out.join("rampart-check.1"))
        .unwrap()
        .replace("\\-", "-");
    assert!(check.contains(".TH rampart-check 1"), "{check}");
    assert!(check.contains("--deny-warnings"), "{check}");
    assert!(check.contains("Treat warnings as errors"), "{check}");
    // man(1) reads it (when man-db is installed).
    if let Ok(o) = Command::new("man")
        .args(["-l", "-P", "cat"])
        .arg(out.join("rampart-check.1"))
        .env("MANWIDTH", "100")
        .output()
    {
        if o.status.success() {
            let text = String::from_utf8_lossy(&o.stdout);
            assert!(text.contains("--deny-warnings"), "{text}");
        }
    }
}

fn completion(shell: &str) -> String {
    let script = String::from_utf8(rampart(&["completions", shell]).stdout).unwrap();
    assert!(!script.trim().is_empty(), "{shell}: empty");
    for sub in SUBCOMMANDS {
        assert!(script.contains(sub), "{shell} completion lacks {sub}");
    }
    // Packaging's helper is not offered to users.
    assert!(
        !script.contains("gen-man"),
        "{shell} completion offers gen-man"
    );
    script
}

/// `SHELL -n` on the script, when the shell is installed.
fn syntax_ok(shell: &str, script: &str) -> Option<bool> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("completion");
    std::fs::write(&p, script).unwrap();
    let o = Command::new(shell).arg("-n").arg(&p).output().ok()?;
    if !o.status.success() {
        eprintln!("{shell} -n: {}", String::from_utf8_lossy(&o.stderr));
    }
    Some(o.status.success())
}

#[test]
fn bash_completion_names_the_subcommands_and_parses() {
    let s = completion("bash");
    assert!(s.contains("complete -F _rampart"), "{s}");
    assert_eq!(syntax_ok("bash", &s), Some(true), "bash -n refused it");
}

#[test]
fn zsh_completion_names_the_subcommands() {
    let s = completion("zsh");
    assert!(s.starts_with("#compdef rampart"), "{s}");
    if let Some(ok) = syntax_ok("zsh", &s) {
        assert!(ok, "zsh -n refused it");
    }
}

#[test]
fn fish_completion_names_the_subcommands() {
    let s = completion("fish");
    assert!(s.contains("complete -c rampart"), "{s}");
    if let Some(ok) = syntax_ok("fish", &s) {
        assert!(ok, "fish -n refused it");
    }
}
