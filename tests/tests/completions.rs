//! `mirror completions SHELL` and `mirror man`: generated from the one
//! command definition, and really usable: bash and fish complete a command
//! line with them, zsh parses its script, groff renders every page.

use std::path::Path;
use std::process::Command;

use mirror_tests::cli::{mirror, Run};

/// The subcommands `mirror [PATH…] --help` lists (clap's `help` aside).
async fn subcommands(path: &[&str]) -> Vec<String> {
    let mut args = path.to_vec();
    args.push("--help");
    let run = mirror(&args, &[]).await;
    run.assert_code(0);
    run.stdout
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// Every command path: `[]`, `["copy"]`, …, `["azureml", "sync"]`, ….
async fn command_paths() -> Vec<Vec<String>> {
    let mut paths = vec![Vec::new()];
    let mut i = 0;
    while i < paths.len() {
        let path = paths[i].clone();
        let refs: Vec<&str> = path.iter().map(String::as_str).collect();
        for sub in subcommands(&refs).await {
            let mut child = path.clone();
            child.push(sub);
            paths.push(child);
        }
        i += 1;
    }
    paths
}

async fn script(shell: &str) -> String {
    let run = mirror(&["completions", shell], &[]).await;
    run.assert_code(0);
    assert!(run.stderr.is_empty(), "{shell}: {}", run.stderr);
    run.stdout
}

fn shell(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program} (./scripts/test.sh installs it): {e}"))
}

#[tokio::test]
async fn every_shell_gets_a_script_naming_the_commands_and_flags() {
    for sh in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let text = script(sh).await;
        for word in ["copy", "azureml", "referrers", "shard"] {
            assert!(text.contains(word), "the {sh} script lacks {word}:\n{text}");
        }
    }
    let run = mirror(&["completions", "tcsh"], &[]).await;
    run.assert_code(2);
    assert!(run.stderr.contains("tcsh"), "{}", run.stderr);
}

/// What bash offers for the words of a command line, the last being
/// completed, as the readline hook calls the function.
fn bash_completes(script_file: &Path, words: &[&str]) -> Vec<String> {
    let cword = words.len() - 1;
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "source '{}'\n\
         COMP_WORDS=({})\n\
         COMP_CWORD={cword}\n\
         COMP_LINE='{}'\n\
         COMP_POINT=${{#COMP_LINE}}\n\
         _mirror mirror '{}' '{}'\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script_file.display(),
        quoted.join(" "),
        words.join(" "),
        words[cword],
        words[cword.saturating_sub(1)],
    );
    let out = shell("bash", &["--norc", "-c", &program]);
    assert!(
        out.status.success(),
        "bash: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut offered: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    offered.sort();
    offered
}

#[tokio::test]
async fn the_bash_script_completes_subcommands_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mirror.bash");
    std::fs::write(&file, script("bash").await).unwrap();
    assert_eq!(bash_completes(&file, &["mirror", "cop"]), ["copy"]);
    assert_eq!(
        bash_completes(&file, &["mirror", "co"]),
        ["completions", "copy"]
    );
    assert_eq!(
        bash_completes(&file, &["mirror", "copy", "--ref"]),
        ["--referrers", "--referrers-type"]
    );
    assert_eq!(bash_completes(&file, &["mirror", "azureml", "s"]), ["sync"]);
    assert_eq!(
        bash_completes(&file, &["mirror", "completions", "z"]),
        ["zsh"]
    );
    // A flag of another subcommand is not offered.
    assert!(bash_completes(&file, &["mirror", "copy", "--sha"]).is_empty());
    assert_eq!(
        bash_completes(&file, &["mirror", "sync", "--sha"]),
        ["--shard"]
    );
}

