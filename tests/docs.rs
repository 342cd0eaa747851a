//! Every ```` ```console ```` example in README.md and docs/*.md runs here, with trycmd, the
//! way clap and cargo test theirs: the docs cannot drift from the program.
//!
//! Each file's examples run in order, in a fresh temporary folder of their own holding only
//! the files below (no `config/`, so the built-in defaults apply: the `local` provider on
//! `./data`), with every `APP_*` variable of the calling environment emptied (an empty value
//! counts as unset). `[..]` stands for part of a line, `...` for whole lines. After a
//! deliberate change of output, `TRYCMD=overwrite cargo test --test tests docs` writes what
//! the commands print now into the docs (keeping the wildcards that still match); review
//! the diff.

use std::path::{Path, PathBuf};

/// Files every example folder starts with; the docs name them where they are used.
const FIXTURES: &[(&str, &str)] = &[
    (
        "staging.toml",
        "[object_storage]\nprovider = \"local\"\nroot = \"./staging\"\n",
    ),
    (
        "typo.toml",
        "[object_storage]\nprovider = \"local\"\nroot = \"./scr\"\n",
    ),
    (
        "empty.toml",
        "[object_storage]\nprovider = \"local\"\nroot = \"./empty\"\n",
    ),
];

/// The size of `liver.nii.gz`, the 3 MiB mask the examples upload.
const LIVER_BYTES: usize = 3 * 1024 * 1024;

fn documents(root: &Path) -> Vec<PathBuf> {
    let mut docs = vec![root.join("README.md")];
    let mut others: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("the docs/ folder")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    others.sort();
    docs.extend(others);
    docs
}

/// A copy of `doc` in a folder of its own, beside `<name>.in/` with the fixtures: trycmd
/// runs a `.md` file's commands in that folder.
fn prepare(doc: &Path, work: &Path) -> PathBuf {
    let name = doc.file_name().unwrap();
    let dir = work.join(doc.file_stem().unwrap());
    let input = dir.join(Path::new(name).with_extension("in"));
    std::fs::create_dir_all(input.join("empty")).unwrap();
    for (file, text) in FIXTURES {
        std::fs::write(input.join(file), text).unwrap();
    }
    std::fs::write(input.join("liver.nii.gz"), vec![0u8; LIVER_BYTES]).unwrap();
    std::fs::write(
        input.join("seg.png"),
        b"\x89PNG\r\n\x1a\n a segmentation mask\n",
    )
    .unwrap();
    let copy = dir.join(name);
    std::fs::copy(doc, &copy).unwrap();
    copy
}

#[test]
fn console_examples_in_readme_and_docs_print_what_they_show() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().unwrap();
    let cases = trycmd::TestCases::new();
    cases.register_bin("maskstore", Path::new(env!("CARGO_BIN_EXE_maskstore")));
    for (name, _) in std::env::vars() {
        if name.starts_with("APP_") {
            cases.env(name, "");
        }
    }
    // The CLI's default log level, whatever the caller's: logs share the examples' output.
    cases.env("MASKSTORE_LOG", "warn");
    let docs = documents(root);
    let mut copies = Vec::new();
    let mut examples = 0;
    for doc in &docs {
        let text = std::fs::read_to_string(doc).unwrap();
        // trycmd runs an untagged fence as a console block, and rustdoc would compile it
        // as Rust (README.md is a doctest): every block names its language.
        let mut block: Option<&str> = None;
        for (n, line) in text.lines().enumerate() {
            match (block, line.trim_start().strip_prefix("```")) {
                (None, Some(tag)) => {
                    assert!(
                        !tag.trim().is_empty(),
                        "{}:{}: a code block without a language",
                        doc.display(),
                        n + 1
                    );
                    block = Some(tag.trim());
                }
                (Some(_), Some(_)) => block = None,
                (Some("console"), None) if line.starts_with("$ ") => examples += 1,
                _ => {}
            }
        }
        let copy = prepare(doc, work.path());
        cases.case(&copy);
        copies.push((copy, doc));
    }
    assert!(
        examples >= 20,
        "only {examples} console commands in the docs"
    );
    eprintln!("{examples} console commands in {} files", docs.len());
    cases.run();
    if std::env::var_os("TRYCMD").is_some_and(|mode| mode == "overwrite") {
        for (copy, doc) in copies {
            std::fs::copy(copy, doc).unwrap();
        }
    }
}
