//! `toolhost tools new NAME --lang rust|python|js|ts [--dir DIR]`: a ready
//! project whose tool is NAME (pure; `{"name": "Ada"}` gives
//! `{"greeting": "Hello, Ada!"}`), with a unit test, a copy of that
//! language's SDK and the WIT contract (see `templates`).

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use serde_json::json;

use super::templates::{self, File};
use super::{Env, Failure};

/// A tool's source language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
    // TypeScript: the JS SDK with its types, type-checked and compiled to
    // JavaScript by the same build (`build.mjs`). (A `///` here would be
    // help text, which turns clap's value list into a long one.)
    #[value(alias = "typescript")]
    Ts,
}

impl Lang {
    pub fn as_str(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Js => "js",
            Lang::Ts => "ts",
        }
    }

    fn files(self) -> &'static [File] {
        match self {
            Lang::Rust => templates::RUST,
            Lang::Python => templates::PYTHON,
            Lang::Js => templates::JS,
            Lang::Ts => templates::TS,
        }
    }

    /// The command that runs the project's unit tests.
    fn test_command(self) -> &'static str {
        match self {
            Lang::Rust => "cargo test",
            Lang::Python => "python3 -m unittest",
            Lang::Js | Lang::Ts => "npm install && npm test",
        }
    }
}

#[derive(Debug, Args)]
pub struct NewArgs {
    /// The tool's name: 1-64 characters of a-z, 0-9, `_` or `-`.
    name: String,
    /// The language to write it in.
    #[arg(long, value_enum)]
    lang: Lang,
    /// Where to create the project (default: ./NAME); it must not exist or be empty.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// The same rule the loader applies to a tool's name.
fn check_name(name: &str) -> Result<(), Failure> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        && name.as_bytes()[0].is_ascii_lowercase();
    if ok {
        Ok(())
    } else {
        Err(Failure::usage(format!(
            "`{name}` is not a tool name: use 1-64 characters of a-z, 0-9, `_` or `-`, starting with a letter (such as `word_count`)"
        )))
    }
}

fn is_empty_dir(dir: &Path) -> std::io::Result<bool> {
    Ok(std::fs::read_dir(dir)?.next().is_none())
}

pub fn run(env: &Env, args: NewArgs) -> Result<(), Failure> {
    check_name(&args.name)?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists() && !is_empty_dir(&dir).unwrap_or(false) {
        return Err(Failure::usage(format!(
            "{} already exists and is not empty: choose another with --dir DIR",
            dir.display()
        )));
    }
    let mut written = Vec::new();
    for file in args.lang.files() {
        let path = dir.join(file.path);
        let write = || -> std::io::Result<()> {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, templates::render(file.text, &args.name))
        };
        write().map_err(|e| {
            Failure::new(
                1,
                "io_error",
                format!("cannot write {}: {e}", path.display()),
            )
        })?;
        written.push(file.path);
    }
    let shown = dir.display();
    if env.json {
        let body = json!({
            "name": args.name, "lang": args.lang.as_str(), "dir": dir, "files": written,
        });
        super::output::print_document(true, &body);
    } else {
        println!(
            "created {shown}: a {} tool `{}` ({} files)",
            args.lang.as_str(),
            args.name,
            written.len()
        );
        println!("next:");
        println!("  cd {shown}");
        println!("  {}", args.lang.test_command());
        println!("  toolhost tools build --install");
        println!(
            "  toolhost call {} --input '{{\"name\":\"Ada\"}}'",
            args.name
        );
    }
    Ok(())
}