#[tokio::test]
async fn the_fish_script_completes_and_the_zsh_script_parses() {
    let dir = tempfile::tempdir().unwrap();
    let fish = dir.path().join("mirror.fish");
    std::fs::write(&fish, script("fish").await).unwrap();
    // `complete -C` asks fish what it would offer for a command line.
    let ask = |line: &str| {
        let program = format!("source '{}'; complete -C '{line}'", fish.display());
        let out = shell("fish", &["--no-config", "-c", &program]);
        assert!(
            out.status.success(),
            "fish: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut offered: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split('\t').next())
            .map(str::to_string)
            .collect();
        offered.sort();
        offered
    };
    assert_eq!(ask("mirror cop"), ["copy"]);
    assert_eq!(
        ask("mirror copy --referrers"),
        ["--referrers", "--referrers-type"]
    );
    assert_eq!(ask("mirror azureml ch"), ["check"]);

    let zsh = dir.path().join("_mirror");
    std::fs::write(&zsh, script("zsh").await).unwrap();
    let out = shell("zsh", &["--no-rcs", "-n", zsh.to_str().unwrap()]);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "zsh -n: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A broken script is caught: the check is not vacuous.
    std::fs::write(&zsh, "_mirror() {\n  case $x in\n}\n").unwrap();
    let out = shell("zsh", &["--no-rcs", "-n", zsh.to_str().unwrap()]);
    assert!(!out.status.success(), "zsh -n accepted a broken script");
}

/// `groff -man` renders a page, with every warning on; returns the text.
fn render(page: &Path) -> String {
    let out = shell(
        "groff",
        // Lines too long to wrap: an option name is never hyphenated.
        &[
            "-man",
            "-Tutf8",
            "-ww",
            "-rLL=1000n",
            page.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "groff {}", page.display());
    assert!(
        out.stderr.is_empty(),
        "groff warns about {}: {}",
        page.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    // Bold and underline are overstrikes (`X\bX`, `_\bX`): keep the last
    // of each (as `col -b` does), and read a Unicode minus as ASCII.
    let mut text = String::new();
    for c in String::from_utf8_lossy(&out.stdout).chars() {
        if c == '\u{8}' {
            text.pop();
        } else {
            text.push(c);
        }
    }
    text.replace(['\u{2212}', '\u{2010}'], "-")
}

#[tokio::test]
async fn every_subcommand_has_a_manual_page_that_renders_with_its_options() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man1");
    let run: Run = mirror(&["man", "--out", out.to_str().unwrap()], &[]).await;
    run.assert_code(0);

    let paths = command_paths().await;
    assert!(paths.len() >= 12, "{paths:?}");
    let mut expected: Vec<String> = paths
        .iter()
        .map(|p| {
            let mut name = vec!["mirror".to_string()];
            name.extend(p.iter().cloned());
            format!("{}.1", name.join("-"))
        })
        .collect();
    expected.sort();
    let mut written = mirror_tests::files::listing(&out);
    written.sort();
    assert_eq!(written, expected, "one page per command, nothing else");
    let mut listed: Vec<String> = run
        .stdout
        .lines()
        .map(|l| {
            Path::new(l)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    listed.sort();
    assert_eq!(listed, expected, "it prints the paths it wrote");

    for page in &written {
        let source = std::fs::read(out.join(page)).unwrap();
        assert!(
            source.is_ascii(),
            "{page}: roff in ASCII, escapes for the rest"
        );
        let text = render(&out.join(page));
        let name = page.trim_end_matches(".1");
        assert!(text.contains(name), "{page} does not name {name}:\n{text}");
    }
    let copy = render(&out.join("mirror-copy.1"));
    for option in ["--referrers", "--referrers-type", "--jobs", "--limit"] {
        assert!(
            copy.contains(option),
            "mirror-copy.1 lacks {option}:\n{copy}"
        );
    }
    let sync = render(&out.join("mirror-azureml-sync.1"));
    assert!(sync.contains("--region"), "{sync}");
    assert!(
        sync.contains("`{region}-stable` \u{2192} `stable`"),
        "the arrow survives its escape: {sync}"
    );
    let top = render(&out.join("mirror.1"));
    for sub in ["copy", "sync", "azureml", "completions", "man"] {
        assert!(
            top.contains(&format!("mirror-{sub}(1)")),
            "mirror.1 lacks {sub}:\n{top}"
        );
    }

    // Without --out: mirror.1 on standard output, the same page.
    let run = mirror(&["man"], &[]).await;
    run.assert_code(0);
    assert_eq!(
        run.stdout,
        std::fs::read_to_string(out.join("mirror.1")).unwrap()
    );
}

#[tokio::test]
async fn a_man_directory_that_cannot_be_made_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let out = file.join("man1");
    let run = mirror(&["man", "--out", out.to_str().unwrap()], &[]).await;
    run.assert_code(2);
    assert!(run.stderr.contains(out.to_str().unwrap()), "{}", run.stderr);
}
