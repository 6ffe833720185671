//! The README, the manual and the `--help` texts cannot drift from the
//! binary.
//!
//! - Every ```` ```console ```` block of `README.md` and of every chapter
//!   of the manual (`docs/src/*.md`) is run: each `$ ` line through `sh`
//!   (stderr merged into stdout, as a terminal shows them) in a fresh
//!   directory, and what follows it, up to the next `$ ` line, is compared
//!   with what it printed (snapbox: `[..]` matches within a line, `...`
//!   whole lines; `[KEY]` is a 64-digit key, `[CWD]` the directory the
//!   example runs in). An HTML comment `<!-- readme-setup ... -->` right
//!   before a block is a shell script run first (writing a config, say);
//!   it is invisible when rendered and plain in the source. Blocks that
//!   show something a test cannot reproduce (a live provider, timings of
//!   the demo) are ```` ```text ````, never ```` ```console ````.
//! - A block the runner would not see (an indented or decorated fence, a
//!   block without a `$ ` line) fails [`no_console_block_is_skipped`]:
//!   the fences are counted separately from the parser.
//! - Every command's `--help` is compared with `tests/all/snapshots/help/`;
//!   the list of commands is read from the help texts themselves, so a new
//!   subcommand gets a snapshot (and fails until it has one).
//!
//! `SNAPSHOTS=overwrite cargo test -p toolhost --test all docs::` rewrites
//! the help snapshots and the outputs of blocks that no longer match
//! (review the diff: wildcards in a rewritten block must be put back by
//! hand).
//!
//! State is pinned: `HOME` and the XDG directories point into the test's
//! temp dir, the environment is otherwise empty (no API keys, `NO_COLOR`),
//! so an example prints the same on every machine. Compiled tools are
//! shared between examples through a cache directory kept beside the test
//! binary, keyed by a state directory kept there too.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use snapbox::{Assert, Data, Redactions};

use crate::support::{BINARY_DEADLINE, output_within};

/// One `$ ` line of a console block and the output written under it.
#[derive(Debug)]
struct Step {
    command: String,
    expected: String,
    /// The 0-based README lines of the expected output (for overwriting).
    lines: std::ops::Range<usize>,
}

/// One console block.
#[derive(Debug)]
struct Example {
    /// 1-based line of the opening fence.
    line: usize,
    setup: Option<String>,
    steps: Vec<Step>,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn readme_path() -> PathBuf {
    repo_root().join("README.md")
}

/// Every chapter of the manual: each `.md` file in `docs/src/`, found by
/// listing the directory, so a new chapter is checked without being named
/// here.
fn chapters() -> Vec<PathBuf> {
    let dir = repo_root().join("docs/src");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 10,
        "the manual should have its chapters ({} found in {})",
        files.len(),
        dir.display()
    );
    files
}

/// How a document names itself in failures: its path from the repository root.
fn shown(path: &Path) -> String {
    path.strip_prefix(repo_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The console blocks of a Markdown text.
fn examples(text: &str) -> Vec<Example> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut setup: Option<String> = None;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if let Some(rest) = line.trim_start().strip_prefix("<!-- readme-setup") {
            let mut script = String::new();
            let mut rest = rest.to_string();
            loop {
                if let Some(end) = rest.find("-->") {
                    script.push_str(&rest[..end]);
                    break;
                }
                script.push_str(&rest);
                script.push('\n');
                i += 1;
                rest = lines.get(i).copied().unwrap_or("-->").to_string();
            }
            setup = Some(script);
            i += 1;
            continue;
        }
        if line.trim_end() == "```console" {
            let start = i + 1;
            let mut steps: Vec<Step> = Vec::new();
            i += 1;
            while i < lines.len() && lines[i].trim_end() != "```" {
                if let Some(cmd) = lines[i].strip_prefix("$ ") {
                    let mut command = cmd.to_string();
                    while command.ends_with('\\') && i + 1 < lines.len() {
                        i += 1;
                        command.pop();
                        command.push('\n');
                        command.push_str(lines[i]);
                    }
                    steps.push(Step {
                        command,
                        expected: String::new(),
                        lines: i + 1..i + 1,
                    });
                } else if let Some(step) = steps.last_mut() {
                    step.expected.push_str(lines[i]);
                    step.expected.push('\n');
                    step.lines.end = i + 1;
                }
                i += 1;
            }
            out.push(Example {
                line: start,
                setup: setup.take(),
                steps,
            });
        } else if !line.trim().is_empty() {
            setup = None;
        }
        i += 1;
    }
    out
}

/// Directories shared by every example of this test binary: compiled
/// components and the key that authenticates them.
fn shared(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("readme-shared")
        .join(name);
    std::fs::create_dir_all(&dir).expect("a shared dir");
    dir
}

