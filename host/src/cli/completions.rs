//! `toolhost completions bash|zsh|fish`: a completion script generated from
//! the same clap definition the parser uses, so it never lags a new flag.

use std::process::ExitCode;

use clap::{Args, CommandFactory, ValueEnum};
use clap_complete::Shell;

use super::Cli;

#[derive(Debug, Args)]
#[command(after_help = "Install it where your shell looks, for example:
  toolhost completions bash > ~/.local/share/bash-completion/completions/toolhost
  toolhost completions zsh > ~/.zfunc/_toolhost      (with fpath+=~/.zfunc)
  toolhost completions fish > ~/.config/fish/completions/toolhost.fish")]
pub struct CompletionsArgs {
    /// The shell to complete for.
    shell: ShellName,
}

/// The shells we document and test (clap_complete knows a few more).
#[derive(Debug, Clone, Copy, ValueEnum)]
enum ShellName {
    Bash,
    Zsh,
    Fish,
}

/// Prints the script; it needs no config, store or tools.
pub fn print(args: &CompletionsArgs) -> ExitCode {
    let shell = match args.shell {
        ShellName::Bash => Shell::Bash,
        ShellName::Zsh => Shell::Zsh,
        ShellName::Fish => Shell::Fish,
    };
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "toolhost", &mut std::io::stdout());
    ExitCode::SUCCESS
}
