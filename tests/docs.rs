//! Every ```` ```console ```` example in README.md and docs/*.md runs here, with trycmd, the
//! way clap and cargo test theirs: the docs cannot drift from the program.
//! And every relative link between README.md, BENCHMARKS.md and docs/ resolves, to a file
//! and, after `#`, to one of its headings.
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

/// A heading's anchor as GitHub makes it: lower case, spaces to `-`, other punctuation gone.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// The text of a page outside its code blocks, line by line.
fn prose(text: &str) -> Vec<&str> {
    let mut inside = false;
    text.lines()
        .filter(|line| {
            if line.trim_start().starts_with("```") {
                inside = !inside;
                return false;
            }
            !inside
        })
        .collect()
}

#[test]
fn links_between_readme_and_docs_resolve() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pages = documents(root);
    pages.push(root.join("BENCHMARKS.md"));
    let mut broken = Vec::new();
    let mut checked = 0;
    for page in &pages {
        let text = std::fs::read_to_string(page).unwrap();
        for line in prose(&text) {
            for (_, rest) in line.match_indices("](").map(|(i, _)| line.split_at(i + 2)) {
                let Some(target) = rest.split(')').next() else {
                    continue;
                };
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                checked += 1;
                let (path, fragment) = target.split_once('#').unwrap_or((target, ""));
                let file = if path.is_empty() {
                    page.clone()
                } else {
                    page.parent().unwrap().join(path)
                };
                let Ok(linked) = std::fs::read_to_string(&file) else {
                    broken.push(format!("{}: {target}: no such file", page.display()));
                    continue;
                };
                if !fragment.is_empty()
                    && !prose(&linked)
                        .iter()
                        .filter_map(|l| l.strip_prefix('#'))
                        .any(|h| anchor(h.trim_start_matches('#')) == fragment)
                {
                    broken.push(format!("{}: {target}: no such heading", page.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(checked >= 20, "only {checked} links checked");
}

/// A provider added to `Provider` is documented or this fails: a row of the README's
/// provider table, and a mention in docs/providers.md.
#[test]
fn every_provider_has_a_readme_row_and_a_providers_page_mention() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let page = std::fs::read_to_string(root.join("docs/providers.md")).unwrap();
    for provider in maskstore::Provider::ALL {
        let row = format!("| `{provider}` |");
        assert!(
            readme.lines().any(|line| line.starts_with(&row)),
            "README.md's provider table has no row {row}"
        );
        assert!(
            page.contains(&format!("`{provider}`")),
            "docs/providers.md does not mention provider `{provider}`"
        );
    }
}