/// Runs `script` with `sh` in `cwd` under the pinned environment.
fn sh(root: &Path, cwd: &Path, script: &str) -> Output {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_toolhost"));
    let path = format!(
        "{}:/usr/local/bin:/usr/bin:/bin",
        bin.parent().expect("the binary's directory").display()
    );
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("exec 2>&1\n{script}"))
        .current_dir(cwd)
        .env_clear()
        .env("PATH", path)
        .env("HOME", root.join("home"))
        .env("XDG_CONFIG_HOME", root.join("home/.config"))
        .env("XDG_DATA_HOME", root.join("home/.local/share"))
        .env("XDG_CACHE_HOME", shared("cache"))
        .env("XDG_STATE_HOME", shared("state"))
        .env("NO_COLOR", "1")
        .env("LANG", "C.UTF-8")
        .stdin(std::process::Stdio::null());
    output_within(command, BINARY_DEADLINE)
}

/// `[KEY]` for full keys and digests; `[CWD]` for where the example runs.
fn redactions(cwd: &Path) -> Redactions {
    let mut r = Redactions::new();
    r.insert(
        "[KEY]",
        regex::Regex::new("(?<redacted>\\b[0-9a-f]{64}\\b)").expect("a regex"),
    )
    .expect("a placeholder");
    let cwd = cwd.canonicalize().unwrap_or_else(|_| cwd.to_path_buf());
    r.insert("[CWD]", cwd.display().to_string())
        .expect("a placeholder");
    r
}

/// Runs every console block of the Markdown file at `path` and returns
/// the failures (or rewrites the file's outputs under
/// `SNAPSHOTS=overwrite`). Returns how many blocks ran, too.
fn run_console_examples(path: &Path) -> (usize, Vec<String>) {
    let name = shown(path);
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {name}: {e}"));
    let examples = examples(&text);
    let overwrite = std::env::var("SNAPSHOTS").is_ok_and(|v| v == "overwrite");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut rewrites: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    let mut failures = Vec::new();
    for example in &examples {
        let root = tempfile::tempdir().expect("a temp dir");
        let cwd = root.path().join("work");
        std::fs::create_dir_all(&cwd).expect("the work dir");
        // Until the store and cache leave the working directory, share the
        // compiled tools through the one cache directory.
        std::fs::create_dir_all(cwd.join(".toolhost")).expect("the state dir");
        // (`artifacts/` beside the default store, and beside a `--db` here.)
        for link in [".toolhost/artifacts", "artifacts"] {
            std::os::unix::fs::symlink(shared("cache"), cwd.join(link))
                .expect("link the shared cache");
        }
        if let Some(setup) = &example.setup {
            let out = sh(root.path(), &cwd, setup);
            assert!(
                out.status.success(),
                "{name} line {}: the setup failed: {}",
                example.line,
                String::from_utf8_lossy(&out.stdout)
            );
        }
        let assert = Assert::new()
            .normalize_paths(false)
            .redact_with(redactions(&cwd));
        for step in &example.steps {
            let out = sh(root.path(), &cwd, &step.command);
            let actual = String::from_utf8_lossy(&out.stdout).into_owned();
            let result = assert.try_eq(
                Some(&format!(
                    "{name} line {}: $ {}",
                    step.lines.start, step.command
                )),
                Data::text(actual.clone()),
                Data::text(step.expected.clone()),
            );
            if let Err(e) = result {
                if overwrite {
                    let redacted = assert.redactions().redact(&actual);
                    rewrites.push((step.lines.clone(), redacted));
                } else {
                    failures.push(e.to_string());
                }
            }
        }
    }
    if overwrite && !rewrites.is_empty() {
        for (range, actual) in rewrites.into_iter().rev() {
            let new: Vec<String> = actual.lines().map(str::to_string).collect();
            lines.splice(range, new);
        }
        std::fs::write(path, lines.join("\n") + "\n")
            .unwrap_or_else(|e| panic!("rewrite {name}: {e}"));
    }
    (examples.len(), failures)
}

#[test]
fn readme_console_examples_match_real_runs() {
    let (ran, failures) = run_console_examples(&readme_path());
    assert!(
        ran >= 2,
        "the README's quick start should keep its checked examples ({ran} found)"
    );
    assert!(
        failures.is_empty(),
        "README examples differ from real runs (SNAPSHOTS=overwrite rewrites them):\n{}",
        failures.join("\n")
    );
}

