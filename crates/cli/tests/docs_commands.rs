//! Every command the README and `docs/` show in a shell block still exists: each `mnist-lstm`
//! (or `cargo run -p cli -- ...`) subcommand and `cargo xtask` chore answers `--help`, and
//! every `--flag` the docs give it is in that help; each example, test target and package
//! named in a `cargo` command exists. Running them all would take an hour; this catches the
//! usual rot (a renamed flag, a removed subcommand, a moved example) in seconds.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Markdown files whose shell blocks are checked.
fn documents() -> Vec<PathBuf> {
    let root = workspace_root();
    let mut files = vec![root.join("README.md"), root.join("ARCHITECTURE.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// The commands of the `sh`/`bash`/`shell`/`console` blocks of `markdown`, with the line each
/// starts on: continuation lines joined, comments and prompts dropped, `&&`, `;` and `|`
/// splitting one line into several commands.
fn shell_commands(markdown: &str) -> Vec<(usize, String)> {
    let mut commands = Vec::new();
    let mut in_shell = false;
    let mut pending: Option<(usize, String)> = None;
    for (index, line) in markdown.lines().enumerate() {
        let trimmed = line.trim();
        if let Some(fence) = trimmed.strip_prefix("```") {
            in_shell = !in_shell && matches!(fence.trim(), "sh" | "bash" | "shell" | "console");
            continue;
        }
        if !in_shell {
            continue;
        }
        let text = trimmed.strip_prefix("$ ").unwrap_or(trimmed);
        let text = match text.find(" #") {
            Some(comment) => &text[..comment],
            None if text.starts_with('#') => "",
            None => text,
        };
        let (start, mut joined) = pending.take().unwrap_or((index + 1, String::new()));
        joined.push(' ');
        joined.push_str(text.trim_end_matches('\\'));
        if text.ends_with('\\') {
            pending = Some((start, joined));
            continue;
        }
        for part in joined
            .split("&&")
            .flat_map(|p| p.split(';'))
            .flat_map(|p| p.split('|'))
        {
            if !part.trim().is_empty() {
                commands.push((start, part.trim().to_string()));
            }
        }
    }
    commands
}

/// Words of a command, quotes removed (no escapes: the docs do not use them).
fn words(command: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quote = None;
    for c in command.chars() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if !current.is_empty() {
                    words.push(std::mem::take(&mut current));
                }
            }
            (_, c) => current.push(c),
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

/// What a documented command is, once environment assignments are dropped.
#[derive(Debug)]
enum Documented {
    /// `mnist-lstm ARGS`, however it is started.
    Cli(Vec<String>),
    /// `cargo xtask ARGS`.
    Xtask(Vec<String>),
    /// Another cargo command: the packages, examples and test targets it names.
    Cargo {
        packages: Vec<String>,
        examples: Vec<String>,
        tests: Vec<String>,
    },
    /// Not this project's command (apt-get, python, curl...).
    Other,
}

fn classify(command: &str) -> Documented {
    let words: Vec<String> = words(command)
        .into_iter()
        .skip_while(|word| word.contains('=') && !word.starts_with('-'))
        .collect();
    let Some(program) = words.first() else {
        return Documented::Other;
    };
    if program.ends_with("mnist-lstm") {
        return Documented::Cli(words[1..].to_vec());
    }
    if program != "cargo" {
        return Documented::Other;
    }
    if words.get(1).is_some_and(|w| w == "xtask") {
        return Documented::Xtask(words[2..].to_vec());
    }
    let (cargo_args, program_args) = match words.iter().position(|w| w == "--") {
        Some(split) => (&words[..split], &words[split + 1..]),
        None => (&words[..], &words[words.len()..]),
    };
    let values_of = |flags: &[&str]| -> Vec<String> {
        cargo_args
            .windows(2)
            .filter(|pair| flags.contains(&pair[0].as_str()))
            .map(|pair| pair[1].clone())
            .collect()
    };
    let packages = values_of(&["-p", "--package"]);
    let examples = values_of(&["--example"]);
    if words.get(1).is_some_and(|w| w == "run")
        && examples.is_empty()
        && (packages.iter().any(|p| p == "cli")
            || values_of(&["--bin"]).contains(&"mnist-lstm".into()))
    {
        return Documented::Cli(program_args.to_vec());
    }
    Documented::Cargo {
        packages,
        examples,
        tests: values_of(&["--test"]),
    }
}

/// The `--help` text of `program args... --help`, or the failure.
fn help_of(program: &mut Command) -> Result<String, String> {
    let output = program.arg("--help").output().map_err(|e| e.to_string())?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The long flags of `args` missing from `help`; `args[0]` is the subcommand.
fn missing_flags(args: &[String], help: &str) -> Vec<String> {
    args.iter()
        .filter(|arg| arg.starts_with("--") && arg.len() > 2)
        .map(|arg| arg.split('=').next().unwrap_or(arg).to_string())
        .filter(|flag| {
            !help.lines().any(|line| {
                line.split(|c: char| c.is_whitespace() || c == ',' || c == '=' || c == '[')
                    .any(|word| word == flag)
            })
        })
        .collect()
}

/// The packages, examples and test targets a documented cargo command names that do not exist.
fn missing_cargo_targets(
    root: &Path,
    packages: &[String],
    examples: &[String],
    tests: &[String],
) -> Vec<String> {
    let package_dir = |package: &str| {
        if package == "xtask" {
            root.join("xtask")
        } else {
            root.join("crates").join(package)
        }
    };
    let mut missing = Vec::new();
    for package in packages {
        if !package_dir(package).join("Cargo.toml").is_file() {
            missing.push(format!("no package {package}"));
        }
    }
    for example in examples {
        let found = packages.iter().any(|package| {
            package_dir(package)
                .join("examples")
                .join(format!("{example}.rs"))
                .is_file()
        });
        if !found {
            missing.push(format!("no example {example}"));
        }
    }
    for test in tests {
        let found = std::fs::read_dir(root.join("crates"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|krate| {
                krate
                    .path()
                    .join("tests")
                    .join(format!("{test}.rs"))
                    .is_file()
            });
        if !found {
            missing.push(format!("no test target {test}"));
        }
    }
    missing
}

#[test]
fn every_documented_command_exists_with_its_flags() {
    let root = workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut helps: HashMap<(bool, String), Result<String, String>> = HashMap::new();
    let mut problems = Vec::new();
    let mut checked = 0;
    for document in documents() {
        let name = document
            .strip_prefix(&root)
            .unwrap_or(&document)
            .display()
            .to_string();
        let markdown = std::fs::read_to_string(&document).unwrap();
        for (line, command) in shell_commands(&markdown) {
            let at = format!("{name}:{line}: `{command}`");
            let (xtask, args) = match classify(&command) {
                Documented::Cli(args) => (false, args),
                Documented::Xtask(args) => (true, args),
                Documented::Cargo {
                    packages,
                    examples,
                    tests,
                } => {
                    checked += 1;
                    for missing in missing_cargo_targets(&root, &packages, &examples, &tests) {
                        problems.push(format!("{at}: {missing}"));
                    }
                    continue;
                }
                Documented::Other => continue,
            };
            checked += 1;
            // xtask's measurements are subcommands of `bench` (`cargo xtask bench cpu`); a
            // positional argument after a chore (`fuzz idx`) does not change its help.
            let depth = if xtask { 2 } else { 1 };
            let subcommand: Vec<String> = args
                .iter()
                .take(depth)
                .take_while(|a| !a.starts_with('-'))
                .cloned()
                .collect();
            let key = (xtask, subcommand.join(" "));
            let help = helps.entry(key).or_insert_with(|| {
                let mut program = if xtask {
                    let mut command = Command::new(&cargo);
                    command.current_dir(&root).arg("xtask");
                    command
                } else {
                    Command::new(env!("CARGO_BIN_EXE_mnist-lstm"))
                };
                program.args(subcommand.iter());
                help_of(&mut program)
            });
            match help {
                Err(why) => problems.push(format!("{at}: --help failed: {why}")),
                Ok(help) => {
                    for flag in missing_flags(&args, help) {
                        problems.push(format!("{at}: {flag} is not in its --help"));
                    }
                }
            }
        }
    }
    println!("{checked} documented commands checked");
    assert!(
        checked >= 20,
        "only {checked} commands found in the docs' shell blocks: is the extraction broken?"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_extraction_reads_continuations_chains_and_environment() {
    let markdown = "text\n```sh\n# a comment\nMNIST_DIR=/data cargo run -p cli --release -- train \\\n  configs/default.toml --set a=1 && cargo xtask eval  # trailing\n```\n```toml\nnot = \"shell\"\n```\n";
    let commands = shell_commands(markdown);
    assert_eq!(commands.len(), 2, "{commands:?}");
    assert_eq!(commands[0].0, 4);
    match classify(&commands[0].1) {
        Documented::Cli(args) => {
            assert_eq!(args, ["train", "configs/default.toml", "--set", "a=1"])
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(classify(&commands[1].1), Documented::Xtask(args) if args == ["eval"]));
    let help = "Usage: x [OPTIONS]\n      --set <KEY=VALUE>  Override\n  -d, --data-dir <DIR>\n";
    let args: Vec<String> = ["train", "--set", "--data-dir=/x", "--nope"]
        .map(String::from)
        .to_vec();
    assert_eq!(missing_flags(&args, help), ["--nope"]);
}
