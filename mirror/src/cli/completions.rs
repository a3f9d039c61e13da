//! Shell completions and manual pages, generated from the one [`Cli`]
//! definition (clap's companions `clap_complete` and `clap_mangen`), so
//! they can never describe flags the parser does not have.
//!
//! `mirror completions SHELL` prints a completion script; `mirror man`
//! prints `mirror.1`, and `mirror man --out DIR` writes `mirror.1` and a
//! page per subcommand, named as git's are (`mirror-copy.1`,
//! `mirror-azureml-sync.1`), so `man mirror-copy` finds one.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::error::{CommandResult, Failure};
use super::exit;
use super::Cli;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum, value_name = "SHELL")]
    shell: Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write `mirror.1` and one page per subcommand into this directory
    /// (created if missing), e.g. /usr/local/share/man/man1; without it,
    /// `mirror.1` goes to standard output.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// `mirror completions SHELL`: the script on standard output.
pub fn completions(args: CompletionsArgs) -> CommandResult {
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "mirror", &mut script);
    write_stdout(&script)
}

/// `mirror man [--out DIR]`.
pub fn man(args: ManArgs) -> CommandResult {
    let Some(dir) = args.out else {
        let page = render(&manual_page(pages_root()))
            .map_err(|e| Failure::failed(format!("rendering the manual page: {e}")))?;
        return write_stdout(page.as_bytes());
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| Failure::usage(format!("creating {}: {e}", dir.display())))?;
    let mut written = Vec::new();
    write_pages(pages_root(), &dir, &mut written)?;
    let listing: String = written
        .iter()
        .map(|p| format!("{}\n", p.display()))
        .collect();
    write_stdout(listing.as_bytes())
}

/// The command tree as the pages describe it: built, so every subcommand
/// knows its full name (`mirror-azureml-sync`) and the global flags, and
/// without clap's `help` subcommand, which needs no page.
fn pages_root() -> clap::Command {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// The page of one command: its footer names mirror and its version (a
/// subcommand has none of its own), and no date, so a rebuild of the same
/// version writes the same bytes.
fn manual_page(cmd: clap::Command) -> clap_mangen::Man {
    clap_mangen::Man::new(cmd)
        .source(format!("mirror {}", env!("CARGO_PKG_VERSION")))
        .manual("mirror manual")
}

/// The page as roff in ASCII: a character beyond it (the `→` of a help
/// text) is written as its escape `\[uXXXX]`, which groff and mandoc read
/// whatever the locale, where raw UTF-8 needs groff's preprocessor.
fn render(man: &clap_mangen::Man) -> std::io::Result<String> {
    let mut bytes = Vec::new();
    man.render(&mut bytes)?;
    let text = String::from_utf8(bytes)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let mut page = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            page.push(c);
        } else {
            page.push_str(&format!("\\[u{:04X}]", u32::from(c)));
        }
    }
    Ok(page)
}

/// Writes the page of `cmd` and of each of its subcommands, each whole
/// under a temporary name and then renamed (a reader never sees half a
/// page), and records the paths written.
fn write_pages(cmd: clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> Result<(), Failure> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub.clone(), dir, written)?;
    }
    let man = manual_page(cmd);
    let path = dir.join(man.get_filename());
    let page =
        render(&man).map_err(|e| Failure::failed(format!("rendering {}: {e}", path.display())))?;
    let partial = dir.join(format!(".{}.partial", man.get_filename()));
    std::fs::write(&partial, &page)
        .and_then(|()| std::fs::rename(&partial, &path))
        .map_err(|e| Failure::failed(format!("writing {}: {e}", path.display())))?;
    written.push(path);
    Ok(())
}

/// A closed pipe (`mirror completions bash | head`) is not an error worth
/// a message.
fn write_stdout(bytes: &[u8]) -> CommandResult {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(exit::OK),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(exit::OK),
        Err(e) => Err(Failure::failed(format!("writing to standard output: {e}"))),
    }
}