#[test]
fn manual_console_examples_match_real_runs() {
    let mut ran = 0;
    let mut failures = Vec::new();
    for chapter in chapters() {
        let (n, f) = run_console_examples(&chapter);
        ran += n;
        failures.extend(f);
    }
    assert!(
        ran >= 8,
        "the manual should keep its checked examples ({ran} found)"
    );
    assert!(
        failures.is_empty(),
        "examples in docs/src differ from real runs (SNAPSHOTS=overwrite rewrites them):\n{}",
        failures.join("\n")
    );
}

/// How many lines of `text` open a console block, counted without the
/// parser: any fence whose info string starts with `console`, however
/// indented or decorated (`console,ignore`, `  ```console`).
fn console_fences(text: &str) -> usize {
    text.lines()
        .filter(|l| {
            let t = l.trim_start();
            t.strip_prefix("```")
                .or_else(|| t.strip_prefix("~~~"))
                .is_some_and(|info| info.trim_start().starts_with("console"))
        })
        .count()
}

/// A console block the runner would not run is a failure, not a silent
/// skip: every fence that says `console` must be one the parser found,
/// and every block must hold at least one `$ ` command.
#[test]
fn no_console_block_is_skipped() {
    let mut documents = chapters();
    documents.push(readme_path());
    let mut problems = Vec::new();
    let mut total = 0;
    for path in &documents {
        let text = std::fs::read_to_string(path).expect("read a document");
        let fences = console_fences(&text);
        let found = examples(&text);
        total += found.len();
        if fences != found.len() {
            problems.push(format!(
                "{}: {fences} console fences, but the runner finds {} blocks (use exactly ```console at the start of a line)",
                shown(path),
                found.len()
            ));
        }
        for example in found.iter().filter(|e| e.steps.is_empty()) {
            problems.push(format!(
                "{} line {}: a console block without a `$ ` command runs nothing",
                shown(path),
                example.line
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        total >= 10,
        "only {total} console blocks in the README and the manual"
    );
}

/// The files a hidden setup writes with `cat > NAME <<'EOF'`, as
/// (NAME, content).
fn setup_files(setup: &str) -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut lines = setup.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line
            .strip_prefix("cat > ")
            .and_then(|rest| rest.strip_suffix(" <<'EOF'"))
        else {
            continue;
        };
        let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "EOF").collect();
        files.push((name.to_string(), body.join("\n") + "\n"));
    }
    files
}

/// Where a page shows a file for the reader to create (a line
/// `` `NAME`: `` and the fenced block after it) and also writes it in a
/// hidden setup, the two must be the same text: the example that runs is
/// the example that is shown.
#[test]
fn hidden_setups_write_the_files_the_page_shows() {
    let mut documents = chapters();
    documents.push(readme_path());
    let mut checked = 0;
    for path in &documents {
        let text = std::fs::read_to_string(path).expect("read a document");
        for example in examples(&text) {
            let Some(setup) = &example.setup else {
                continue;
            };
            for (name, content) in setup_files(setup) {
                let label = format!("`{name}`:\n\n");
                let Some(at) = text.find(&label) else {
                    continue;
                };
                let shown_block = text[at + label.len()..]
                    .split_once('\n')
                    .and_then(|(_fence, rest)| rest.split("\n```").next())
                    .map(|b| format!("{b}\n"))
                    .expect("a fenced block after the file's name");
                assert_eq!(
                    shown_block,
                    content,
                    "{}: the setup before line {} writes `{name}` differently from the block the page shows",
                    shown(path),
                    example.line
                );
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 2,
        "the quick start's files should be checked ({checked} were)"
    );
}

#[test]
fn the_skip_check_sees_decorated_fences() {
    let md = "```console\n$ true\n```\n  ```console\n$ true\n  ```\n```console,ignore\n$ x\n```\n```text\n$ y\n```\n";
    assert_eq!(console_fences(md), 3);
    assert_eq!(examples(md).len(), 1);
}

/// The subcommands a help text lists under `Commands:`.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn every_help_text_matches_its_snapshot() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let snapshots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/all/snapshots/help");
    let assert = Assert::new().action_env("SNAPSHOTS");
    let mut queue: Vec<Vec<String>> = vec![Vec::new()];
    let mut seen = 0;
    while let Some(path) = queue.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let out = crate::support::toolhost(dir.path(), &args);
        assert!(out.status.success(), "toolhost {args:?}: {out:?}");
        let help = String::from_utf8(out.stdout).expect("UTF-8 help");
        for sub in subcommands(&help) {
            let mut child = path.clone();
            child.push(sub);
            queue.push(child);
        }
        let name = std::iter::once("toolhost".to_string())
            .chain(path.iter().cloned())
            .collect::<Vec<_>>()
            .join("-");
        let file = snapshots.join(format!("{name}.txt"));
        assert.eq(help, Data::read_from(&file, None));
        seen += 1;
    }
    assert!(seen >= 20, "only {seen} help texts were checked");
}

/// Words of a shell command line: whitespace-separated, with '...' and
/// "..." quoting (`\"` inside double quotes), as the help examples use.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                w.extend(chars.by_ref().take_while(|&c| c != '\''));
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => w.extend(chars.next()),
                        c => w.push(c),
                    }
                }
            }
            c if c.is_whitespace() => words.extend(word.take()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

/// Every example in a help text (issue 24, item 6) is a command line the
/// parser accepts: each `toolhost ...` of it, run with `--help` appended,
/// prints help (exit 0) instead of refusing a flag or a value. Flags after
/// a redirection or `&&` belong to the next command.
#[test]
fn every_help_example_parses() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let snapshots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/all/snapshots/help");
    let mut checked = 0;
    for entry in std::fs::read_dir(&snapshots).unwrap() {
        let file = entry.unwrap().path();
        let help = std::fs::read_to_string(&file).unwrap();
        let examples = help
            .lines()
            .skip_while(|l| l.trim() != "Examples:")
            .skip(1)
            .take_while(|l| l.starts_with("  "));
        for example in examples {
            for command in example.split("&&") {
                let words = shell_words(command);
                let Some(start) = words.iter().position(|w| w == "toolhost") else {
                    continue;
                };
                let mut args: Vec<&str> = words[start + 1..]
                    .iter()
                    .map(String::as_str)
                    .take_while(|w| *w != ">")
                    .collect();
                args.push("--help");
                let out = crate::support::toolhost(dir.path(), &args);
                assert!(
                    out.status.success() && !out.stdout.is_empty(),
                    "{}: `{}` does not parse: {}",
                    shown(&file),
                    example.trim(),
                    String::from_utf8_lossy(&out.stderr)
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 40, "only {checked} examples were checked");
}

/// Every code block marked `<!-- excerpt: PATH -->` (the line before its
/// fence) quotes PATH: each part between `// ...` lines appears in that
/// file verbatim. A tool's example in the manual is then code the build
/// compiles and tests (issue 24, item 7).
#[test]
fn excerpts_quote_their_sources() {
    let mut checked = 0;
    for doc in std::iter::once(readme_path()).chain(chapters()) {
        let text = std::fs::read_to_string(&doc).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let Some(source) = line
                .trim()
                .strip_prefix("<!-- excerpt: ")
                .and_then(|r| r.strip_suffix(" -->"))
            else {
                continue;
            };
            let body: Vec<&str> = lines[i + 2..]
                .iter()
                .take_while(|l| l.trim_end() != "```")
                .copied()
                .collect();
            assert!(
                lines[i + 1].starts_with("```") && !body.is_empty(),
                "{} line {}: an excerpt marker must precede a code block",
                shown(&doc),
                i + 1
            );
            let file = std::fs::read_to_string(repo_root().join(source))
                .unwrap_or_else(|e| panic!("{}: {source}: {e}", shown(&doc)));
            for part in body.split(|l| l.trim() == "// ...") {
                let part = part.join("\n");
                assert!(
                    file.contains(&part),
                    "{} line {}: not in {source}:\n{part}",
                    shown(&doc),
                    i + 1
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 1, "the manual quotes at least one tool");
}

#[test]
fn the_parser_reads_setup_commands_and_outputs() {
    let md = "text\n<!-- readme-setup\necho hi > f\n-->\n```console\n$ cat f\nhi\n$ true \\\n  && echo ok\nok\n```\n\n```console\n$ echo\n\n```\n";
    let ex = examples(md);
    assert_eq!(ex.len(), 2);
    assert_eq!(ex[0].setup.as_deref(), Some("\necho hi > f\n"));
    assert_eq!(ex[0].steps[0].command, "cat f");
    assert_eq!(ex[0].steps[0].expected, "hi\n");
    assert_eq!(ex[0].steps[1].command, "true \n  && echo ok");
    assert_eq!(ex[0].steps[1].expected, "ok\n");
    assert!(ex[1].setup.is_none());
    assert_eq!(ex[1].steps[0].expected, "\n");
}

/// The manual's example of a `scripted` provider file is a valid script.
#[test]
fn the_manual_scripted_example_is_a_valid_script() {
    let path = repo_root().join("docs/src/model-calls.md");
    let text = std::fs::read_to_string(&path).expect("read docs/src/model-calls.md");
    let section = text
        .split("## The `scripted` provider")
        .nth(1)
        .expect("the model calls chapter documents the scripted provider");
    let json = section
        .split("```json\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("an example file");
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("turns.json");
    std::fs::write(&path, json).expect("write the example");
    toolhost::model::Scripted::load("example", &path)
        .unwrap_or_else(|e| panic!("the manual's scripted example does not load: {e}"));
}
